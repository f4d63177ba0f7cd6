"""v2 consumer records: a record a json-format consumer cannot decode loses nothing. The records before it are
answered, it is reported with Confluent's error naming where it is, and commits never move past records the client
has not been handed. librdkafka's consumer is replaced by a small fake that behaves like it for consume/store/commit."""

from __future__ import annotations

import asyncio

import pytest

from services.rest_proxy import consumers
from services.rest_proxy.errors import RestError
from services.rest_proxy.models import V2CreateConsumerRequest, V2Subscription


class FakeMessage:
    def __init__(self, offset: int, value: bytes) -> None:
        self._offset, self._value = offset, value

    def topic(self):
        return "t"

    def partition(self):
        return 0

    def offset(self):
        return self._offset

    def key(self):
        return None

    def value(self):
        return self._value

    def error(self):
        return None


class FakeConsumer:
    """Hands out its messages once, like librdkafka's consume(); with the automatic offset store on, a message's
    offset would count as consumed as soon as consume() returned it."""

    def __init__(self, config: dict) -> None:
        self.auto_store = config.get("enable.auto.offset.store", True)
        self.messages = [FakeMessage(0, b'{"n": 0}'), FakeMessage(1, b'{"n": 1}'), FakeMessage(2, b"{not json"),
                         FakeMessage(3, b'{"n": 3}')]  # fmt: skip
        self.stored = -1

    def subscribe(self, topics):
        pass

    def consume(self, count, timeout):
        out, self.messages = self.messages[:count], self.messages[count:]
        if self.auto_store and out:
            self.stored = out[-1].offset()
        return out

    def store_offsets(self, message):
        self.stored = max(self.stored, message.offset())

    def committed_position(self) -> int:
        return self.stored + 1  # what commit() without offsets would commit


@pytest.fixture
def manager(monkeypatch):
    monkeypatch.setattr(consumers, "Consumer", FakeConsumer)
    return consumers.ConsumerManager({})


def test_a_record_that_is_not_json_is_kept_and_reported_and_nothing_before_it_is_lost(manager):
    instance = manager.create("g", V2CreateConsumerRequest(name="c", format="json"))
    asyncio.run(manager.subscribe(instance, V2Subscription(topics=["t"])))
    first = asyncio.run(manager.records(instance, 100, 0))
    assert [r["offset"] for r in first] == [0, 1]
    assert instance.consumer.committed_position() == 2, "a commit would not skip the undecodable record"
    for _ in range(2):  # reported every time, never skipped
        with pytest.raises(RestError) as raised:
            asyncio.run(manager.records(instance, 100, 0))
        assert raised.value.error.value.error_code == 50002
        assert "t partition 0 offset 2" in raised.value.message
    assert instance.consumer.committed_position() == 2
