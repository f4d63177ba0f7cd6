package pipeline.s3sink;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Turns one record value into one line of a JSON-lines object.
 *
 * <p>A valid JSON value is written compact: whitespace outside string literals is dropped and nothing else changes
 * (numbers, key order and escapes keep their original text, so no float is ever re-printed differently). A value that
 * is not valid JSON is still written, as one line with its CR/LF replaced by spaces: every offset keeps exactly one
 * line (so the line count of an object stays its offset span, which recovery and the audit rely on), and the batch
 * job's parser quarantines and counts it. The task logs and counts such records.
 */
public final class JsonLines {
    private static final JsonFactory FACTORY = JsonFactory.builder().build();
    private static final byte[] NULL = "null".getBytes(StandardCharsets.US_ASCII);

    private JsonLines() {
    }

    /** The result of converting a value: the line (without its newline) and whether the value was valid JSON. */
    public record Line(byte[] bytes, boolean validJson) {
    }

    public static Line toLine(byte[] value) {
        if (value == null) {
            return new Line(NULL, true);
        }
        if (isValidJson(value)) {
            return new Line(compact(value), true);
        }
        byte[] copy = value.clone();
        for (int i = 0; i < copy.length; i++) {
            if (copy[i] == '\n' || copy[i] == '\r') {
                copy[i] = ' ';
            }
        }
        return new Line(copy, false);
    }

    static boolean isValidJson(byte[] value) {
        try (JsonParser parser = FACTORY.createParser(value)) {
            if (parser.nextToken() == null) {
                return false;
            }
            parser.skipChildren();
            return parser.nextToken() == null;
        } catch (IOException invalid) {
            return false;
        }
    }

    /** Drops insignificant whitespace of a valid JSON text; string contents are copied byte for byte. */
    static byte[] compact(byte[] json) {
        byte[] out = new byte[json.length];
        int length = 0;
        boolean inString = false;
        boolean escaped = false;
        for (byte b : json) {
            if (inString) {
                out[length++] = b;
                if (escaped) {
                    escaped = false;
                } else if (b == '\\') {
                    escaped = true;
                } else if (b == '"') {
                    inString = false;
                }
            } else if (b == '"') {
                inString = true;
                out[length++] = b;
            } else if (b != ' ' && b != '\t' && b != '\n' && b != '\r') {
                out[length++] = b;
            }
        }
        return length == json.length ? out : Arrays.copyOf(out, length);
    }

    /** Lines in an object written by this sink (every line ends with a newline; a missing last one is tolerated). */
    public static long countLines(byte[] content) {
        long lines = 0;
        for (byte b : content) {
            if (b == '\n') {
                lines++;
            }
        }
        if (content.length > 0 && content[content.length - 1] != '\n') {
            lines++;
        }
        return lines;
    }
}
