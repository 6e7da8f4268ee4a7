"""Offset and message lookups: GET_MAX_OFFSET, GET_MIN_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP,
GET_EARLIEST_MSG_STORETIME, VIEW_MESSAGE_BY_ID, QUERY_MESSAGE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmqnode import validation
from rmqnode.errors import RemotingError
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.connection import Connection, Handler

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController

DEFAULT_QUERY_MAX_NUM = 32


class QueryProcessor:
    def __init__(self, broker: BrokerController) -> None:
        self.store = broker.store

    def table(self) -> dict[int, Handler]:
        rc = RequestCode
        return {rc.GET_MAX_OFFSET: self.max_offset, rc.GET_MIN_OFFSET: self.min_offset,
                rc.SEARCH_OFFSET_BY_TIMESTAMP: self.offset_by_time,
                rc.GET_EARLIEST_MSG_STORETIME: self.earliest,
                rc.VIEW_MESSAGE_BY_ID: self.view_message, rc.QUERY_MESSAGE: self.query_message}

    @staticmethod
    def _queue(cmd: RemotingCommand) -> tuple[str, int]:
        """The topic and queueId of a lookup, checked before the store sees them: the names
        reach the store's files and index hashes."""
        return (validation.topic(cmd.require("topic")),
                cmd.int_field("queueId", None, *validation.INT32))

    def max_offset(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        offset = self.store.max_offset(*self._queue(cmd))
        return cmd.response(fields={"offset": offset})

    def min_offset(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        offset = self.store.min_offset(*self._queue(cmd))
        return cmd.response(fields={"offset": offset})

    def offset_by_time(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        upper = (cmd.field("boundaryType") or "").upper() == "UPPER"
        offset = self.store.offset_by_time(*self._queue(cmd), cmd.int_field("timestamp"), upper)
        return cmd.response(fields={"offset": offset})

    def earliest(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        ts = self.store.earliest_store_time(*self._queue(cmd))
        return cmd.response(fields={"timestamp": ts})

    def view_message(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        offset = cmd.int_field("offset")
        raw = self.store.raw_message(offset)
        if raw is None:
            return cmd.response(ResponseCode.SYSTEM_ERROR,
                                f"can not find message by the offset, {offset}")
        return cmd.response(body=raw)

    def query_message(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        max_num = cmd.int_field("maxNum", None, *validation.INT32)
        if cmd.bool_field("_UNIQUE_KEY_QUERY"):
            max_num = DEFAULT_QUERY_MAX_NUM
        key = cmd.require("key")
        if validation.has_lone_surrogate(key):  # the index hashes keys as Java's UTF-16
            raise RemotingError(ResponseCode.SYSTEM_ERROR,
                                f"the key {validation.quote(key)} is not a string")
        found = self.store.query_by_key(validation.topic(cmd.require("topic")), key, max_num,
                                        cmd.int_field("beginTimestamp"),
                                        cmd.int_field("endTimestamp"))
        ts, phy = self.store.index.last_update
        fields = {"indexLastUpdateTimestamp": ts, "indexLastUpdatePhyoffset": phy}
        if not found:
            return cmd.response(ResponseCode.QUERY_NOT_FOUND,
                                "can not find message, maybe time range not correct", fields)
        body = b"".join(self.store.raw_message(m.commit_log_offset) or b"" for m in found)
        return cmd.response(fields=fields, body=body)
