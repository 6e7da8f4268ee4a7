"""Sync sends from the C++ RocketMQ client 1.x (PyPI rocketmq==0.4.4), THREADS threads sharing
one producer, as the issue's Java reference was measured. Run with the peer's interpreter:

    ~/.cache/rmqnode-peers/cpp/bin/python benchmarks/cpp_load.py NAMESRV TOPIC THREADS SECONDS SIZE \
        [ACCESS_KEY SECRET_KEY]

With an access key and secret key, every request is signed (plain ACL, set_session_credentials).

Prints one JSON object: messages, errors, seconds, msgsPerSec, p50Ms, p99Ms, lastError.
It runs under the client's Python, not the project's, so it imports nothing from the project
(client_load.py beside it is standard library only).
"""

import json
import sys

from client_load import drive  # beside this script
from rocketmq.client import Message, Producer, SendStatus


def main() -> None:
    namesrv, topic = sys.argv[1], sys.argv[2]
    threads, seconds, size = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    producer = Producer("BENCH_CPP_PRODUCER", timeout=5000)
    producer.set_namesrv_addr(namesrv)
    if len(sys.argv) > 7:
        producer.set_session_credentials(sys.argv[6], sys.argv[7], "ALIYUN")
    producer.start()
    warm = Message(topic)
    warm.set_body(b"w")
    producer.send_sync(warm)  # route and connection before the clock starts
    body = b"x" * size

    def sender_for(_index: int):
        message = Message(topic)  # each thread sends its own Message object
        message.set_body(body)

        def send() -> None:
            # An answer other than SEND_OK (a SYNC_MASTER's FLUSH_SLAVE_TIMEOUT, ...) is an
            # error here, not a message sent.
            status = producer.send_sync(message).status
            if status != SendStatus.OK:
                raise RuntimeError(f"send status {SendStatus(status).name}")
        return send

    print(json.dumps(drive(sender_for, threads, seconds)), flush=True)
    # After the figures: the client sometimes aborts in its own shutdown
    # (boost::thread_interrupted), which must not cost the run its result.
    producer.shutdown()


if __name__ == "__main__":
    main()
