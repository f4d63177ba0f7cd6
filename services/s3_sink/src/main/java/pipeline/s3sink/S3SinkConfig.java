package pipeline.s3sink;

import java.util.Map;
import org.apache.kafka.common.config.AbstractConfig;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigDef.Importance;
import org.apache.kafka.common.config.ConfigDef.Type;
import org.apache.kafka.common.config.types.Password;

/** Connector settings; the names follow Confluent's S3 sink where one exists, so existing configs read the same. */
public final class S3SinkConfig extends AbstractConfig {
    public static final String BUCKET = "s3.bucket.name";
    public static final String REGION = "s3.region";
    public static final String ENDPOINT = "store.url";
    public static final String PATH_STYLE = "s3.path.style.access.enabled";
    public static final String ACCESS_KEY_ID = "aws.access.key.id";
    public static final String SECRET_ACCESS_KEY = "aws.secret.access.key";
    public static final String TOPICS_DIR = "topics.dir";
    public static final String FLUSH_SIZE = "flush.size";
    public static final String FLUSH_BYTES = "flush.bytes";
    public static final String ROTATE_INTERVAL_MS = "rotate.interval.ms";
    public static final String RETRY_BACKOFF_MS = "retry.backoff.ms";

    public static final ConfigDef CONFIG_DEF = new ConfigDef()
            .define(BUCKET, Type.STRING, ConfigDef.NO_DEFAULT_VALUE, new ConfigDef.NonEmptyString(), Importance.HIGH,
                    "Bucket the objects are written to.")
            .define(REGION, Type.STRING, "us-east-1", Importance.MEDIUM, "AWS region of the bucket.")
            .define(ENDPOINT, Type.STRING, "", Importance.MEDIUM,
                    "S3 endpoint override (e.g. http://127.0.0.1:9000); empty means the region's AWS endpoint.")
            .define(PATH_STYLE, Type.BOOLEAN, false, Importance.LOW, "Address buckets by path instead of host name.")
            .define(ACCESS_KEY_ID, Type.STRING, "", Importance.MEDIUM,
                    "Static access key; empty means the AWS default credentials chain (environment, profile, role).")
            .define(SECRET_ACCESS_KEY, Type.PASSWORD, "", Importance.MEDIUM, "Secret for " + ACCESS_KEY_ID + ".")
            .define(TOPICS_DIR, Type.STRING, "topics", Importance.LOW, "Top-level folder of the objects.")
            .define(FLUSH_SIZE, Type.INT, 1000, ConfigDef.Range.atLeast(1), Importance.HIGH,
                    "Records per object: an object is uploaded as soon as it holds this many.")
            .define(FLUSH_BYTES, Type.LONG, 16L * 1024 * 1024, ConfigDef.Range.between(1024L, (long) Integer.MAX_VALUE - 8),
                    Importance.HIGH,
                    "Bytes per object: an object is uploaded as soon as its lines take this many bytes, so a "
                            + "partition's buffer stays bounded whatever the record size (a single larger record is "
                            + "written alone).")
            .define(ROTATE_INTERVAL_MS, Type.LONG, 5000L, ConfigDef.Range.atLeast(1), Importance.HIGH,
                    "Wall-clock age after which an object is uploaded even if it holds fewer than flush.size records "
                            + "(checked on every put() and preCommit()).")
            .define(RETRY_BACKOFF_MS, Type.LONG, 1000L, ConfigDef.Range.atLeast(0), Importance.LOW,
                    "Back-off before Connect retries a put() whose upload failed.");

    public S3SinkConfig(Map<String, String> props) {
        super(CONFIG_DEF, props);
    }

    public String bucket() {
        return getString(BUCKET);
    }

    public String region() {
        return getString(REGION);
    }

    public String endpoint() {
        return getString(ENDPOINT);
    }

    public boolean pathStyleAccess() {
        return getBoolean(PATH_STYLE);
    }

    public String accessKeyId() {
        return getString(ACCESS_KEY_ID);
    }

    public String secretAccessKey() {
        Password secret = getPassword(SECRET_ACCESS_KEY);
        return secret == null ? "" : secret.value();
    }

    public String topicsDir() {
        return getString(TOPICS_DIR);
    }

    public int flushSize() {
        return getInt(FLUSH_SIZE);
    }

    public long flushBytes() {
        return getLong(FLUSH_BYTES);
    }

    public long rotateIntervalMs() {
        return getLong(ROTATE_INTERVAL_MS);
    }

    public long retryBackoffMs() {
        return getLong(RETRY_BACKOFF_MS);
    }
}
