"""Sync sends from the C++ RocketMQ client 1.x (PyPI rocketmq==0.4.4), THREADS threads sharing
one producer, as the issue's Java reference was measured. Run with the peer's interpreter:

    ~/.cache/rmqnode-peers/cpp/bin/python benchmarks/cpp_load.py NAMESRV TOPIC THREADS SECONDS SIZE

Prints one JSON object: messages, errors, seconds, msgsPerSec, p50Ms, p99Ms, lastError.
It runs under the client's Python, not the project's, so it imports nothing from the project.
"""

import json
import sys
import threading
import time

from rocketmq.client import Message, Producer


def main() -> None:
    namesrv, topic = sys.argv[1], sys.argv[2]
    threads, seconds, size = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    producer = Producer("BENCH_CPP_PRODUCER", timeout=5000)
    producer.set_namesrv_addr(namesrv)
    producer.start()
    warm = Message(topic)
    warm.set_body(b"w")
    producer.send_sync(warm)  # route and connection before the clock starts
    body = b"x" * size
    latencies = [[] for _ in range(threads)]
    errors = [0] * threads
    last_error = [""]
    deadline = time.monotonic() + seconds

    def sender(index: int) -> None:
        message = Message(topic)
        message.set_body(body)
        mine = latencies[index]
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                producer.send_sync(message)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                errors[index] += 1
                last_error[0] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                continue
            mine.append(time.perf_counter() - started)

    started = time.monotonic()
    workers = [threading.Thread(target=sender, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    everything = sorted(v for mine in latencies for v in mine)

    def pct(q: float) -> float:
        return round(everything[min(len(everything) - 1, int(q * len(everything)))] * 1000, 3) \
            if everything else 0.0

    print(json.dumps({"messages": len(everything), "errors": sum(errors),
                      "seconds": round(elapsed, 3),
                      "msgsPerSec": round(len(everything) / elapsed, 1),
                      "p50Ms": pct(0.5), "p99Ms": pct(0.99), "lastError": last_error[0]}),
          flush=True)
    # After the figures: the client sometimes aborts in its own shutdown
    # (boost::thread_interrupted), which must not cost the run its result.
    producer.shutdown()


if __name__ == "__main__":
    main()
