package pipeline.s3sink;

import java.util.OptionalLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The S3 key layout of Confluent's S3 sink (docs/contract.md section 3), in one place:
 * {@code <topics.dir>/<topic>/partition=<p>/<topic>+<p>+<start offset, 10 digits>.json}.
 * Deterministic names are what make a replay overwrite the same key instead of adding a duplicate.
 */
public final class ObjectKeys {
    public static final String EXTENSION = ".json";
    private static final Pattern FILE_NAME = Pattern.compile("^(.+)\\+(\\d+)\\+(\\d{10,})" + Pattern.quote(EXTENSION) + "$");

    private ObjectKeys() {
    }

    /** The folder holding every object of one topic-partition, ending with a slash. */
    public static String partitionPrefix(String topicsDir, String topic, int partition) {
        return topicsDir + "/" + topic + "/partition=" + partition + "/";
    }

    /** The key of the object whose first record has offset {@code startOffset}. */
    public static String key(String topicsDir, String topic, int partition, long startOffset) {
        return partitionPrefix(topicsDir, topic, partition) + topic + "+" + partition + "+"
                + String.format("%010d", startOffset) + EXTENSION;
    }

    /** The start offset encoded in a key written by {@link #key}, or empty when the key is not one of ours. */
    public static OptionalLong startOffset(String key) {
        String fileName = key.substring(key.lastIndexOf('/') + 1);
        Matcher matcher = FILE_NAME.matcher(fileName);
        return matcher.matches() ? OptionalLong.of(Long.parseLong(matcher.group(3))) : OptionalLong.empty();
    }
}
