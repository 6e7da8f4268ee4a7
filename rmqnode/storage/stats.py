"""The store's call counters and their one-second samples, as Java's StoreStatsService keeps
them: what brokerStatus (GET_BROKER_RUNTIME_INFO) shows as putTps, getFoundTps, getMissTps,
getTotalTps and getTransferedTps, each over the last 10, 60 and 600 seconds, the totals
BrokerStats takes at each midnight (msgPutTotalTodayMorning and the like), and how long puts
took: the last whole minute's distribution (putMessageDistributeTime, putLatency99/999) and
the longest put and read since start.

No IO and no clock of its own: the store counts, and samples once a second with the time it
passes in, so the arithmetic is testable to the millisecond.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque

SAMPLE_EVERY = 1.0  # seconds (FREQUENCY_OF_SAMPLING)
WINDOWS = (10, 60, 600)  # seconds behind each figure of a *Tps line
_PUT, _FOUND, _MISS, _TRANSFERRED = 1, 2, 3, 4  # columns of a sample, after its time
LATENCY_PERIOD_MS = 60_000  # how often the put time distribution starts afresh (printTps)
# putMessageDistributeTime's buckets: (upper bound in ms, exclusive; label), as Java words them
_DISTRIBUTION = ((1, "[<=0ms]"), (10, "[0~10ms]"), (50, "[10~50ms]"), (100, "[50~100ms]"),
                 (200, "[100~200ms]"), (500, "[200~500ms]"), (1000, "[500ms~1s]"),
                 (2000, "[1~2s]"), (3000, "[2~3s]"), (4000, "[3~4s]"), (5000, "[4~5s]"),
                 (10000, "[5~10s]"), (None, "[10s~]"))
_JAVA_LONG_MAX = (1 << 63) - 1


def _percentile_bounds() -> list[int]:
    """PUT_MESSAGE_ENTIRE_TIME_BUCKETS: the upper bounds (ms, inclusive) of the finer buckets
    Java interpolates putLatency99/999 in: steps of 1 ms to 20, 2 to 50, 5 to 100, 10 to 200,
    50 to 500, 100 to 1 s, 1 s to 10 s, then one bucket for the rest."""
    bounds, at = [], 0
    for step, times in ((1, 20), (2, 15), (5, 10), (10, 10), (50, 6), (100, 5), (1000, 9)):
        for _ in range(times):
            at += step
            bounds.append(at)
    return bounds + [_JAVA_LONG_MAX]


_PERCENTILE_BOUNDS = _percentile_bounds()


class StoreStats:
    __slots__ = ("put_times", "put_bytes", "put_failed", "get_found", "get_miss",
                 "get_transferred", "samples", "mornings", "_day", "put_ms", "last_put_ms",
                 "put_max_ms", "get_max_ms", "_period_start")

    def __init__(self) -> None:
        self.put_times = 0  # messages stored (a batch counts each message)
        self.put_bytes = 0
        self.put_failed = 0  # puts refused
        self.get_found = 0  # reads that found messages
        self.get_miss = 0  # reads that found none
        self.get_transferred = 0  # messages those reads returned
        # (ms, put_times, get_found, get_miss, get_transferred): ten minutes and one more,
        # so that the 600 s figure has both ends (MAX_RECORDS_OF_SAMPLING + 1).
        self.samples: deque[tuple[int, int, int, int, int]] = deque(maxlen=WINDOWS[-1] + 1)
        # (put, transferred) totals at the last two midnights: today's, then yesterday's
        self.mornings = ((0, 0), (0, 0))
        self._day: int | None = None  # the local day of the last sample
        # How many puts took each whole number of ms: this period's, and the last whole
        # period's (what Java reports). A dict: one increment per put, whatever the time.
        self.put_ms: dict[int, int] = {}
        self.last_put_ms: dict[int, int] = {}
        self.put_max_ms = 0  # the longest put of the periods before this one
        self.get_max_ms = 0  # the longest read since start
        self._period_start: int | None = None

    def stored(self, messages: int, size: int) -> None:
        self.put_times += messages
        self.put_bytes += size

    def put(self, messages: int, size: int, elapsed_ns: int) -> None:
        """One put took this long and stored `messages` messages of `size` bytes, or none
        (0: refused): one division and one dict increment, the buckets made when someone
        asks. (The compiled send keeps the same counts itself: csrc/put.c's store_counts.)"""
        if messages:
            self.stored(messages, size)
        else:
            self.put_failed += 1
        ms = elapsed_ns // 1_000_000
        self.put_ms[ms] = self.put_ms.get(ms, 0) + 1

    def read(self, found: bool, messages: int, elapsed_ns: int = 0) -> None:
        """A read of a queue; `messages` is how many it returned, in `elapsed_ns`."""
        ms = elapsed_ns // 1_000_000
        if ms > self.get_max_ms:
            self.get_max_ms = ms
        if found:
            self.get_found += 1
            self.get_transferred += messages
        else:
            self.get_miss += 1

    def new_day(self) -> None:
        """BrokerStats.record(), run at each local midnight."""
        self.mornings = ((self.put_times, self.get_transferred), self.mornings[0])

    def sample(self, now_ms: int) -> None:
        """Once a second; the first sample of a new local day also takes its morning totals."""
        self.samples.append((now_ms, self.put_times, self.get_found, self.get_miss,
                             self.get_transferred))
        day = time.localtime(now_ms / 1000).tm_yday
        if self._day is not None and day != self._day:
            self.new_day()
        self._day = day
        if self._period_start is None:
            self._period_start = now_ms
        elif now_ms - self._period_start >= LATENCY_PERIOD_MS:
            self.new_latency_period(now_ms)

    def new_latency_period(self, now_ms: int) -> None:
        """Java's printTps each minute: the finished period becomes the one reported."""
        self.put_max_ms = max(self.put_max_ms, max(self.put_ms, default=0))
        self.last_put_ms, self.put_ms = self.put_ms, {}
        self._period_start = now_ms

    def distribution(self) -> str:
        """putMessageDistributeTime of the last whole period: `[label]:count ` per bucket.
        (Java prints `null` until its first minute is over; we print zeros.)"""
        counts = [0] * len(_DISTRIBUTION)
        for ms, n in self.last_put_ms.items():
            counts[next(i for i, (below, _) in enumerate(_DISTRIBUTION)
                        if below is None or ms < below)] += n
        return "".join(f"{label}:{n} " for (_, label), n in zip(_DISTRIBUTION, counts))

    def put_percentile(self, px: float) -> float:
        """findPutMessageEntireTimePX: the put time (ms) under which `px` of the last whole
        period's puts fell, interpolated within Java's finer bucket that holds it."""
        counts = [0] * len(_PERCENTILE_BOUNDS)
        for ms, n in self.last_put_ms.items():
            counts[bisect_left(_PERCENTILE_BOUNDS, ms)] += n
        index = int(sum(counts) * px)
        passed = 0
        for i, count in enumerate(counts):
            if index <= passed + count:
                low = _PERCENTILE_BOUNDS[i - 1] if i else 0
                width = _PERCENTILE_BOUNDS[i] - low
                return low + (width * (index - passed) / count if count else 0.0)
            passed += count
        return 0.0

    def _tps(self, column: int, seconds: int) -> float | None:
        """Calls per second between the newest sample and the one `seconds` samples before
        it; None until there are that many (Java then prints nothing for it)."""
        if len(self.samples) <= seconds:
            return None
        begin, end = self.samples[-(seconds + 1)], self.samples[-1]
        if end[0] <= begin[0]:  # the wall clock was set back
            return None
        return (end[column] - begin[column]) / (end[0] - begin[0]) * 1000

    def _line(self, column: int) -> str:
        # Java's getPutTps(): the three figures joined by spaces, an absent one left empty.
        return " ".join("" if (tps := self._tps(column, s)) is None else repr(tps)
                        for s in WINDOWS)

    def _total_line(self) -> str:
        # getGetTotalTps(): found + miss, an absent figure counted as 0.
        return " ".join(repr((self._tps(_FOUND, s) or 0.0) + (self._tps(_MISS, s) or 0.0))
                        for s in WINDOWS)

    def runtime_info(self) -> dict[str, str]:
        """The store's part of brokerStatus, worded as Java words it. Java reports 1 put when
        there was none (it divides the average size by the count); so do we."""
        times = self.put_times or 1
        (put_today, get_today), (put_yesterday, get_yesterday) = self.mornings
        return {
            "msgPutTotalTodayNow": str(self.put_times),
            "msgGetTotalTodayNow": str(self.get_transferred),
            "msgPutTotalTodayMorning": str(put_today),
            "msgGetTotalTodayMorning": str(get_today),
            "msgPutTotalYesterdayMorning": str(put_yesterday),
            "msgGetTotalYesterdayMorning": str(get_yesterday),
            "putMessageTimesTotal": str(times),
            "putMessageSizeTotal": str(self.put_bytes),
            "putMessageAverageSize": repr(self.put_bytes / times),
            "putMessageFailedTimes": str(self.put_failed),
            "putTps": self._line(_PUT),
            "getFoundTps": self._line(_FOUND),
            "getMissTps": self._line(_MISS),
            "getTotalTps": self._total_line(),
            "getTransferedTps": self._line(_TRANSFERRED),
            "putMessageEntireTimeMax": str(max(self.put_max_ms, max(self.put_ms, default=0))),
            "getMessageEntireTimeMax": str(self.get_max_ms),
            "putMessageDistributeTime": self.distribution(),
            "putLatency99": f"{self.put_percentile(0.99):.2f}",
            "putLatency999": f"{self.put_percentile(0.999):.2f}",
            # Java never sets StoreStatsService.dispatchMaxBuffer: it always reports 0.
            "dispatchMaxBuffer": "0",
        }
