"""Threads that send through a real client for a fixed time, and what they measured.

Imported by the load scripts that run under a peer client's own interpreter (cpp_load.py,
bench_grpc.py --load), so it uses the standard library only.
"""

import threading
import time
from typing import Callable


def drive(sender_for: Callable[[int], Callable[[], object]], threads: int,
          seconds: float) -> dict:
    """Call `sender_for(i)()` in a loop on each of `threads` threads for `seconds`; the
    figures the benchmarks print: messages, errors, seconds, msgsPerSec, p50Ms, p99Ms and the
    last error's first line (a failed send is counted, the run goes on)."""
    latencies = [[] for _ in range(threads)]
    errors = [0] * threads
    last_error = [""]
    deadline = time.monotonic() + seconds

    def run(index: int) -> None:
        send, mine = sender_for(index), latencies[index]
        while time.monotonic() < deadline:
            began = time.perf_counter()
            try:
                send()
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors[index] += 1
                last_error[0] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                continue
            mine.append(time.perf_counter() - began)

    began = time.monotonic()
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - began
    every = sorted(v for mine in latencies for v in mine)

    def pct(q: float) -> float:
        return round(every[min(len(every) - 1, int(q * len(every)))] * 1000, 3) if every else 0.0

    return {"messages": len(every), "errors": sum(errors), "seconds": round(elapsed, 3),
            "msgsPerSec": round(len(every) / elapsed, 1), "p50Ms": pct(0.5),
            "p99Ms": pct(0.99), "lastError": last_error[0]}
