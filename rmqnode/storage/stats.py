"""The store's call counters and their one-second samples, as Java's StoreStatsService keeps
them: what brokerStatus (GET_BROKER_RUNTIME_INFO) shows as putTps, getFoundTps, getMissTps,
getTotalTps and getTransferedTps, each over the last 10, 60 and 600 seconds, and the totals
BrokerStats takes at each midnight (msgPutTotalTodayMorning and the like).

No IO and no clock of its own: the store counts, and samples once a second with the time it
passes in, so the arithmetic is testable to the millisecond.
"""

from __future__ import annotations

import time
from collections import deque

SAMPLE_EVERY = 1.0  # seconds (FREQUENCY_OF_SAMPLING)
WINDOWS = (10, 60, 600)  # seconds behind each figure of a *Tps line
_PUT, _FOUND, _MISS, _TRANSFERRED = 1, 2, 3, 4  # columns of a sample, after its time


class StoreStats:
    __slots__ = ("put_times", "put_bytes", "put_failed", "get_found", "get_miss",
                 "get_transferred", "samples", "mornings", "_day")

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

    def stored(self, messages: int, size: int) -> None:
        self.put_times += messages
        self.put_bytes += size

    def read(self, found: bool, messages: int) -> None:
        """A read of a queue; `messages` is how many it returned."""
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
        }
