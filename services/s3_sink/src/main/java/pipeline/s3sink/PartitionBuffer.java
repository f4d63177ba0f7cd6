package pipeline.s3sink;

import java.io.ByteArrayOutputStream;

/**
 * The not-yet-uploaded records of one topic-partition, plus the two offsets that make the sink exactly-once:
 * {@code nextOffset} (the first offset not yet in S3 or in this buffer; lower offsets are replays and are skipped)
 * and {@code committableOffset} (the first offset not yet in S3: what preCommit may hand to Kafka).
 * The records of one buffer always have consecutive offsets, so an object's line count is its offset span.
 */
final class PartitionBuffer {
    static final long UNKNOWN = -1L;

    private long nextOffset;
    private long committableOffset;
    private long startOffset = UNKNOWN;
    private long openedAtMs;
    private int records;
    private final ByteArrayOutputStream content = new ByteArrayOutputStream();

    /** A partition whose objects in S3 end before {@code nextOffsetInStore} (UNKNOWN when it has none). */
    PartitionBuffer(long nextOffsetInStore) {
        this.nextOffset = nextOffsetInStore == UNKNOWN ? 0L : nextOffsetInStore;
        this.committableOffset = nextOffsetInStore;
    }

    /** True when {@code offset} is already in S3 or in this buffer (a replay after a rewind or a retried put). */
    boolean alreadyHas(long offset) {
        return offset < nextOffset;
    }

    /** True when {@code offset} cannot extend this buffer (a gap), so the buffer must be uploaded first. */
    boolean breaksContinuity(long offset) {
        return records > 0 && offset != nextOffset;
    }

    void append(long offset, byte[] line, long nowMs) {
        if (records == 0) {
            startOffset = offset;
            openedAtMs = nowMs;
        }
        content.write(line, 0, line.length);
        content.write('\n');
        records++;
        nextOffset = offset + 1;
    }

    boolean isEmpty() {
        return records == 0;
    }

    int records() {
        return records;
    }

    long startOffset() {
        return startOffset;
    }

    long bytes() {
        return content.size();
    }

    /** True when the buffer holds {@code flushSize} records or {@code flushBytes} bytes: upload it now. */
    boolean isFull(int flushSize, long flushBytes) {
        return records > 0 && (records >= flushSize || content.size() >= flushBytes);
    }

    boolean isDue(int flushSize, long flushBytes, long rotateIntervalMs, long nowMs) {
        return isFull(flushSize, flushBytes) || (records > 0 && nowMs - openedAtMs >= rotateIntervalMs);
    }

    byte[] content() {
        return content.toByteArray();
    }

    /** Called once the object holding this buffer is in S3. */
    void uploaded() {
        committableOffset = nextOffset;
        records = 0;
        startOffset = UNKNOWN;
        content.reset();
    }

    long committableOffset() {
        return committableOffset;
    }
}
