"""The strings POP consumption puts on the wire (ExtraInfoUtil), IO-free.

A popped message is acknowledged by its *extra info*: the checkpoint it was popped under
(`ckQueueOffset popTime invisibleTime reviveQid retry brokerName queueId [queueOffset]`,
space-separated). The broker sends the checkpoint part once per response, as
`startOffsetInfo` and `msgOffsetInfo` headers, and clients build each message's extra info
from them; messages revived into a retry topic carry it ready-made in their POP_CK property.

An orderly POP is told apart by its revive queue id, ORDER_REVIVE_QID (KeyBuilder's
POP_ORDER_REVIVE_QUEUE): it has no checkpoint in any revive queue, and its ack and change of
invisible time go to the queue's order info instead. Its response adds `orderCountInfo`, how
often each message was delivered before (clients set it as the reconsume times).
"""

from __future__ import annotations

from dataclasses import dataclass

from rmqnode.errors import RemotingError
from rmqnode.message import RETRY_PREFIX
from rmqnode.validation import integer

NORMAL, RETRY_V1 = "0", "1"
ORDER_REVIVE_QID = 999


def pop_retry_topic(topic: str, group: str) -> str:
    """Where a POP consumer group's unacknowledged messages of `topic` come back (v1 naming)."""
    return f"{RETRY_PREFIX}{group}_{topic}"


def real_topic(topic: str, group: str, retry: str) -> str:
    """The topic a message was popped from, given the topic the client saw and the retry flag."""
    if retry == NORMAL:
        return topic
    if retry == RETRY_V1:
        return pop_retry_topic(topic, group)
    raise ValueError(f"unknown retry flag {retry!r}")


def retry_flag(topic: str) -> str:
    return RETRY_V1 if topic.startswith(RETRY_PREFIX) else NORMAL


@dataclass(frozen=True, slots=True)
class ExtraInfo:
    ck_queue_offset: int
    pop_time: int
    invisible_time: int
    revive_qid: int
    retry: str
    broker_name: str
    queue_id: int
    queue_offset: int = -1

    @property
    def is_order(self) -> bool:
        return self.revive_qid == ORDER_REVIVE_QID

    @classmethod
    def parse(cls, text: str) -> ExtraInfo:
        """Raises ValueError for anything that is not an extra info string."""
        parts = text.split(" ")
        if len(parts) < 7:
            raise ValueError(f"extraInfo {text!r} has {len(parts)} fields, expected 7 or 8")
        numbers = [_long(parts[i]) for i in (0, 1, 2, 3, 6)]
        return cls(*numbers[:4], parts[4], parts[5], numbers[4],
                   _long(parts[7]) if len(parts) > 7 else -1)

    def __str__(self) -> str:
        text = (f"{self.ck_queue_offset} {self.pop_time} {self.invisible_time} "
                f"{self.revive_qid} {self.retry} {self.broker_name} {self.queue_id}")
        return text if self.queue_offset < 0 else f"{text} {self.queue_offset}"


def _long(text: str) -> int:
    """A number of an extra info as Java's Long.parseLong reads it: int() would take " 1",
    "1_0", Arabic digits and numbers no long holds."""
    try:
        return integer(text, "extraInfo")
    except RemotingError as exc:
        raise ValueError(exc.remark) from None


def offset_info_item(topic: str, queue_id: int, value: str | int) -> str:
    """One `retry queueId value` item of startOffsetInfo / msgOffsetInfo (joined by `;`)."""
    return f"{retry_flag(topic)} {queue_id} {value}"


def order_count_items(topic: str, queue_id: int, counts: dict[int, int]) -> list[str]:
    """An orderly pop's orderCountInfo items for one queue (ExtraInfoUtil): one
    `retry qo<queueId>%<offset> count` per message delivered before, then `retry queueId
    count` with the least count of the batch, which clients older than per-offset counts
    read."""
    flag = retry_flag(topic)
    redelivered = {o: n for o, n in counts.items() if n > 0}
    items = [f"{flag} qo{queue_id}%{o} {n}" for o, n in redelivered.items()]
    least = min(counts.values()) if counts and len(redelivered) == len(counts) else 0
    return items + [f"{flag} {queue_id} {least}"]


def parse_offset_info(text: str | None) -> dict[str, str]:
    """startOffsetInfo or msgOffsetInfo as {"retry@queueId": value}."""
    out: dict[str, str] = {}
    for item in (text or "").split(";"):
        if not item:
            continue
        parts = item.split(" ")
        if len(parts) != 3:
            raise ValueError(f"bad offset info item {item!r}")
        out[f"{parts[0]}@{parts[1]}"] = parts[2]
    return out
