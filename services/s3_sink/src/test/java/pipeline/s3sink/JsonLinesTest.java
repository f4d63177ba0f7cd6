package pipeline.s3sink;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class JsonLinesTest {
    private static String line(String value) {
        return new String(JsonLines.toLine(value.getBytes(UTF_8)).bytes(), UTF_8);
    }

    @Test
    void validJsonIsCompactedWithoutTouchingStringsOrNumbers() {
        assertEquals("{\"a\":1.50,\"b\":\"x  y\\\" }\",\"c\":[1,2e-7]}",
                line("{ \"a\": 1.50,\n \"b\" : \"x  y\\\" }\", \"c\": [1, 2e-7] }"));
        assertEquals("{\"t\":\"caf\u00e9 \u2026 \"}", line("{\"t\": \"caf\u00e9 \u2026 \"}"));
    }

    @Test
    void invalidJsonStaysOneLineAndIsFlagged() {
        JsonLines.Line line = JsonLines.toLine("{\"a\": 1,\n oops".getBytes(UTF_8));
        assertFalse(line.validJson());
        assertEquals("{\"a\": 1,  oops", new String(line.bytes(), UTF_8));
        assertFalse(JsonLines.toLine("{} {}".getBytes(UTF_8)).validJson());
        assertFalse(JsonLines.toLine(new byte[0]).validJson());
    }

    @Test
    void nullValueIsJsonNull() {
        assertTrue(JsonLines.toLine(null).validJson());
        assertEquals("null", new String(JsonLines.toLine(null).bytes(), UTF_8));
    }

    @Test
    void linesAreCounted() {
        assertEquals(0, JsonLines.countLines(new byte[0]));
        assertEquals(2, JsonLines.countLines("{}\n{}\n".getBytes(UTF_8)));
        assertEquals(2, JsonLines.countLines("{}\n{}".getBytes(UTF_8)));
    }
}
