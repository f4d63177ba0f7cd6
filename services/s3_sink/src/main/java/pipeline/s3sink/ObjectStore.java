package pipeline.s3sink;

import java.util.List;

/** The three object-store calls the sink needs; S3 in production, an in-memory map in unit tests. */
public interface ObjectStore extends AutoCloseable {
    /** Every key under {@code prefix}, in ascending (lexicographic) order. */
    List<String> list(String prefix);

    byte[] get(String key);

    void put(String key, byte[] content);

    @Override
    default void close() {
    }
}
