package pipeline.s3sink;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.net.httpserver.HttpServer;
import java.lang.reflect.Proxy;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Stream;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.Config;
import org.apache.kafka.common.utils.AppInfoParser;
import org.apache.kafka.connect.connector.Connector;
import org.apache.kafka.connect.runtime.isolation.LoaderSwap;
import org.apache.kafka.connect.runtime.isolation.PluginClassLoader;
import org.apache.kafka.connect.runtime.isolation.Plugins;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;
import org.apache.kafka.connect.sink.SinkTaskContext;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The packaged plugin in a real Connect runtime: each failsafe execution of pom.xml puts one connect-runtime on the
 * class path (3.7.2, what MSK Connect runs, and 4.1.1, the local worker's) and nothing of the plugin. Connect loads
 * the plugin from a plugin.path folder laid out as services/kafka/fetch.sh lays it out (the jar and its runtime
 * dependencies), in its own class loader, validates the connector's configuration, and runs a task that writes one
 * object to a small S3 stand-in on loopback through the AWS SDK bundled in the plugin.
 */
class PluginRuntimeIT {
    private static final String TOPIC = "0a1b2c3d4e5f.pin";

    @TempDir
    Path pluginPath;

    @Test
    void connectLoadsThePluginInIsolationAndItsTaskWritesToS3() throws Exception {
        assertEquals(System.getProperty("expected.connect.runtime"), AppInfoParser.getVersion());
        Path folder = Files.createDirectories(pluginPath.resolve("s3-sink"));
        Files.copy(Path.of(System.getProperty("sink.jar")), folder.resolve("s3-sink.jar"));
        try (Stream<Path> dependencies = Files.list(Path.of(System.getProperty("sink.dependencies")))) {
            for (Path jar : dependencies.toList()) {
                Files.copy(jar, folder.resolve(jar.getFileName()));
            }
        }

        Map<String, byte[]> puts = new ConcurrentHashMap<>();
        HttpServer s3 = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        s3.createContext("/", exchange -> {
            byte[] body = exchange.getRequestBody().readAllBytes();
            byte[] answer = new byte[0];
            if (exchange.getRequestMethod().equals("PUT")) {
                boolean chunked = exchange.getRequestHeaders().getFirst("x-amz-content-sha256").startsWith("STREAMING-");
                puts.put(exchange.getRequestURI().getPath(), chunked ? awsChunkedPayload(body) : body);
                exchange.getResponseHeaders().add("ETag", "\"e\"");
            } else {
                answer = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult "
                        + "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>bucket</Name><KeyCount>0</KeyCount>"
                        + "<IsTruncated>false</IsTruncated></ListBucketResult>").getBytes(UTF_8);
            }
            exchange.sendResponseHeaders(200, answer.length == 0 ? -1 : answer.length);
            exchange.getResponseBody().write(answer);
            exchange.close();
        });
        s3.start();
        try {
            Map<String, String> config = Map.of(
                    "connector.class", "pipeline.s3sink.S3SinkConnector",
                    "topics", TOPIC,
                    "s3.bucket.name", "bucket",
                    "store.url", "http://127.0.0.1:" + s3.getAddress().getPort(),
                    "s3.path.style.access.enabled", "true",
                    "aws.access.key.id", "test",
                    "aws.secret.access.key", "test",
                    "flush.size", "2");
            Plugins plugins = new Plugins(Map.of("plugin.path", pluginPath.toString(), "plugin.discovery", "service_load"));
            Connector connector = plugins.newConnector("pipeline.s3sink.S3SinkConnector");
            ClassLoader loader = connector.getClass().getClassLoader();
            assertTrue(loader instanceof PluginClassLoader, "loaded from the plugin folder, not the class path: " + loader);
            try (LoaderSwap swap = plugins.withClassLoader(loader)) {
                Config validated = connector.validate(config);
                validated.configValues().forEach(value -> assertEquals(List.of(), value.errorMessages(), value.name()));
                connector.start(config);
                SinkTask task = (SinkTask) plugins.newTask(connector.taskClass());
                assertSame(loader, task.getClass().getClassLoader());
                TopicPartition tp = new TopicPartition(TOPIC, 0);
                task.initialize(context(tp));
                task.start(connector.taskConfigs(1).get(0));
                task.open(List.of(tp));
                List<SinkRecord> records = new ArrayList<>();
                for (long offset = 0; offset < 2; offset++) {
                    byte[] value = ("{\"ind\":" + offset + "}").getBytes(UTF_8);
                    records.add(new SinkRecord(TOPIC, 0, null, null, null, value, offset));
                }
                task.put(records);
                task.stop();
                connector.stop();
            }
        } finally {
            s3.stop(0);
        }
        String key = "/bucket/topics/" + TOPIC + "/partition=0/" + TOPIC + "+0+0000000000.json";
        assertEquals(Set.of(key), puts.keySet());
        assertEquals("{\"ind\":0}\n{\"ind\":1}\n", new String(puts.get(key), UTF_8));
    }

    /** The payload of an aws-chunked body (`<hex size>;chunk-signature=...\r\n<data>\r\n`..., `0;...` ends it). */
    private static byte[] awsChunkedPayload(byte[] body) {
        java.io.ByteArrayOutputStream payload = new java.io.ByteArrayOutputStream();
        int at = 0;
        while (true) {
            int lineEnd = indexOfCrLf(body, at);
            String header = new String(body, at, lineEnd - at, UTF_8);
            int size = Integer.parseInt(header.split(";", 2)[0], 16);
            if (size == 0) {
                return payload.toByteArray();
            }
            payload.write(body, lineEnd + 2, size);
            at = lineEnd + 2 + size + 2;
        }
    }

    private static int indexOfCrLf(byte[] body, int from) {
        for (int i = from; i + 1 < body.length; i++) {
            if (body[i] == '\r' && body[i + 1] == '\n') {
                return i;
            }
        }
        throw new IllegalArgumentException("no chunk header after byte " + from);
    }

    private static SinkTaskContext context(TopicPartition tp) {
        return (SinkTaskContext) Proxy.newProxyInstance(SinkTaskContext.class.getClassLoader(),
                new Class<?>[] {SinkTaskContext.class},
                (proxy, method, args) -> method.getName().equals("assignment") ? Set.of(tp)
                        : method.getName().equals("configs") ? Map.of() : null);
    }
}
