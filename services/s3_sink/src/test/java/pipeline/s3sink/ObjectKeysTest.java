package pipeline.s3sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.OptionalLong;
import org.junit.jupiter.api.Test;

class ObjectKeysTest {
    @Test
    void keyFollowsConfluentLayoutWithTenDigitOffset() {
        assertEquals("topics/0a1b2c3d4e5f.pin/partition=2/0a1b2c3d4e5f.pin+2+0000000042.json",
                ObjectKeys.key("topics", "0a1b2c3d4e5f.pin", 2, 42));
        assertEquals("topics/t/partition=0/t+0+0000000000.json", ObjectKeys.key("topics", "t", 0, 0));
    }

    @Test
    void keysSortLikeTheirOffsets() {
        assertTrue(ObjectKeys.key("topics", "t", 0, 999).compareTo(ObjectKeys.key("topics", "t", 0, 1000)) < 0);
    }

    @Test
    void startOffsetIsParsedBackAndForeignKeysAreIgnored() {
        assertEquals(OptionalLong.of(1234567890L), ObjectKeys.startOffset(ObjectKeys.key("topics", "a.b-c", 11, 1234567890L)));
        assertEquals(OptionalLong.empty(), ObjectKeys.startOffset("topics/t/partition=0/notes.txt"));
        assertEquals(OptionalLong.empty(), ObjectKeys.startOffset("topics/t/partition=0/t+0+12.json"));
    }
}
