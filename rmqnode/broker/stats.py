"""Per-topic and per-group call statistics, as Java's BrokerStatsManager keeps them: what
VIEW_BROKER_STATS_DATA answers, and so what `mqadmin statsAll` prints as in/out TPS and
24-hour totals.

Each item counts a value (messages or bytes) and how many calls brought it. Every item is
sampled on three clocks (every 10 s, keeping 7 samples: the last minute; every 10 minutes,
keeping 7: the last hour; every hour, keeping 25: the last day), and a window's figures are
the difference between its oldest and newest sample. No IO and no clock of its own: the
broker counts, and ticks it with the time.
"""

from __future__ import annotations

from collections import deque

TOPIC_PUT_NUMS = "TOPIC_PUT_NUMS"  # key: topic
TOPIC_PUT_SIZE = "TOPIC_PUT_SIZE"
GROUP_GET_NUMS = "GROUP_GET_NUMS"  # key: topic@group
GROUP_GET_SIZE = "GROUP_GET_SIZE"
SNDBCK_PUT_NUMS = "SNDBCK_PUT_NUMS"  # key: topic@group, the topic the message was first sent to
BROKER_PUT_NUMS = "BROKER_PUT_NUMS"  # key: cluster name; counts messages, not calls
BROKER_GET_NUMS = "BROKER_GET_NUMS"
NAMES = (TOPIC_PUT_NUMS, TOPIC_PUT_SIZE, GROUP_GET_NUMS, GROUP_GET_SIZE, SNDBCK_PUT_NUMS,
         BROKER_PUT_NUMS, BROKER_GET_NUMS)

# (name in the answer, sampling step in ms, samples kept), in the order of `tick`'s window
WINDOWS = (("statsMinute", 10_000, 7), ("statsHour", 600_000, 7), ("statsDay", 3_600_000, 25))
MINUTE, HOUR, DAY = range(3)


class StatsItem:
    __slots__ = ("value", "times", "samples")

    def __init__(self) -> None:
        self.value = 0
        self.times = 0
        self.samples = tuple(deque(maxlen=kept) for _, _, kept in WINDOWS)

    def sample(self, window: int, now_ms: int) -> None:
        samples = self.samples[window]
        if not samples:  # Java starts each window from zero one step back
            samples.append((now_ms - WINDOWS[window][1], 0, 0))
        samples.append((now_ms, self.times, self.value))

    def figures(self, window: int) -> dict[str, float | int]:
        """StatsItem.computeStatsData: sum, per-second rate and value per call."""
        samples = self.samples[window]
        if not samples:
            return {"avgpt": 0.0, "sum": 0, "tps": 0.0}
        (t0, times0, value0), (t1, times1, value1) = samples[0], samples[-1]
        total = value1 - value0
        calls = times1 - times0
        return {"avgpt": total / calls if calls > 0 else 0.0, "sum": total,
                "tps": total * 1000.0 / (t1 - t0) if t1 > t0 else 0.0}


class BrokerStats:
    def __init__(self, cluster: str) -> None:
        self.cluster = cluster  # the BROKER_* items' key
        self.sets: dict[str, dict[str, StatsItem]] = {name: {} for name in NAMES}
        # A topic's TOPIC_PUT_NUMS and TOPIC_PUT_SIZE items and the cluster's BROKER_PUT_NUMS,
        # which every send counts in (items are never dropped, so they can be kept here)
        self._topic_put: dict[str, tuple[StatsItem, StatsItem, StatsItem]] = {}

    def put(self, topic: str, messages: int, size: int) -> None:
        """A send stored `messages` messages of `size` bytes in all."""
        items = self._topic_put.get(topic)
        if items is None:
            items = self._topic_put[topic] = (self.item(TOPIC_PUT_NUMS, topic),
                                              self.item(TOPIC_PUT_SIZE, topic),
                                              self.item(BROKER_PUT_NUMS, self.cluster))
        nums, sizes, total = items
        nums.value += messages
        nums.times += 1
        sizes.value += size
        sizes.times += 1
        total.value += messages

    def got(self, topic: str, group: str, messages: list) -> None:
        """A pull or pop returned these stored messages."""
        key = f"{topic}@{group}"
        self.add(GROUP_GET_NUMS, key, len(messages))
        self.add(GROUP_GET_SIZE, key, sum(map(len, messages)))
        self.add(BROKER_GET_NUMS, self.cluster, len(messages), 0)

    def sent_back(self, topic: str, group: str) -> None:
        self.add(SNDBCK_PUT_NUMS, f"{topic}@{group}", 1)

    def add(self, name: str, key: str, value: int, times: int = 1) -> None:
        item = self.item(name, key)
        item.value += value
        item.times += times

    def item(self, name: str, key: str) -> StatsItem:
        items = self.sets[name]
        item = items.get(key)
        if item is None:
            item = items[key] = StatsItem()
        return item

    def tick(self, window: int, now_ms: int) -> None:
        for items in self.sets.values():
            for item in items.values():
                item.sample(window, now_ms)

    def consume_tps(self, topic: str, group: str) -> float:
        """BrokerStatsManager.tpsGroupGetNums: messages a group got from a topic per second
        over the last minute, what consumerProgress prints as Consume TPS."""
        item = self.sets[GROUP_GET_NUMS].get(f"{topic}@{group}")
        return float(item.figures(MINUTE)["tps"]) if item is not None else 0.0

    def data(self, name: str, key: str) -> dict[str, dict[str, float | int]] | None:
        """VIEW_BROKER_STATS_DATA's answer; None where Java says the stats do not exist."""
        item = self.sets.get(name, {}).get(key)
        if item is None:
            return None
        return {label: item.figures(i) for i, (label, _, _) in enumerate(WINDOWS)}
