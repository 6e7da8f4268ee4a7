"""The committed gRPC stubs: what `python -m rmqnode.grpc.regen` makes of our .proto files, and
wire-identical to the official 5.x client's (its names, field numbers and types)."""

from __future__ import annotations

import base64

from google.protobuf import descriptor_pb2

from rmqnode.grpc import regen
from rmqnode.grpc.status import Code
from rmqnode.grpc.v2 import definition_pb2, service_pb2
from tests.peers import run_grpc5


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    fresh = regen.regenerate(tmp_path)
    for path in fresh:
        committed = regen.SOURCE_ROOT / "rmqnode" / "grpc" / "v2" / path.name
        assert committed.read_bytes() == path.read_bytes(), \
            f"{committed} is stale: run `python -m rmqnode.grpc.regen` and commit the result"


def test_code_enum_matches_the_proto():
    assert {c.name: int(c) for c in Code} == dict(definition_pb2.Code.items())


def _wire_facts(fd: descriptor_pb2.FileDescriptorProto) -> bytes:
    """A file's messages, enums and services without its name, imports and options: what
    decides how messages look on the wire and which RPC paths exist."""
    fd.ClearField("name")
    fd.ClearField("dependency")
    fd.ClearField("options")
    return fd.SerializeToString(deterministic=True)


OFFICIAL = """
import base64
from google.protobuf import descriptor_pb2
from rocketmq.grpc_protocol import definition_pb2, service_pb2
for module in (definition_pb2, service_pb2):
    fd = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(fd)
    for name in ("name", "dependency", "options"):
        fd.ClearField(name)
    print(base64.b64encode(fd.SerializeToString(deterministic=True)).decode())
"""


def test_protos_match_the_official_client():
    run = run_grpc5(OFFICIAL, timeout=60)
    assert run.ok, run.explain()
    official = [base64.b64decode(line) for line in run.lines]
    ours = []
    for module in (definition_pb2, service_pb2):
        fd = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(fd)
        ours.append(_wire_facts(fd))
    assert ours == official
