"""The consumer RPCs of the gRPC protocol, translated onto the broker's POP (spec §4.6-§4.10).

As the Java proxy in local mode, each RPC becomes the remoting request the broker already
serves (POP_MESSAGE, ACK_MESSAGE, CHANGE_MESSAGE_INVISIBLETIME, CONSUMER_SEND_MSG_BACK) and
is handed to the same processor in-process: checkpoints, revive into
`%RETRY%<group>_<topic>`, the DLQ after retryMaxTimes and long polling are pop.py's and
revive.py's, so a message popped over gRPC can be acked over remoting and back.

A receipt handle is the POP extra info plus the message's commit log offset (§5.4). Handles
that do not parse, name an unknown retry flag, or have expired are 40013, checked here
before the broker sees them, as the Java proxy checks them.

Messages received with `auto_renew` (push consumers) are kept invisible by renewal.py while
their client lives; acks, nacks and forwards of them go through `svc.renewals.settling`, which
swaps the handle the client received for the latest renewal's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from google.protobuf.duration_pb2 import Duration

from rmqnode.broker.pop import MAX_POP_NUMS, PopResult
from rmqnode import log
from rmqnode.errors import RemotingError
from rmqnode.grpc import headers, resources
from rmqnode.grpc.messages import timestamp, to_proto
from rmqnode.grpc.status import OK, Code, GrpcError, from_remoting_error, status
from rmqnode.grpc.v2 import definition_pb2 as pb
from rmqnode.grpc.v2 import service_pb2 as spb
from rmqnode.message import MessageExt
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.popinfo import ExtraInfo, real_topic
from rmqnode.storage.records import decode_record
from rmqnode.validation import integer

if TYPE_CHECKING:
    from rmqnode.grpc.service import MessagingService

_log = log.get("rmqnode.grpc")

# ProxyConfig defaults (spec §4.6, §4.8).
MIN_INVISIBLE_MS = 10_000  # minInvisibleTimeMillsForRecv
MAX_INVISIBLE_MS = 12 * 3600 * 1000  # maxInvisibleTimeMills
MIN_POLLING_MS = 5_000  # grpcClientConsumerMinLongPollingTimeoutMillis
MAX_POLLING_MS = 20_000  # grpcClientConsumerMaxLongPollingTimeoutMillis
DEFAULT_REQUEST_TIMEOUT_MS = 3_000  # the clients' request_timeout, when no settings say
# Ours: the answer must be on its way before the client's deadline, not at it.
REPLY_MARGIN_MS = 200
ILLEGAL_POLLING_TIME_SINCE = "5.0.3"  # clients older than this get BAD_REQUEST instead
INIT_MODE_MAX = 1  # ConsumeInitMode.MAX: a new group starts at the end of a queue


@dataclass(frozen=True, slots=True)
class ReceiptHandle:
    """A parsed receipt handle: the POP extra info and the commit log offset (-1 if absent)."""

    info: ExtraInfo
    commit_log_offset: int

    @classmethod
    def parse(cls, text: str) -> ReceiptHandle:
        """ReceiptHandle.decode's rules: at least eight fields, numbers where Java parses
        numbers; 40013 otherwise."""
        parts = text.split(" ")
        try:
            if len(parts) < 8:
                raise ValueError(f"{len(parts)} fields, expected 8 or 9")
            info = ExtraInfo.parse(text)
            offset = integer(parts[8], "commitLogOffset") if len(parts) > 8 else -1
        except ValueError as exc:
            raise GrpcError(Code.INVALID_RECEIPT_HANDLE, f"receipt handle is invalid: {exc}") \
                from None
        except RemotingError as exc:
            raise GrpcError(Code.INVALID_RECEIPT_HANDLE,
                            f"receipt handle is invalid: {exc.remark}") from None
        return cls(info, offset)

    def alive(self) -> ReceiptHandle:
        """Itself while its invisible time lasts; 40013 once it passed (the message may be on
        its way back already, under a new handle)."""
        if self.info.pop_time + self.info.invisible_time <= int(time.time() * 1000):
            raise GrpcError(Code.INVALID_RECEIPT_HANDLE, "receipt handle is expired")
        return self

    def __str__(self) -> str:
        return f"{self.info} {self.commit_log_offset}"

    def fields(self, group: str, topic: str) -> dict[str, object]:
        """The ack-like remoting request's fields: the topic popped from (the retry topic for
        a revived message), its queue and offset, and the extra info as the broker reads it."""
        try:
            popped_from = real_topic(topic, group, self.info.retry)
        except ValueError as exc:
            raise GrpcError(Code.INVALID_RECEIPT_HANDLE, f"receipt handle is invalid: {exc}") \
                from None
        return {"consumerGroup": group, "topic": popped_from, "queueId": self.info.queue_id,
                "offset": self.info.queue_offset, "extraInfo": str(self.info)}


def _millis(duration: Duration) -> int:
    return duration.seconds * 1000 + duration.nanos // 1_000_000


async def _call(handler: Callable[[RemotingCommand], Awaitable[RemotingCommand]],
                cmd: RemotingCommand) -> RemotingCommand:
    """Run a broker processor on a request built here; its refusal (an error or a response
    that is not SUCCESS) as the GrpcError the Java proxy answers (spec §2.1)."""
    try:
        resp = await handler(cmd)
    except RemotingError as exc:
        raise from_remoting_error(exc) from None
    if resp.code != ResponseCode.SUCCESS:
        raise from_remoting_error(RemotingError(resp.code, resp.remark or ""))
    return resp


# -- ReceiveMessage ------------------------------------------------------------------------

def _invisible_ms(svc: MessagingService, request: spb.ReceiveMessageRequest) -> int:
    """Push consumers (auto_renew) get the server default (60 s), which the renewal then
    extends; a simple consumer's own value must lie in [10 s, 12 h] (40011)."""
    if request.auto_renew:
        return svc.broker.config.grpcDefaultInvisibleTimeMills
    invisible = _millis(request.invisible_duration)
    if invisible < MIN_INVISIBLE_MS:
        raise GrpcError(Code.ILLEGAL_INVISIBLE_TIME, f"the invisibleTime is too small. "
                        f"invisibleTime: {invisible}, minInvisibleTime: {MIN_INVISIBLE_MS}")
    if invisible > MAX_INVISIBLE_MS:
        raise GrpcError(Code.ILLEGAL_INVISIBLE_TIME, f"the invisibleTime is too large. "
                        f"invisibleTime: {invisible}, maxInvisibleTime: {MAX_INVISIBLE_MS}")
    return invisible


def _request_timeout_ms(svc: MessagingService) -> int:
    """The client's request timeout from its settings (Telemetry), else the clients' 3 s."""
    client = svc.clients.get(headers.current().client_id)
    settings = client.settings if client is not None else None
    if settings is None or not settings.HasField("request_timeout"):
        return DEFAULT_REQUEST_TIMEOUT_MS
    return _millis(settings.request_timeout)


def _polling_ms(svc: MessagingService, request: spb.ReceiveMessageRequest,
                context: grpc.aio.ServicerContext) -> int:
    """How long the broker may hold the receive (ReceiveMessageActivity): the request's long
    polling timeout, else what the deadline leaves after half a request timeout; within
    [5 s, 20 s], and never past the client's deadline (a DEADLINE_EXCEEDED would surface as
    an error in the user's receive) - too little time left is 40018 (40000 for old clients)."""
    remaining_s = context.time_remaining()
    remaining = None if remaining_s is None else int(remaining_s * 1000) - REPLY_MARGIN_MS
    if request.HasField("long_polling_timeout"):
        polling = _millis(request.long_polling_timeout)
    elif remaining is not None:
        polling = remaining - _request_timeout_ms(svc) // 2
    else:
        polling = MAX_POLLING_MS
    polling = min(max(polling, MIN_POLLING_MS), MAX_POLLING_MS)
    if remaining is not None and polling > remaining:
        if remaining < MIN_POLLING_MS:
            version = headers.current().version
            code = (Code.ILLEGAL_POLLING_TIME if version >= ILLEGAL_POLLING_TIME_SINCE
                    else Code.BAD_REQUEST)
            raise GrpcError(code, "The deadline time remaining is not enough for polling, "
                            "please check network condition")
        polling = remaining
    return polling


def _filter(svc: MessagingService, request: spb.ReceiveMessageRequest) -> dict[str, object]:
    """The POP request's expType/exp: TAG (empty = all) or SQL92, which a broker without
    enablePropertyFilter cannot evaluate (40010, as the proxy refuses what it cannot use)."""
    expression = request.filter_expression
    if expression.type != pb.SQL:
        return {"expType": "TAG", "exp": expression.expression or "*"}
    if not svc.broker.config.enablePropertyFilter:
        raise GrpcError(Code.ILLEGAL_FILTER_EXPRESSION, "SQL92 filtering is disabled on this "
                        "broker (enablePropertyFilter=false)")
    return {"expType": "SQL92", "exp": expression.expression}


async def _pop(svc: MessagingService, cmd: RemotingCommand,
               context: grpc.aio.ServicerContext) -> PopResult:
    """The broker's POP, given up when the call ends: grpc.aio cancels a streaming handler
    only when it next writes, and a long poll left running would take the next message
    for a client that is gone (it would come back only after its invisible time). An
    expression the broker cannot parse is 40010 ILLEGAL_FILTER_EXPRESSION."""
    popping = asyncio.ensure_future(
        svc.broker.popper.pop_messages(cmd, headers.current().peer_address))
    context.add_done_callback(lambda _call: popping.cancel())
    try:
        return await popping
    except RemotingError as exc:
        if exc.code == ResponseCode.SUBSCRIPTION_PARSE_FAILED:
            raise GrpcError(Code.ILLEGAL_FILTER_EXPRESSION, exc.remark) from None
        raise from_remoting_error(exc) from None


async def receive_message(svc: MessagingService, request: spb.ReceiveMessageRequest,
                          context: grpc.aio.ServicerContext
                          ) -> AsyncIterator[spb.ReceiveMessageResponse]:
    """POP across every queue of the topic on this broker (the request's queue id is
    ignored, as Java ignores it) and the group's retry topic; the stream is the status (OK,
    or 40401 when the long poll found nothing, 42900 when too many polls wait), one response
    per message, then the delivery timestamp. Messages retried as often as the group allows
    go to its DLQ here instead of to the client."""
    group = resources.group(request.group)
    topic = resources.topic(request.message_queue.topic)
    if request.batch_size <= 0:
        raise GrpcError(Code.BAD_REQUEST, f"batch_size must be positive, not {request.batch_size}")
    config = svc.broker.groups.find(group) or {}
    # A FIFO group pops orderly; a push consumer's retried receive (same attempt id) gets
    # the batch its lost answer held rather than being blocked by it.
    attempt = {"attemptId": request.attempt_id} if request.HasField("attempt_id") else {}
    cmd = RemotingCommand.request(RequestCode.POP_MESSAGE, {
        "consumerGroup": group, "topic": topic, "queueId": -1,
        "maxMsgNums": min(request.batch_size, MAX_POP_NUMS),
        "invisibleTime": _invisible_ms(svc, request),
        "pollTime": _polling_ms(svc, request, context),
        "initMode": INIT_MODE_MAX, "order": bool(config.get("consumeMessageOrderly")),
        **attempt, **_filter(svc, request)})
    popped = await _pop(svc, cmd, context)
    max_attempts = int(config.get("retryMaxTimes", 16)) + 1
    client_id = headers.current().client_id
    renewed: list[str] = []  # ids of the auto-renewed messages of this answer
    messages: list[pb.Message] = []
    for raw, info in zip(popped.messages, popped.infos):
        msg = decode_record(raw, 0)
        assert isinstance(msg, MessageExt)
        handle = ReceiptHandle(info, msg.commit_log_offset)
        if msg.reconsume_times >= max_attempts:
            try:
                await _dead_letter(svc, group, topic, handle, msg.msg_id)
            except GrpcError as exc:  # still in flight: it comes back and is tried again
                _log.warning("grpc.dead_letter_failed", group=group, topic=topic,
                             message_id=msg.msg_id, error=str(exc))
            continue
        if request.auto_renew:
            svc.renewals.track(client_id, group, topic, msg.msg_id, handle, msg.reconsume_times)
            renewed.append(msg.msg_id)
        messages.append(to_proto(msg, str(handle)))
    try:
        async for response in _answer(popped, messages):
            yield response
    except BaseException:
        # The client never got them all: they come back after their invisible time, as a
        # simple consumer's do, rather than being kept from the group for hours.
        svc.renewals.forget(client_id, group, renewed)
        raise


async def _answer(popped: PopResult, messages: list[pb.Message]
                  ) -> AsyncIterator[spb.ReceiveMessageResponse]:
    """The stream's responses in Java's order: status, messages, delivery timestamp."""
    if messages:
        yield spb.ReceiveMessageResponse(status=OK)
    elif popped.code == ResponseCode.POLLING_FULL:
        yield spb.ReceiveMessageResponse(status=status(Code.TOO_MANY_REQUESTS, "polling full"))
    else:
        yield spb.ReceiveMessageResponse(status=status(Code.MESSAGE_NOT_FOUND, "no new message"))
    delivered = timestamp(int(time.time() * 1000))
    for message in messages:
        yield spb.ReceiveMessageResponse(message=message)
    yield spb.ReceiveMessageResponse(delivery_timestamp=delivered)


# -- AckMessage ----------------------------------------------------------------------------

async def _ack(svc: MessagingService, group: str, topic: str,
               entry: spb.AckMessageEntry) -> None:
    """ACK_MESSAGE of the entry's handle, or of the latest renewal of it."""
    async with svc.renewals.settling(headers.current().client_id, group, entry.message_id,
                                     entry.receipt_handle) as handle_text:
        handle = ReceiptHandle.parse(handle_text).alive()
        cmd = RemotingCommand.request(RequestCode.ACK_MESSAGE, handle.fields(group, topic))
        await _call(svc.broker.popper.ack, cmd)


async def ack_message(svc: MessagingService, request: spb.AckMessageRequest,
                      context: grpc.aio.ServicerContext) -> spb.AckMessageResponse:
    """One ACK_MESSAGE per entry, each with its own status (echoing id and handle); the top
    status is theirs when they agree, else 30000 MULTIPLE_RESULTS."""
    group = resources.group(request.group)
    topic = resources.topic(request.topic)
    if not request.entries:
        raise GrpcError(Code.BAD_REQUEST, "no entry to ack")
    results = []
    for entry in request.entries:
        try:
            await _ack(svc, group, topic, entry)
            entry_status = OK
        except GrpcError as exc:
            entry_status = exc.to_status()
        results.append(spb.AckMessageResultEntry(message_id=entry.message_id,
                                                 receipt_handle=entry.receipt_handle,
                                                 status=entry_status))
    codes = {r.status.code for r in results}
    top = results[0].status if len(codes) == 1 else status(Code.MULTIPLE_RESULTS)
    return spb.AckMessageResponse(status=top, entries=results)


# -- ChangeInvisibleDuration ---------------------------------------------------------------

async def change_invisible_duration(svc: MessagingService,
                                    request: spb.ChangeInvisibleDurationRequest,
                                    context: grpc.aio.ServicerContext
                                    ) -> spb.ChangeInvisibleDurationResponse:
    """A nack with a delay: the message comes back after `invisible_duration` (0 allowed:
    Node nacks with it) with one more delivery attempt. The reply's handle is the new
    checkpoint's; the old one no longer acks."""
    group = resources.group(request.group)
    topic = resources.topic(request.topic)
    invisible = _millis(request.invisible_duration)
    if not 0 <= invisible <= MAX_INVISIBLE_MS:
        raise GrpcError(Code.ILLEGAL_INVISIBLE_TIME, f"the invisibleTime is illegal. "
                        f"invisibleTime: {invisible}, maxInvisibleTime: {MAX_INVISIBLE_MS}")
    async with svc.renewals.settling(headers.current().client_id, group, request.message_id,
                                     request.receipt_handle) as handle_text:
        handle = ReceiptHandle.parse(handle_text).alive()
        changed = await change_invisible(svc, group, topic, handle, invisible)
    return spb.ChangeInvisibleDurationResponse(status=OK, receipt_handle=str(changed))


async def change_invisible(svc: MessagingService, group: str, topic: str, handle: ReceiptHandle,
                           invisible: int) -> ReceiptHandle:
    """CHANGE_MESSAGE_INVISIBLETIME of a live handle; the handle that now acks the message
    (also what the renewal of auto-renewed messages extends them with)."""
    cmd = RemotingCommand.request(RequestCode.CHANGE_MESSAGE_INVISIBLETIME,
                                  handle.fields(group, topic) | {"invisibleTime": invisible})
    resp = await _call(svc.broker.popper.change_invisible_time, cmd)
    old = handle.info
    info = ExtraInfo(old.queue_offset, resp.int_field("popTime"), resp.int_field("invisibleTime"),
                     resp.int_field("reviveQid"), old.retry, old.broker_name, old.queue_id,
                     old.queue_offset)
    return ReceiptHandle(info, handle.commit_log_offset)


# -- ForwardMessageToDeadLetterQueue ---------------------------------------------------------

async def _dead_letter(svc: MessagingService, group: str, topic: str, handle: ReceiptHandle,
                       message_id: str) -> None:
    """CONSUMER_SEND_MSG_BACK with delay level -1 (straight to %DLQ%<group>), then the ack of
    the popped message, in Java's order: a failure in between leaves a copy in the DLQ and
    the message in flight, never neither."""
    if handle.commit_log_offset < 0:
        raise GrpcError(Code.INVALID_RECEIPT_HANDLE,
                        "receipt handle has no commit log offset")
    send_back = svc.broker.dispatcher.handlers[RequestCode.CONSUMER_SEND_MSG_BACK]
    cmd = RemotingCommand.request(RequestCode.CONSUMER_SEND_MSG_BACK, {
        "group": group, "offset": handle.commit_log_offset, "delayLevel": -1,
        "originMsgId": message_id, "originTopic": topic})
    # send_back reads no connection: the gRPC client has none to give
    await _call(lambda c: send_back(c, None), cmd)  # type: ignore[arg-type, return-value]
    cmd = RemotingCommand.request(RequestCode.ACK_MESSAGE, handle.fields(group, topic))
    await _call(svc.broker.popper.ack, cmd)


async def forward_message_to_dead_letter_queue(
        svc: MessagingService, request: spb.ForwardMessageToDeadLetterQueueRequest,
        context: grpc.aio.ServicerContext) -> spb.ForwardMessageToDeadLetterQueueResponse:
    """What FIFO push consumers call once their local retries are spent (delivery_attempt
    and max_delivery_attempts are ignored, as Java ignores them). An expired handle is
    taken: the clients retry a refused forward every second, forever."""
    group = resources.group(request.group)
    topic = resources.topic(request.topic)
    async with svc.renewals.settling(headers.current().client_id, group, request.message_id,
                                     request.receipt_handle) as handle_text:
        await _dead_letter(svc, group, topic, ReceiptHandle.parse(handle_text),
                           request.message_id)
    return spb.ForwardMessageToDeadLetterQueueResponse(status=OK)
