"""Transactional messages (TransactionalMessageService, EndTransactionProcessor): a half
message is parked on RMQ_SYS_TRANS_HALF_TOPIC, invisible to consumers; END_TRANSACTION
commits it (stored again on its real topic) or rolls it back, and either way leaves an op
record (tag "d", body = the half's queue offset) on RMQ_SYS_TRANS_OP_HALF_TOPIC."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmqnode.message import (PGROUP, REAL_QID, REAL_TOPIC, TAGS, TRAN_MSG, TRANSACTION_COMMIT_TYPE,
                             TRANSACTION_ID, TRANSACTION_MASK, UNIQ_KEY, WAIT)
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import ResponseCode
from rmqnode.net.connection import Connection
from rmqnode.storage.store import Message

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController

HALF_TOPIC = "RMQ_SYS_TRANS_HALF_TOPIC"
OP_TOPIC = "RMQ_SYS_TRANS_OP_HALF_TOPIC"
REMOVE_TAG = "d"
COMMIT, ROLLBACK = 8, 12


def park_half(msg: Message) -> None:
    """Turn a prepared message into its half message, in place."""
    msg.properties[REAL_TOPIC] = msg.topic
    msg.properties[REAL_QID] = str(msg.queue_id)
    if UNIQ_KEY in msg.properties:
        msg.properties[TRANSACTION_ID] = msg.properties[UNIQ_KEY]
    msg.sys_flag &= ~TRANSACTION_MASK
    msg.topic, msg.queue_id = HALF_TOPIC, 0


class EndTransactionProcessor:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker

    async def handle(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand | None:
        kind = cmd.int_field("commitOrRollback")
        if kind not in (COMMIT, ROLLBACK):
            return None  # UNKNOWN: wait for a check-back; Java answers nothing either
        store = self.broker.store
        offset = cmd.int_field("commitLogOffset")
        half = store.message_at(offset)
        if half is None or half.topic != HALF_TOPIC:
            return cmd.response(ResponseCode.SYSTEM_ERROR,
                                "Find prepared transaction message failed")
        if half.properties.get(PGROUP) != cmd.field("producerGroup"):
            return cmd.response(ResponseCode.SYSTEM_ERROR, "The producer group wrong")
        if half.queue_offset != cmd.int_field("tranStateTableOffset"):
            return cmd.response(ResponseCode.SYSTEM_ERROR,
                                "The transaction state table offset wrong")
        if kind == COMMIT:
            props = dict(half.properties)
            topic = props.pop(REAL_TOPIC, half.topic)
            queue_id = int(props.pop(REAL_QID, "0"))
            props.pop(TRAN_MSG, None)
            committed = Message(topic=topic, queue_id=queue_id, body=half.body, properties=props,
                                flag=half.flag,
                                sys_flag=(half.sys_flag & ~TRANSACTION_MASK) |
                                TRANSACTION_COMMIT_TYPE,
                                born_timestamp=half.born_timestamp, born_host=half.born_host,
                                reconsume_times=half.reconsume_times,
                                prepared_transaction_offset=offset)
            result = await store.put_message(committed)
            if not result.ok:
                return cmd.response(ResponseCode.SYSTEM_ERROR, result.status)
        op = Message(topic=OP_TOPIC, queue_id=0, body=str(half.queue_offset).encode(),
                     properties={TAGS: REMOVE_TAG, WAIT: "false"},
                     born_timestamp=half.born_timestamp, born_host=half.born_host)
        await store.put_message(op)
        return cmd.response()
