package pipeline.s3sink;

import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.function.Function;
import java.util.function.LongSupplier;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.errors.RetriableException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Buffers records per topic-partition and uploads each buffer as one JSON-lines object.
 *
 * <p>Exactly-once across crashes without any state but S3: on {@link #open} the task lists the partition's objects,
 * takes the one with the highest start offset, and resumes at {@code start + line count} (rewinding the consumer
 * there; a partition without objects starts from the earliest offset). Records below that offset are skipped, so a replay never writes an offset twice; an object interrupted
 * before upload is simply rebuilt under the same deterministic key. Offsets are committed to Kafka ({@link
 * #preCommit}) only up to what is in S3, which keeps the consumer group's lag honest.
 *
 * <p>An object is uploaded when it holds {@code flush.size} records or {@code flush.bytes} bytes (so a partition's
 * buffer stays bounded in memory whatever the record size), or when its first record has waited
 * {@code rotate.interval.ms} of wall-clock time; the age is checked on every put() (Connect calls it even with no
 * records) and every preCommit(), so a slow topic still reaches S3 within seconds.
 */
public class S3SinkTask extends SinkTask {
    private static final Logger LOG = LoggerFactory.getLogger(S3SinkTask.class);
    private static final long OPEN_RETRY_MS = 120_000L;

    private final Function<S3SinkConfig, ObjectStore> storeFactory;
    private final LongSupplier clock;
    private final Map<TopicPartition, PartitionBuffer> buffers = new HashMap<>();
    private S3SinkConfig config;
    private int flushSize;
    private long flushBytes;
    private long rotateIntervalMs;
    private ObjectStore store;
    private long invalidJsonRecords;

    public S3SinkTask() {
        this(S3ObjectStore::new, System::currentTimeMillis);
    }

    S3SinkTask(Function<S3SinkConfig, ObjectStore> storeFactory, LongSupplier clock) {
        this.storeFactory = storeFactory;
        this.clock = clock;
    }

    @Override
    public String version() {
        return S3SinkConnector.VERSION;
    }

    @Override
    public void start(Map<String, String> props) {
        config = new S3SinkConfig(props);
        flushSize = config.flushSize();
        flushBytes = config.flushBytes();
        rotateIntervalMs = config.rotateIntervalMs();
        store = storeFactory.apply(config);
        LOG.info("S3 sink task started: bucket={} endpoint={} flush.size={} flush.bytes={} rotate.interval.ms={}",
                config.bucket(), config.endpoint().isEmpty() ? "(AWS)" : config.endpoint(), flushSize, flushBytes,
                config.rotateIntervalMs());
    }

    @Override
    public void open(Collection<TopicPartition> partitions) {
        for (TopicPartition tp : partitions) {
            long next = recoverWithRetries(tp);
            buffers.put(tp, new PartitionBuffer(next));
            if (next != PartitionBuffer.UNKNOWN) {
                context.offset(tp, next);
                LOG.info("{}: objects in S3 end before offset {}; resuming there", tp, next);
            } else {
                // An empty prefix (new bucket, or one emptied by hand) gets the whole retained log, not just what
                // follows the group's committed offset; below the log start the consumer resets to the earliest.
                context.offset(tp, 0L);
                LOG.info("{}: no objects in S3 yet; reading from the earliest offset", tp);
            }
        }
    }

    /** S3 may be restarting while Connect rebalances; a failed open() would fail the task for good, so retry. */
    private long recoverWithRetries(TopicPartition tp) {
        long deadline = clock.getAsLong() + OPEN_RETRY_MS;
        while (true) {
            try {
                return nextOffsetInStore(store, config.topicsDir(), tp);
            } catch (RuntimeException error) {
                if (clock.getAsLong() >= deadline) {
                    throw new DataException("cannot list " + tp + " objects in S3 bucket " + config.bucket(), error);
                }
                LOG.warn("{}: listing S3 failed ({}); retrying", tp, error.toString());
                sleepQuietly(config.retryBackoffMs());
            }
        }
    }

    private static void sleepQuietly(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException interrupted) {
            Thread.currentThread().interrupt();
            throw new DataException("interrupted while waiting for S3", interrupted);
        }
    }

    /** The first offset of {@code tp} not in the store (start offset of its last object + its line count), or UNKNOWN. */
    static long nextOffsetInStore(ObjectStore store, String topicsDir, TopicPartition tp) {
        long lastStart = PartitionBuffer.UNKNOWN;
        String lastKey = null;
        for (String key : store.list(ObjectKeys.partitionPrefix(topicsDir, tp.topic(), tp.partition()))) {
            OptionalLong start = ObjectKeys.startOffset(key);
            if (start.isPresent() && start.getAsLong() > lastStart) {
                lastStart = start.getAsLong();
                lastKey = key;
            }
        }
        return lastKey == null ? PartitionBuffer.UNKNOWN : lastStart + JsonLines.countLines(store.get(lastKey));
    }

    @Override
    public void put(Collection<SinkRecord> records) {
        try {
            for (SinkRecord record : records) {
                TopicPartition tp = new TopicPartition(record.topic(), record.kafkaPartition());
                PartitionBuffer buffer = buffers.get(tp);
                if (buffer == null) {
                    throw new DataException("record for " + tp + ", which was never opened for this task");
                }
                long offset = record.kafkaOffset();
                if (buffer.alreadyHas(offset)) {
                    continue;
                }
                if (buffer.breaksContinuity(offset) || buffer.isFull(flushSize, flushBytes)) {
                    upload(tp, buffer);  // the second case: a full buffer whose upload failed and is now retried
                }
                buffer.append(offset, line(record), clock.getAsLong());
                if (buffer.isFull(flushSize, flushBytes)) {
                    upload(tp, buffer);
                }
            }
            uploadDue();
        } catch (RuntimeException error) {
            if (error instanceof DataException) {
                throw error;
            }
            // The buffers keep their records, and the replayed batch is skipped by offset; only the upload is redone.
            LOG.warn("upload to S3 failed ({}); Connect will retry in {} ms", error.toString(), config.retryBackoffMs());
            context.timeout(config.retryBackoffMs());
            throw new RetriableException(error);
        }
    }

    private byte[] line(SinkRecord record) {
        Object value = record.value();
        byte[] bytes;
        if (value == null || value instanceof byte[]) {
            bytes = (byte[]) value;
        } else if (value instanceof String text) {
            bytes = text.getBytes(StandardCharsets.UTF_8);
        } else {
            throw new DataException("the S3 sink needs raw values: set value.converter to "
                    + "org.apache.kafka.connect.converters.ByteArrayConverter (got " + value.getClass().getName() + ")");
        }
        JsonLines.Line line = JsonLines.toLine(bytes);
        if (!line.validJson()) {
            invalidJsonRecords++;
            LOG.warn("{}-{} offset {}: value is not valid JSON; written as one raw line ({} such records so far)",
                    record.topic(), record.kafkaPartition(), record.kafkaOffset(), invalidJsonRecords);
        }
        return line.bytes();
    }

    private void uploadDue() {
        long now = clock.getAsLong();
        for (Map.Entry<TopicPartition, PartitionBuffer> entry : buffers.entrySet()) {
            if (entry.getValue().isDue(flushSize, flushBytes, rotateIntervalMs, now)) {
                upload(entry.getKey(), entry.getValue());
            }
        }
    }

    private void upload(TopicPartition tp, PartitionBuffer buffer) {
        String key = ObjectKeys.key(config.topicsDir(), tp.topic(), tp.partition(), buffer.startOffset());
        long started = System.nanoTime();
        store.put(key, buffer.content());
        LOG.debug("uploaded {} ({} records, {} bytes) in {} ms", key, buffer.records(), buffer.bytes(),
                (System.nanoTime() - started) / 1_000_000);
        buffer.uploaded();
    }

    @Override
    public Map<TopicPartition, OffsetAndMetadata> preCommit(Map<TopicPartition, OffsetAndMetadata> currentOffsets) {
        try {
            uploadDue();
        } catch (RuntimeException error) {
            LOG.warn("upload to S3 failed during commit ({}); committing only what is already in S3", error.toString());
        }
        Map<TopicPartition, OffsetAndMetadata> committable = new HashMap<>();
        for (Map.Entry<TopicPartition, PartitionBuffer> entry : buffers.entrySet()) {
            long offset = entry.getValue().committableOffset();
            if (offset != PartitionBuffer.UNKNOWN) {
                committable.put(entry.getKey(), new OffsetAndMetadata(offset));
            }
        }
        return committable;
    }

    @Override
    public void close(Collection<TopicPartition> partitions) {
        // Unuploaded records are dropped on purpose: the next owner resumes from S3 and re-reads them from Kafka.
        for (TopicPartition tp : partitions) {
            buffers.remove(tp);
        }
    }

    @Override
    public void stop() {
        buffers.clear();
        if (store != null) {
            store.close();
        }
    }

    /** For tests and logs: records whose value was not valid JSON. */
    long invalidJsonRecords() {
        return invalidJsonRecords;
    }

    List<TopicPartition> openPartitions() {
        return List.copyOf(buffers.keySet());
    }
}
