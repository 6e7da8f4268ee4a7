"""The real clients the interop tests drive are installed, at their pinned versions, and work."""

from __future__ import annotations

import socket
import time

from peers import PEERS_DIR, run_alions, run_cpp, run_cpp21, run_grpc5


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cpp_client_loads():
    run = run_cpp("import importlib.metadata as m\n"
                  "from rocketmq.client import Producer, PushConsumer, PullConsumer, Message\n"
                  "Producer('PG'); Message('T')\n"
                  "print('ok', m.version('rocketmq'))\n", timeout=30)
    assert run.lines == ["ok 0.4.4"], run.explain()


def test_cpp21_client_loads_its_2_1_library_with_transactions():
    run = run_cpp21("import importlib.metadata as m\n"
                    "from rocketmq.client import TransactionMQProducer, TransactionStatus\n"
                    "TransactionMQProducer('PG_TX', lambda msg: TransactionStatus.COMMIT)\n"
                    "[lib] = {l.split()[-1] for l in open('/proc/self/maps') if 'librocketmq' in l}\n"
                    "print('ok', m.version('rocketmq-client-python'), lib)\n", timeout=30)
    assert run.returncode == 0, run.explain()
    [line] = run.lines
    assert line.startswith("ok 2.0.0 "), run.explain()
    assert line.split()[2].startswith(str(PEERS_DIR / "cvs")), run.explain()


def test_alions_loads():
    run = run_alions("const { Producer, Consumer, Message } = require('ali-ons');\n"
                     "console.log(typeof Producer, typeof Consumer, typeof Message,\n"
                     "            require('ali-ons/package.json').version);\n", timeout=30)
    assert run.lines == ["function function function 3.12.0"], run.explain()


def test_grpc5_client_loads():
    run = run_grpc5("import importlib.metadata as m\n"
                    "from rocketmq import Producer, SimpleConsumer, PushConsumer\n"
                    "from rocketmq.grpc_protocol import service_pb2_grpc\n"
                    "print('ok', m.version('rocketmq-python-client'))\n", timeout=60)
    assert run.lines == ["ok 5.1.2"], run.explain()


SEND_WITH_NO_NAMESRV = """
import sys, time
from rocketmq.client import Producer, Message
p = Producer('PG_NOROUTE', timeout=3000)
p.set_namesrv_addr(sys.argv[1])
p.start()
m = Message('NoRouteTopic'); m.set_body(b'hi')
t = time.monotonic()
try:
    print('SENT', p.send_sync(m).status)
except Exception as e:
    print('ERR', type(e).__name__, str(e).splitlines()[0][:200])
print('SECONDS', round(time.monotonic() - t, 3))
p.shutdown()
"""


def test_cpp_client_without_a_name_server_fails_fast_with_no_route():
    started = time.monotonic()
    run = run_cpp(SEND_WITH_NO_NAMESRV, timeout=20, args=[f"127.0.0.1:{_closed_port()}"])
    assert run.returncode == 0, run.explain()
    assert time.monotonic() - started < 10, run.explain()
    [err] = [line for line in run.lines if line.startswith("ERR")]
    assert "No route info of this topic: NoRouteTopic" in err, run.explain()
    [seconds] = [float(line.split()[1]) for line in run.lines if line.startswith("SECONDS")]
    assert seconds < 3, run.explain()
    # Its log went under the HOME we gave it.
    assert any("rocketmq-cpp" in str(p) for p in run.log_files()), run.explain()
