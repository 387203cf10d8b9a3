"""The spool payload keeps format 1: batches spooled before events became immutable replay unchanged."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.sdk import spool_codec
from heurmetrics.sdk.spool_codec import Uncounted, decode, encode, split_counted

#: A batch as the previous version (``StoreSink.encode``, ``counted`` on the event) wrote it:
#: one SDK-generated id (counted at record time) and one caller id (counted after its insert).
V1_PAYLOAD = (
    b'{"v":1,"rv":[["range_bias","1.0.0","' + b"ab" * 32 + b'"]],"e":['
    b'[0,"0190c0de00007000800000000000000a",1767225600.125,0.004,"ok","bullish",1.0,0.7,"live",null,null,1],'
    b'[0,"0190c0de00007000800000000000000b",1767225601.5,0.25,"error",null,null,null,"backtest","ValueError",'
    b'"0190c0de00007000800000000000000c",0]]}'
)


def test_a_format_1_batch_written_before_decodes_with_its_counting_and_re_encodes_byte_identical() -> None:
    items = decode(V1_PAYLOAD)
    events, uncounted = split_counted(items)
    assert [e.event_id.hex for e in events] == ["0190c0de00007000800000000000000a", "0190c0de00007000800000000000000b"]
    assert uncounted == {uuid.UUID(hex="0190c0de00007000800000000000000b")}  # the caller's id: count after insert
    assert isinstance(items[1], Uncounted) and not isinstance(items[0], Uncounted)
    first, second = events
    assert (first.started_at, first.duration_seconds, first.outcome, first.confidence) == (
        1767225600.125, 0.004, "bullish", 0.7
    )
    assert (second.status, second.mode, second.error_type) == ("error", "backtest", "ValueError")
    assert second.backtest_run_id == uuid.UUID(hex="0190c0de00007000800000000000000c")
    assert first.rule_version.id == -1 and first.rule_version.key == "range_bias@1.0.0"  # resolved by name later
    assert encode(items) == V1_PAYLOAD


def test_an_unknown_payload_version_is_refused() -> None:
    document = json.loads(V1_PAYLOAD)
    document["v"] = 2
    with pytest.raises(ValueError, match="unknown spool payload version 2"):
        decode(json.dumps(document).encode())


def test_events_are_immutable_and_counting_is_the_batchs() -> None:
    rv = RuleVersion(1, "r", "1", "h" * 64, {}, "", datetime(2026, 1, 1, tzinfo=UTC), "t")
    event = ExecutionEvent(uuid.uuid4(), rv, 1.0, 0.1, "ok", None, None, None, "live")
    with pytest.raises(AttributeError):
        event.started_at = 2.0  # type: ignore[misc]
    assert not hasattr(event, "counted")
    payload = json.loads(spool_codec.encode([event, Uncounted(event._replace(event_id=uuid.uuid4()))]))
    assert [row[-1] for row in payload["e"]] == [1, 0]
