"""Transactional messages (TransactionalMessageService, EndTransactionProcessor): a half
message is parked on RMQ_SYS_TRANS_HALF_TOPIC, invisible to consumers; END_TRANSACTION
commits it (stored again on its real topic) or rolls it back, and either way leaves an op
record (tag "d", body = the half's queue offset) on RMQ_SYS_TRANS_OP_HALF_TOPIC."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from rmqnode import log, validation
from rmqnode.message import (PGROUP, REAL_QID, REAL_TOPIC, TAGS, TRAN_MSG, TRANSACTION_CHECK_TIMES,
                             TRANSACTION_COMMIT_TYPE, TRANSACTION_ID, TRANSACTION_MASK, UNIQ_KEY,
                             WAIT, MessageExt, encode_properties)
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.connection import Connection
from rmqnode.storage.javamap import properties_string
from rmqnode.storage.records import reencode
from rmqnode.storage.store import Message

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController

_log = log.get("rmqnode.broker")

HALF_TOPIC = "RMQ_SYS_TRANS_HALF_TOPIC"
OP_TOPIC = "RMQ_SYS_TRANS_OP_HALF_TOPIC"
REMOVE_TAG = "d"
COMMIT, ROLLBACK = 8, 12


def park_half(msg: Message) -> None:
    """Turn a prepared message into its half message, in place (parseHalfMessageInner: the
    real topic and queue are all it adds; a check-back names the transaction by UNIQ_KEY)."""
    msg.properties[REAL_TOPIC] = msg.topic
    msg.properties[REAL_QID] = str(msg.queue_id)
    msg.sys_flag &= ~TRANSACTION_MASK
    msg.topic, msg.queue_id = HALF_TOPIC, 0
    msg.properties_string = None  # parseHalfMessageInner writes all of them, WAIT too


class EndTransactionProcessor:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker

    async def handle(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand | None:
        if self.broker.is_slave:  # Java's answer, before anything is read
            return cmd.response(ResponseCode.SLAVE_NOT_AVAILABLE, None)
        kind = cmd.int_field("commitOrRollback", None, *validation.INT32)
        if kind not in (COMMIT, ROLLBACK):
            return None  # UNKNOWN: wait for a check-back; Java answers nothing either
        half = self.broker.store.message_at(cmd.int_field("commitLogOffset"))
        failure = self.refusal(half, cmd.field("producerGroup"))
        if failure is None and half.queue_offset != cmd.int_field(  # type: ignore[union-attr]
                "tranStateTableOffset"):
            failure = "The transaction state table offset wrong"
        if failure is None:
            failure = await self.end(half, kind)  # type: ignore[arg-type]
        return cmd.response() if failure is None else cmd.response(ResponseCode.SYSTEM_ERROR,
                                                                   failure)

    @staticmethod
    def refusal(half: MessageExt | None, group: str | None) -> str | None:
        """Why `half` cannot be ended by a producer of `group` (Java's remarks), or None."""
        if half is None or half.topic != HALF_TOPIC:
            return "Find prepared transaction message failed"
        if half.properties.get(PGROUP) != group:
            return "The producer group wrong"
        return None

    async def end(self, half: MessageExt, kind: int) -> str | None:
        """Commit or roll back a half message; the store's status when the commit could not
        be stored, else None. Remoting END_TRANSACTION and the gRPC EndTransaction share it."""
        store = self.broker.store
        if kind == COMMIT:
            # endMessageTransaction: the record keeps the half's properties as they are
            # (REAL_TOPIC, REAL_QID, TRAN_MSG, WAIT); the put goes without them.
            props = dict(half.properties)
            topic = props.pop(REAL_TOPIC, half.topic)
            queue_id = int(props.pop(REAL_QID, "0"))
            props.pop(TRAN_MSG, None)
            committed = Message.copy_of(
                half, topic, queue_id, props, properties_string=half.properties_text,
                prepared_transaction_offset=half.commit_log_offset,
                sys_flag=(half.sys_flag & ~TRANSACTION_MASK) | TRANSACTION_COMMIT_TYPE)
            result = await store.put_message(committed)
            if not result.ok:
                return result.status
        # addRemoveTagInTransactionOp: a new Message(topic, "d", body) carries WAIT=true into
        # the record; makeOpMessageInner then puts it without waiting, born now on this broker.
        op = Message(topic=OP_TOPIC, queue_id=0, body=str(half.queue_offset).encode(),
                     properties={TAGS: REMOVE_TAG, WAIT: "false"},
                     born_timestamp=int(time.time() * 1000), born_host=store.store_host,
                     properties_string=properties_string({TAGS: REMOVE_TAG, WAIT: "true"}))
        await store.put_message(op)
        return None


TRANS_CHECK_MAX_TIME_TOPIC = "TRANS_CHECK_MAX_TIME_TOPIC"
SYSTEM_GROUP = "CID_RMQ_SYS_TRANS"


class TransactionChecker:
    """Asks producers about half messages nobody ended (TransactionalMessageCheckService).

    Every transactionCheckInterval: a half message with no op record and older than
    transactionTimeOut is stored again at the end of the half queue with
    TRANSACTION_CHECK_TIMES + 1 and CHECK_TRANSACTION_STATE goes (oneway) to a live producer
    of its group, naming the new copy; past transactionCheckMax checks it is moved to
    TRANS_CHECK_MAX_TIME_TOPIC. Progress is kept as the system group's offset on the half
    queue, as Java keeps it."""

    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        self.done: set[int] = set()  # half queue offsets that have an op record
        self.op_offset = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.broker.config.transactionCheckInterval / 1000.0)
            try:
                await self.check(int(time.time() * 1000))
            except Exception:  # noqa: BLE001 - the checker must outlive one bad message
                _log.exception("transaction.check_failed")

    def latest_half(self, transaction_id: str) -> MessageExt | None:
        """The newest copy of the half message whose UNIQ_KEY is `transaction_id` (a check
        stores the half again each time), found through the index; None when there is none
        or it was ended already. How a gRPC EndTransaction, which names no offsets, finds
        its half message, until the check gives up on it."""
        store = self.broker.store
        copies = [m for m in store.query_by_key(HALF_TOPIC, transaction_id,
                                                self.broker.config.transactionCheckMax + 1)
                  if m.properties.get(UNIQ_KEY) == transaction_id]
        if not copies:
            return None
        half = max(copies, key=lambda m: m.commit_log_offset)
        self._read_ops()
        return None if half.queue_offset in self.done else half

    def _read_ops(self) -> None:
        store = self.broker.store
        cq = store.find_queue(OP_TOPIC, 0)
        while cq is not None and self.op_offset < cq.max_offset:
            entry = cq.entry(self.op_offset)
            op = store.message_at(entry[0]) if entry else None
            if op is not None and op.body.isdigit():
                self.done.add(int(op.body))
            self.op_offset += 1

    async def check(self, now: int) -> int:
        """One round; returns how many producers were asked."""
        broker, store, cfg = self.broker, self.broker.store, self.broker.config
        cq = store.find_queue(HALF_TOPIC, 0)
        if cq is None:
            return 0
        self._read_ops()
        offset = max(broker.offsets.query(SYSTEM_GROUP, HALF_TOPIC, 0), cq.min_offset)
        asked = 0
        end = cq.max_offset  # copies put back during this round wait for the next one
        while offset < end:
            entry = cq.entry(offset)
            half = store.message_at(entry[0]) if entry else None
            if half is None or offset in self.done:
                offset += 1
                continue
            if now - half.born_timestamp < cfg.transactionTimeOut:
                break  # younger ones follow: ask again next round
            times = int(half.properties.get(TRANSACTION_CHECK_TIMES, "0"))
            props = dict(half.properties)
            if times >= cfg.transactionCheckMax:
                await store.put_message(Message.copy_of(half, TRANS_CHECK_MAX_TIME_TOPIC, 0,
                                                        props))
                _log.warning("transaction.discarded", msg_id=half.msg_id, checks=times)
            else:
                props[TRANSACTION_CHECK_TIMES] = str(times + 1)
                result = await store.put_message(Message.copy_of(half, HALF_TOPIC, 0, props))
                if result.ok and result.appended is not None:
                    asked += self._ask(half, props, result.appended.wrote_offset,
                                       result.appended.queue_offset, result.msg_ids[0])
            offset += 1
        broker.offsets.commit(SYSTEM_GROUP, HALF_TOPIC, 0, offset)
        return asked

    def _ask(self, half, props: dict[str, str], phy: int, queue_offset: int,
             offset_id: str) -> int:
        channel = self.broker.clients.producer_channel(props.get(PGROUP, ""))
        if channel is None:
            return 0
        real = dict(props)
        topic = real.pop(REAL_TOPIC, half.topic)
        queue_id = int(real.pop(REAL_QID, "0"))
        body = reencode(half, topic=topic, queue_id=queue_id,
                        properties=encode_properties(props), prepared_transaction_offset=0,
                        queue_offset=queue_offset, physical_offset=phy)
        uniq = props.get(UNIQ_KEY, "")
        channel.conn.oneway(RemotingCommand.request(RequestCode.CHECK_TRANSACTION_STATE, {
            "topic": topic, "tranStateTableOffset": queue_offset, "commitLogOffset": phy,
            "msgId": uniq, "transactionId": props.get(TRANSACTION_ID, uniq),
            "offsetMsgId": offset_id}, bytes(body)))
        return 1
