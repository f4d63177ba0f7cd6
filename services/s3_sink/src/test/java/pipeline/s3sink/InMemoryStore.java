package pipeline.s3sink;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;

/** An object store in a sorted map; {@code failPuts} simulates an unreachable S3. */
final class InMemoryStore implements ObjectStore {
    final TreeMap<String, byte[]> objects = new TreeMap<>();
    int puts;
    boolean failPuts;

    @Override
    public List<String> list(String prefix) {
        List<String> keys = new ArrayList<>();
        for (String key : objects.tailMap(prefix).keySet()) {
            if (!key.startsWith(prefix)) {
                break;
            }
            keys.add(key);
        }
        return keys;
    }

    @Override
    public byte[] get(String key) {
        return objects.get(key).clone();
    }

    @Override
    public void put(String key, byte[] content) {
        if (failPuts) {
            throw new IllegalStateException("S3 is down");
        }
        puts++;
        objects.put(key, content.clone());
    }
}
