"""brokerStatus's TPS lines and totals (StoreStats), sampled at exact times."""

from __future__ import annotations

import time

from rmqnode.storage.stats import StoreStats


def _run(stats: StoreStats, seconds: int, puts_per_s: int, start_ms: int = 1_000_000) -> None:
    for i in range(seconds + 1):
        stats.sample(start_ms + i * 1000)
        stats.put_times += puts_per_s
        stats.get_found += 2
        stats.get_miss += 1
        stats.get_transferred += 2 * puts_per_s


def test_a_figure_appears_once_its_window_is_sampled():
    stats = StoreStats()
    assert stats.runtime_info()["putTps"] == "  "  # nothing sampled yet: three empty figures
    _run(stats, 10, 5)
    info = stats.runtime_info()
    # Java's getPutTps(): the 10, 60 and 600 s figures joined by spaces, absent ones empty
    assert info["putTps"] == "5.0  "
    assert info["getFoundTps"] == "2.0  " and info["getMissTps"] == "1.0  "
    assert info["getTransferedTps"] == "10.0  "
    assert info["getTotalTps"] == "3.0 0.0 0.0"  # found + miss, an absent figure as 0


def test_the_60_second_figure_matches_a_java_broker_one_minute_up():
    """The shape a 4.9.8 broker printed a minute after start: 'putTps: 0.0 1.13... '."""
    stats = StoreStats()
    _run(stats, 60, 0)
    stats.put_times = 68
    stats.sample(1_000_000 + 61 * 1000)
    tps = stats.runtime_info()["putTps"].split(" ")
    assert tps[0] == "6.8" and tps[1] == "1.1333333333333333" and tps[2] == ""


def test_only_ten_minutes_of_samples_are_kept():
    stats = StoreStats()
    _run(stats, 700, 1)
    assert len(stats.samples) == 601
    assert stats.runtime_info()["putTps"] == "1.0 1.0 1.0"


def test_a_clock_set_back_leaves_the_figure_empty():
    stats = StoreStats()
    _run(stats, 10, 3)
    stats.sample(0)
    assert stats.runtime_info()["putTps"].split(" ")[0] == ""


def test_the_first_sample_of_a_local_day_takes_the_morning_totals():
    stats = StoreStats()
    midnight = time.mktime((2026, 11, 26, 0, 0, 0, 0, 0, -1))  # local time
    stats.stored(5, 500)
    stats.sample(int((midnight - 2) * 1000))
    stats.stored(1, 100)
    stats.sample(int((midnight - 1) * 1000))
    assert stats.mornings == ((0, 0), (0, 0))
    stats.read(True, 3)
    stats.read(False, 0)
    stats.sample(int(midnight * 1000))
    assert stats.mornings == ((6, 3), (0, 0))
    assert (stats.get_found, stats.get_miss) == (1, 1)
    stats.sample(int((midnight + 1) * 1000))
    assert stats.mornings == ((6, 3), (0, 0))


def test_totals_and_the_midnight_record():
    stats = StoreStats()
    info = stats.runtime_info()
    # Java divides by the count, so it reports 1 put when there was none
    assert (info["putMessageTimesTotal"], info["putMessageAverageSize"]) == ("1", "0.0")
    assert info["msgPutTotalTodayNow"] == "0"
    stats.put_times, stats.put_bytes, stats.get_transferred = 4, 1000, 7
    stats.new_day()
    stats.put_times, stats.get_transferred = 9, 10
    stats.new_day()
    stats.put_times = 12
    info = stats.runtime_info()
    assert info["putMessageTimesTotal"] == "12" and info["msgPutTotalTodayNow"] == "12"
    assert info["putMessageAverageSize"] == repr(1000 / 12)
    assert (info["msgPutTotalTodayMorning"], info["msgGetTotalTodayMorning"]) == ("9", "10")
    assert (info["msgPutTotalYesterdayMorning"], info["msgGetTotalYesterdayMorning"]) == \
        ("4", "7")
