package pipeline.s3sink;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.errors.RetriableException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTaskContext;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class S3SinkTaskTest {
    private static final String TOPIC = "0a1b2c3d4e5f.pin";
    private static final TopicPartition TP = new TopicPartition(TOPIC, 1);

    private final InMemoryStore store = new InMemoryStore();
    private final AtomicLong now = new AtomicLong(1_000_000L);
    private final Map<TopicPartition, Long> rewinds = new HashMap<>();

    @BeforeEach
    void clear() {
        rewinds.clear();
    }

    private S3SinkTask startTask(int flushSize) {
        return startTask(flushSize, 16L * 1024 * 1024);
    }

    private S3SinkTask startTask(int flushSize, long flushBytes) {
        S3SinkTask task = new S3SinkTask(config -> store, now::get);
        task.initialize(fakeContext());
        task.start(Map.of(S3SinkConfig.BUCKET, "user-0a1b2c3d4e5f-bucket", S3SinkConfig.FLUSH_SIZE,
                String.valueOf(flushSize), S3SinkConfig.FLUSH_BYTES, String.valueOf(flushBytes),
                S3SinkConfig.ROTATE_INTERVAL_MS, "3000", S3SinkConfig.RETRY_BACKOFF_MS, "0"));
        task.open(List.of(TP));
        return task;
    }

    private static List<SinkRecord> records(long from, long toExclusive) {
        List<SinkRecord> records = new ArrayList<>();
        for (long offset = from; offset < toExclusive; offset++) {
            records.add(record(offset, "{\"ind\": " + offset + "}"));
        }
        return records;
    }

    private static SinkRecord record(long offset, String value) {
        return new SinkRecord(TOPIC, TP.partition(), null, null, null, value.getBytes(UTF_8), offset);
    }

    /** Every offset found in the store (start offset from the key + one per line), in key order. */
    private List<Long> offsetsInStore() {
        List<Long> offsets = new ArrayList<>();
        for (Map.Entry<String, byte[]> object : store.objects.entrySet()) {
            long start = ObjectKeys.startOffset(object.getKey()).orElseThrow();
            String[] lines = new String(object.getValue(), UTF_8).split("\n");
            for (int i = 0; i < lines.length; i++) {
                assertEquals("{\"ind\":" + (start + i) + "}", lines[i], "line content matches its offset");
                offsets.add(start + i);
            }
        }
        return offsets;
    }

    private Set<Long> startOffsets() {
        Set<Long> starts = new java.util.TreeSet<>();
        for (String key : store.objects.keySet()) {
            starts.add(ObjectKeys.startOffset(key).orElseThrow());
        }
        return starts;
    }

    private static List<Long> range(long from, long toExclusive) {
        List<Long> offsets = new ArrayList<>();
        for (long offset = from; offset < toExclusive; offset++) {
            offsets.add(offset);
        }
        return offsets;
    }

    @Test
    void sizeRotationWritesFullObjectsAndCommitsOnlyUploadedOffsets() {
        S3SinkTask task = startTask(3);
        task.put(records(0, 7));
        assertEquals(Set.of("topics/0a1b2c3d4e5f.pin/partition=1/0a1b2c3d4e5f.pin+1+0000000000.json",
                "topics/0a1b2c3d4e5f.pin/partition=1/0a1b2c3d4e5f.pin+1+0000000003.json"), store.objects.keySet());
        Map<TopicPartition, OffsetAndMetadata> committed = task.preCommit(Map.of());
        assertEquals(6L, committed.get(TP).offset(), "offset 6 is buffered, not uploaded: commit stops before it");
    }

    @Test
    void timeRotationUploadsAPartialObjectOnAnEmptyPut() {
        S3SinkTask task = startTask(1000);
        task.put(records(0, 2));
        task.put(List.of());
        assertEquals(0, store.objects.size());
        now.addAndGet(3000);
        task.put(List.of());
        assertEquals(range(0, 2), offsetsInStore());
        assertEquals(2L, task.preCommit(Map.of()).get(TP).offset());
    }

    @Test
    void restartResumesFromS3AndSkipsReplayedRecords() {
        S3SinkTask first = startTask(4);
        first.put(records(0, 10));
        // Crash: offsets 8 and 9 were buffered only; Kafka's committed offset (say 2) is behind S3.
        S3SinkTask second = startTask(4);
        assertEquals(Map.of(TP, 8L), rewinds, "consumer rewound to the end of the last object");
        second.put(records(2, 14));
        now.addAndGet(3000);
        second.put(List.of());
        assertEquals(range(0, 14), offsetsInStore());
    }

    @Test
    void emptyPrefixReadsFromTheStartAndCommitsNothingBeforeAnUpload() {
        S3SinkTask task = startTask(100);
        assertEquals(Map.of(TP, 0L), rewinds);
        assertEquals(Map.of(), task.preCommit(Map.of()));
        task.put(records(500, 502));  // retention removed 0..499: the first object starts where the log starts
        now.addAndGet(3000);
        task.put(List.of());
        assertEquals(List.of(500L, 501L), offsetsInStore());
    }

    @Test
    void restartAfterTimeRotatedObjectCountsItsLines() {
        S3SinkTask first = startTask(100);
        first.put(records(0, 5));
        now.addAndGet(3000);
        first.put(List.of());
        startTask(100);
        assertEquals(Map.of(TP, 5L), rewinds);
    }

    @Test
    void failedUploadIsRetriedWithoutDuplicates() {
        S3SinkTask task = startTask(2);
        store.failPuts = true;
        List<SinkRecord> batch = records(0, 5);
        assertThrows(RetriableException.class, () -> task.put(batch));
        assertEquals(Map.of(), task.preCommit(Map.of()), "nothing uploaded, nothing committed");
        store.failPuts = false;
        task.put(batch);
        now.addAndGet(3000);
        task.put(List.of());
        assertEquals(range(0, 5), offsetsInStore());
        assertEquals(Set.of(0L, 2L, 4L), startOffsets(), "object boundaries as if nothing had failed");
    }

    @Test
    void anOffsetGapStartsANewObjectSoLineCountsStayExact() {
        S3SinkTask task = startTask(100);
        List<SinkRecord> batch = new ArrayList<>(records(0, 2));
        batch.addAll(records(5, 7));
        task.put(batch);
        now.addAndGet(3000);
        task.put(List.of());
        assertEquals(List.of(0L, 1L, 5L, 6L), offsetsInStore());
        assertEquals(2, store.objects.size());
    }

    @Test
    void invalidJsonIsWrittenAsOneLineAndCounted() {
        S3SinkTask task = startTask(3);
        task.put(List.of(record(0, "{\"ind\": 0}"), record(1, "not\njson"), record(2, "{\"ind\": 2}")));
        assertEquals(1, task.invalidJsonRecords());
        byte[] content = store.objects.firstEntry().getValue();
        assertEquals("{\"ind\":0}\nnot json\n{\"ind\":2}\n", new String(content, UTF_8));
    }

    @Test
    void byteRotationUploadsAsSoonAsABufferReachesFlushBytesWhateverItsRecordCount() {
        S3SinkTask task = startTask(100_000, 1024);
        task.put(records(0, 300));
        assertEquals(range(0, 300).subList(0, offsetsInStore().size()), offsetsInStore(), "each offset once, in order");
        List<byte[]> objects = new ArrayList<>(store.objects.values());
        assertEquals(true, objects.size() >= 3, "300 lines of 10-12 bytes make at least three 1 KiB objects");
        for (byte[] object : objects) {
            String content = new String(object, UTF_8);
            int lastLine = content.substring(0, content.length() - 1).lastIndexOf('\n') + 1;
            assertEquals(true, object.length >= 1024, "uploaded only once it reached flush.bytes");
            assertEquals(true, lastLine < 1024, "uploaded on the very record that reached flush.bytes");
        }
        assertEquals(true, offsetsInStore().size() > 300 - 1024 / 10, "what stays buffered is under flush.bytes");
    }

    @Test
    void aRecordLargerThanFlushBytesIsWrittenAlone() {
        S3SinkTask task = startTask(100_000, 1024);
        String big = "{\"ind\":0,\"text\":\"" + "x".repeat(4000) + "\"}";
        task.put(List.of(record(0, big), record(1, "{\"ind\":1}")));
        assertEquals(1, store.objects.size());
        assertEquals(big + "\n", new String(store.objects.values().iterator().next(), UTF_8));
    }

    /**
     * The worker's context, as a proxy so the test compiles against every Connect API the plugin supports (4.1 added
     * the abstract {@code pluginMetrics()}, which 3.7 does not have): it records rewinds and owns {@link #TP}.
     */
    @SuppressWarnings("unchecked")
    private SinkTaskContext fakeContext() {
        return (SinkTaskContext) Proxy.newProxyInstance(
                SinkTaskContext.class.getClassLoader(), new Class<?>[] {SinkTaskContext.class}, (proxy, method, args) -> {
                    switch (method.getName()) {
                        case "offset":
                            if (args.length == 1) {
                                rewinds.putAll((Map<TopicPartition, Long>) args[0]);
                            } else {
                                rewinds.put((TopicPartition) args[0], (Long) args[1]);
                            }
                            return null;
                        case "assignment":
                            return Set.of(TP);
                        case "configs":
                            return Map.of();
                        case "hashCode":
                            return System.identityHashCode(proxy);
                        case "equals":
                            return proxy == args[0];
                        case "toString":
                            return "FakeContext";
                        default:
                            return null;  // timeout, pause, resume, requestCommit, pluginMetrics, errantRecordReporter
                    }
                });
    }
}
