"""Load generation for `rmqctl bench` and benchmarks/run.py: what one worker process does.

A worker runs one async workload (produce or consume) on its own connections and counts what
it achieved in a `Meter`. Latencies go into a `Histogram` of log-spaced buckets rather than a
list, so that a worker can ship its figures to the parent several times a second in a few
hundred integers and the parent can merge any number of workers exactly (bench_pool.py does that).
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rmqnode.errors import ConnectionLost, RemotingError, RemotingTimeout
from rmqnode.net.client import RemotingClient, SessionCredentials
from rmqnode.net.connection import Connection
from rmqnode.net.codes import ResponseCode
from rmqctl.client.admin import Admin
from rmqctl.client.consumer import GroupConsumer
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import MessageQueue, Producer, TopicRoute, topic_route

PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999))
STAMP = struct.Struct(">Q")  # microseconds since the epoch, at the head of e2e bodies
ONEWAY_BUFFER = 1 << 20      # oneway senders wait while this much is unsent on a connection
SEND_ERRORS = (RemotingError, ConnectionLost, RemotingTimeout)
Stopping = Callable[[], bool]


class Histogram:
    """Latencies (seconds) in buckets 1 % wide on a log scale, from 1 us up.

    Percentiles come out within 1 % of the exact value whatever the sample count; the exact
    maximum is kept as well because the tail is what people look at."""

    SCALE = 100.0  # buckets per factor e: exp(1/100) - 1 ~ 1 %

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        micros = seconds * 1e6
        index = int(math.log(micros) * self.SCALE) if micros > 1.0 else 0
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Histogram) -> None:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float:
        """The latency (seconds) below which a fraction q of the samples fall; 0 if empty."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(math.exp((index + 0.5) / self.SCALE) / 1e6, self.max)
        return self.max

    def summary_ms(self) -> dict[str, float]:
        out = {name: round(self.percentile(q) * 1000, 3) for name, q in PERCENTILES}
        out["max"] = round(self.max * 1000, 3)
        return out


@dataclass
class Meter:
    """What a worker has done since it last reported (take() hands it over and starts anew)."""

    messages: int = 0
    bytes: int = 0
    errors: int = 0
    latency: Histogram = field(default_factory=Histogram)
    last_error: str = ""
    last_at: float = 0.0  # time.time() of the last success: when an open-ended consumer ended

    def done(self, messages: int, size: int, seconds: float | None) -> None:
        self.messages += messages
        self.bytes += size
        self.last_at = time.time()
        if seconds is not None:
            self.latency.record(seconds)

    def failed(self, messages: int, exc: BaseException) -> None:
        self.errors += messages
        self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def take(self) -> Meter:
        delta = Meter(self.messages, self.bytes, self.errors, self.latency, self.last_error,
                      self.last_at)
        self.messages = self.bytes = self.errors = 0
        self.latency = Histogram()
        return delta

    def merge(self, other: Meter) -> None:
        self.messages += other.messages
        self.bytes += other.bytes
        self.errors += other.errors
        self.latency.merge(other.latency)
        self.last_error = other.last_error or self.last_error
        self.last_at = max(self.last_at, other.last_at)


@dataclass
class ProduceSpec:
    """One worker's share of `bench produce`: its connections, and its share of -n."""

    namesrv: str
    topic: str
    size: int
    connections: int
    inflight: int
    batch: int
    mode: str                 # sync, async or oneway
    duration: float | None    # seconds, or None with count
    count: int | None         # messages for this worker, or None with duration
    timeout: float
    stamped: bool = False     # e2e: the send time goes in the first 8 body bytes
    signer: SessionCredentials | None = None  # the ACL account that signs every request


@dataclass
class ConsumeSpec:
    """One worker's share of `bench consume` / the consuming half of `bench e2e`."""

    namesrv: str
    topic: str
    group: str
    queues: list[list[tuple[MessageQueue, int]]]  # per connection: (queue, start offset)
    pull_batch: int
    follow: bool              # e2e: long-poll until told to stop; else stop when caught up
    duration: float | None
    timeout: float
    stamped: bool = False     # e2e: latency is now minus the stamp in the body
    signer: SessionCredentials | None = None


def stamped_body(filler: bytes) -> bytes:
    return STAMP.pack(time.time_ns() // 1000) + filler


def stamp_age(body: bytes) -> float:
    """Seconds since the body was stamped (clocks of processes on one machine agree)."""
    return time.time() - STAMP.unpack_from(body)[0] / 1e6


class _Quota:
    """Messages left to send (-n), shared by every sender of a worker."""

    def __init__(self, count: int | None) -> None:
        self.left = count

    def take(self, want: int) -> int:
        if self.left is None:
            return want
        got = min(want, self.left)
        self.left -= got
        return got


class ProduceLoad:
    """Send until the duration is over, the count is sent, or stopping() says so.

    Each connection has its own client and Producer. sync and async differ only in how many
    sends each connection keeps in flight (--inflight): with asyncio, K outstanding sends on a
    connection are K coroutines each awaiting its answer. oneway awaits nothing and only holds
    back while a connection has more than ONEWAY_BUFFER unsent."""

    def __init__(self, spec: ProduceSpec) -> None:
        self.spec = spec
        self.clients = [RemotingClient(hook=spec.signer) for _ in range(spec.connections)]
        self.producers = [Producer(c, NameServerClient(c, spec.namesrv, spec.timeout),
                                   group="BENCH_PRODUCER", timeout=spec.timeout, retries=0)
                          for c in self.clients]
        self.conns: dict[Producer, list[Connection]] = {}

    async def setup(self) -> None:
        """Routes and connections, before the clock starts."""
        for producer in self.producers:
            route = await producer.route(self.spec.topic)
            self.conns[producer] = [await producer.remoting.connection(addr)
                                    for addr in set(route.addrs.values())]

    async def run(self, meter: Meter, stopping: Stopping) -> None:
        spec = self.spec
        quota = _Quota(spec.count)
        filler = b"x" * (spec.size - STAMP.size if spec.stamped else spec.size)
        deadline = time.monotonic() + spec.duration if spec.duration else math.inf

        async def sender(producer: Producer) -> None:
            while time.monotonic() < deadline and not stopping():
                n = quota.take(spec.batch)
                if not n:
                    return
                bodies = [stamped_body(filler) if spec.stamped else filler for _ in range(n)]
                started = time.perf_counter()
                try:
                    if spec.batch > 1:
                        await producer.send_batch(spec.topic, bodies)
                    else:
                        await producer.send(spec.topic, bodies[0], oneway=spec.mode == "oneway")
                except SEND_ERRORS as exc:
                    meter.failed(n, exc)
                    await asyncio.sleep(0.01)  # a node that is down must not make us spin
                    continue
                if spec.mode == "oneway":
                    meter.done(n, n * spec.size, None)
                    await self._hold_back(producer)
                else:
                    meter.done(n, n * spec.size, time.perf_counter() - started)

        await asyncio.gather(*(sender(p) for p in self.producers for _ in range(spec.inflight)))

    async def _hold_back(self, producer: Producer) -> None:
        """Yield after every oneway send (nothing else would), and wait out a backlog."""
        await asyncio.sleep(0)
        for conn in self.conns[producer]:
            while conn.is_open and conn.transport.get_write_buffer_size() > ONEWAY_BUFFER:
                await asyncio.sleep(0.001)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


class ConsumeLoad:
    """Pull assigned queues from given offsets with the group consumer's PULL_MESSAGE.

    Drain (follow=False): each queue stops once a pull finds nothing past its max offset.
    Follow (e2e): long polls of 1 s until stopping(). Latency is each pull's round trip,
    or with stamped bodies the age of each message on receipt."""

    def __init__(self, spec: ConsumeSpec) -> None:
        self.spec = spec
        self.clients = [RemotingClient(hook=spec.signer) for _ in spec.queues]
        self.consumers = [GroupConsumer(c, NameServerClient(c, spec.namesrv, spec.timeout),
                                        spec.group, spec.topic, timeout=spec.timeout)
                          for c in self.clients]

    async def setup(self) -> None:
        for consumer, queues in zip(self.consumers, self.spec.queues):
            consumer.route = await topic_route(consumer.namesrv, self.spec.topic)
            for mq, _ in queues:
                await consumer.remoting.connection(consumer.addr(mq))

    async def run(self, meter: Meter, stopping: Stopping) -> None:
        spec = self.spec
        deadline = time.monotonic() + spec.duration if spec.duration else math.inf

        async def reader(consumer: GroupConsumer, mq: MessageQueue, offset: int) -> None:
            while time.monotonic() < deadline and not stopping():
                started = time.perf_counter()
                try:
                    result = await consumer.pull(mq, offset, spec.pull_batch,
                                                 1000 if spec.follow else 0,
                                                 commit_offset=offset)
                except SEND_ERRORS as exc:
                    meter.failed(0, exc)
                    await asyncio.sleep(0.01)
                    continue
                if result.messages:
                    size = sum(len(m.body) for m in result.messages)
                    if spec.stamped:
                        meter.done(len(result.messages), size, None)
                        for m in result.messages:
                            meter.latency.record(stamp_age(m.body))
                    else:
                        meter.done(len(result.messages), size, time.perf_counter() - started)
                elif not spec.follow and offset >= result.max_offset:
                    return
                offset = result.next_offset

        await asyncio.gather(*(reader(consumer, mq, offset)
                               for consumer, queues in zip(self.consumers, spec.queues)
                               for mq, offset in queues))

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


async def ensure_topic(namesrv: NameServerClient, topic: str, queues: int) -> TopicRoute:
    """The topic's route, creating it on every master first if nobody has (a route from
    auto-creation would only have TBW102's queues, and only after the first send)."""
    try:
        return await topic_route(namesrv, topic)
    except RemotingError as exc:
        if exc.code != ResponseCode.TOPIC_NOT_EXIST:
            raise
    admin = Admin(namesrv)
    masters = await admin.masters()
    if not masters:
        raise RemotingError(ResponseCode.TOPIC_NOT_EXIST, "no broker to create the topic on")
    for addr in masters.values():
        await admin.create_topic(addr, topic, queues)
    for _ in range(100):  # brokers register new topics with the name servers at once
        try:
            return await topic_route(namesrv, topic)
        except RemotingError as exc:
            if exc.code != ResponseCode.TOPIC_NOT_EXIST:
                raise
        await asyncio.sleep(0.05)
    raise RemotingError(ResponseCode.TOPIC_NOT_EXIST, f"{topic} was created but has no route")


async def queue_offsets(namesrv: NameServerClient, topic: str, where: str
                        ) -> list[tuple[MessageQueue, int]]:
    """Every readable queue of the topic with its first ('first') or next ('last') offset."""
    consumer = GroupConsumer(namesrv.remoting, namesrv, "BENCH_CONSUMER", topic)
    consumer.route = await topic_route(namesrv, topic)
    return [(mq, await consumer.start_offset(mq, where)) for mq in consumer.route.read_queues]
