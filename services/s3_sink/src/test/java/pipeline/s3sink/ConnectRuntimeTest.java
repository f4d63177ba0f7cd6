package pipeline.s3sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.apache.kafka.common.utils.AppInfoParser;
import org.apache.kafka.connect.sink.SinkTask;
import org.junit.jupiter.api.Test;

/** Each surefire execution of pom.xml runs the tests on the Connect API it names; this checks that it really does. */
class ConnectRuntimeTest {
    @Test
    void theTestsRunOnTheConnectApiTheExecutionNames() {
        String expected = System.getProperty("expected.connect.api");
        assertEquals(expected, AppInfoParser.getVersion(), "kafka-clients on the test classpath");
        String apiJar = SinkTask.class.getProtectionDomain().getCodeSource().getLocation().toString();
        assertTrue(apiJar.endsWith("connect-api-" + expected + ".jar"), apiJar);
    }

    @Test
    void thePluginIsJava17Bytecode() throws Exception {
        try (var in = S3SinkTask.class.getResourceAsStream("S3SinkTask.class")) {
            byte[] header = in.readNBytes(8);
            assertEquals(61, ((header[6] & 0xff) << 8) | (header[7] & 0xff), "class file major version (61 = Java 17)");
        }
    }
}
