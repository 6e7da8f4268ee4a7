"""The real clients the interop tests use are installed and load."""

from __future__ import annotations

from peers import run_alions, run_cpp, run_cpp21, run_grpc5


def test_cpp_client_loads():
    run = run_cpp("from rocketmq.client import Producer, PushConsumer, PullConsumer\n"
                  "Producer('PG'); print('ok')\n", timeout=30)
    assert run.lines == ["ok"], run.explain()


def test_cpp21_client_loads_with_transactions():
    run = run_cpp21("from rocketmq.client import TransactionMQProducer, TransactionStatus\n"
                    "print('ok', TransactionStatus.COMMIT)\n", timeout=30)
    assert run.lines and run.lines[0].startswith("ok"), run.explain()


def test_alions_loads():
    run = run_alions("const { Producer, Consumer, Message } = require('ali-ons');\n"
                     "console.log(typeof Producer, typeof Consumer, typeof Message);\n", timeout=30)
    assert run.lines == ["function function function"], run.explain()


def test_grpc5_client_loads():
    run = run_grpc5("from rocketmq import Producer, SimpleConsumer\nprint('ok')\n", timeout=60)
    assert run.lines == ["ok"], run.explain()
