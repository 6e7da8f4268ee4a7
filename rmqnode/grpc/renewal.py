"""Auto-renewal of the messages push consumers receive (spec §4.6 "Auto-renew", §4.11).

A push consumer's receive carries `auto_renew` and no invisible time: its messages are popped
with the server default (60 s) and the server keeps them invisible while the client works on
them, however long its listener takes (FIFO push retries alone can exceed 60 s). As the Java
proxy's receipt handle manager, per client the latest handle of each such message is kept by
(group, message id); about 10 s before it would show again it is extended by
CHANGE_MESSAGE_INVISIBLETIME with 1, 3, 5, 10, 30, 60, 60 ... minutes as the renewals add up,
for at most 3 h in all, after which it is nacked with the group's retry delay.

A renewal gives the message a new handle, but the client keeps acking (or nacking, or
forwarding) with the one it received: `settling` maps that handle to the latest one, and the
message is no longer renewed once that call succeeded.

A client is gone when it has no Telemetry stream (the stream closed, the client terminated or
was expired): its messages are released at the next sweep with a 1 s invisible time, so the
rest of the group gets them at once rather than after the remaining invisible time. That is
also the Java proxy's rule for a receive by a client without a channel.

One task per node sweeps all clients every second; its work and memory are bounded by the
number of auto-renewed messages in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rmqnode import log
from rmqnode.grpc.consumer import ReceiptHandle, change_invisible
from rmqnode.grpc.status import GrpcError
from rmqnode.storage.dispatch import parse_delay_levels

if TYPE_CHECKING:
    from rmqnode.grpc.service import MessagingService

_log = log.get("rmqnode.grpc.renewal")

# The proxy's RenewStrategyPolicy: the n-th renewal's invisible time (the last one repeats).
RENEW_STEPS_MS = (60_000, 180_000, 300_000, 600_000, 1_800_000, 3_600_000)
RELEASE_INVISIBLE_MS = 1_000  # a gone client's messages show again after this
SWEEP_SECONDS = 1.0  # ours: the proxy sweeps every 5 s; a gone client's messages go sooner
FIRST_RETRY_LEVEL = 3  # a message's n-th retry waits delay level 3 + n, as a send-back does

Key = tuple[str, str]  # (group, message id) within one client


@dataclass(eq=False, slots=True)
class Renewed:
    """One auto-renewed message in flight at one client."""

    group: str
    topic: str
    message_id: str
    received: str  # the handle the client got, which it keeps using
    handle: ReceiptHandle  # the latest one
    reconsume_times: int
    since: int = field(default_factory=lambda: int(time.time() * 1000))
    renewals: int = 0
    # A renewal and the client's ack of the same message must not interleave: an ack of a
    # handle a renewal just replaced would leave the new checkpoint to redeliver it.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def visible_at(self) -> int:
        return self.handle.info.pop_time + self.handle.info.invisible_time


class Renewals:
    """The auto-renewed messages of one node's gRPC clients, per client id."""

    def __init__(self, svc: MessagingService) -> None:
        self.svc = svc
        self.clients: dict[str, dict[Key, Renewed]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop sweeping. Messages in flight stay so in the broker and come back after their
        invisible time, as they would after a crash."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- for the RPCs ----------------------------------------------------------------------

    def track(self, client_id: str, group: str, topic: str, message_id: str,
              handle: ReceiptHandle, reconsume_times: int) -> None:
        """Renew a message just received with `auto_renew` until the client settles it."""
        self.clients.setdefault(client_id, {})[group, message_id] = Renewed(
            group, topic, message_id, str(handle), handle, reconsume_times)

    def forget(self, client_id: str, group: str, message_ids: Iterable[str]) -> None:
        """Stop renewing these messages (their receive never reached the client)."""
        tracked = self.clients.get(client_id, {})
        for message_id in message_ids:
            tracked.pop((group, message_id), None)
        self._drop_if_empty(client_id)

    @asynccontextmanager
    async def settling(self, client_id: str, group: str, message_id: str,
                       handle: str) -> AsyncIterator[str]:
        """The handle an ack, nack or forward of `handle` must use: the latest renewal's when
        the client received it auto-renewed, else itself. When the body succeeds the message
        is no longer renewed; when it fails (a broker error the client retries) it still is."""
        entry = self.clients.get(client_id, {}).get((group, message_id))
        if entry is None or entry.received != handle:
            yield handle
            return
        async with entry.lock:
            yield str(entry.handle)
            self._remove(client_id, entry)

    # -- the sweep ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - the next sweep tries again
                _log.error("renewal.crashed", error=type(exc).__name__, message=str(exc))

    async def sweep(self) -> None:
        """Renew what is due, release what gone clients hold; all in parallel."""
        config = self.svc.broker.config
        due_at = int(time.time() * 1000) + config.grpcRenewAheadTimeMills
        work = []
        for client_id, tracked in list(self.clients.items()):
            client = self.svc.clients.get(client_id)
            gone = client is None or not client.has_stream
            work += [self._renew(client_id, entry, gone) for entry in list(tracked.values())
                     if gone or entry.visible_at <= due_at]
        await asyncio.gather(*work)

    async def _renew(self, client_id: str, entry: Renewed, gone: bool) -> None:
        """One renewal, or the last change of a message: released for a gone client, nacked
        once renewed for grpcRenewMaxTimeMills. A message that cannot be changed any more
        (its handle expired: it is on its way back) is forgotten."""
        async with entry.lock:
            if self.clients.get(client_id, {}).get((entry.group, entry.message_id)) is not entry:
                return  # settled meanwhile
            now = int(time.time() * 1000)
            final = gone or now - entry.since >= self.svc.broker.config.grpcRenewMaxTimeMills
            if gone:
                invisible = RELEASE_INVISIBLE_MS
            elif final:
                invisible = self._retry_delay(entry.reconsume_times)
            else:
                invisible = RENEW_STEPS_MS[min(entry.renewals, len(RENEW_STEPS_MS) - 1)]
            try:
                entry.handle = await change_invisible(self.svc, entry.group, entry.topic,
                                                      entry.handle.alive(), invisible)
            except GrpcError as exc:
                if entry.visible_at > now:
                    _log.warning("renewal.failed", client=client_id, group=entry.group,
                                 message_id=entry.message_id, error=str(exc))
                    return  # tried again at the next sweep
                final = True
            entry.renewals += 1
            if final:
                self._remove(client_id, entry)
            _log.debug("renewal.changed", client=client_id, group=entry.group,
                       message_id=entry.message_id, invisible=invisible, final=final)

    def _retry_delay(self, reconsume_times: int) -> int:
        levels = parse_delay_levels(self.svc.broker.config.messageDelayLevel)
        return levels[min(FIRST_RETRY_LEVEL + reconsume_times, len(levels)) - 1]

    def _remove(self, client_id: str, entry: Renewed) -> None:
        tracked = self.clients.get(client_id, {})
        if tracked.get((entry.group, entry.message_id)) is entry:
            del tracked[entry.group, entry.message_id]
        self._drop_if_empty(client_id)

    def _drop_if_empty(self, client_id: str) -> None:
        if not self.clients.get(client_id, True):
            del self.clients[client_id]
