"""Regenerate the committed gRPC stubs (rmqnode/grpc/v2/*_pb2*.py) from our own .proto files.

    python -m rmqnode.grpc.regen          # rewrites the stubs in the source tree

The stubs are committed so that the node needs only grpcio and protobuf at run time, never
grpcio-tools (a test extra, pinned: its version is written into the stubs, and the test that
regenerates them into a temporary directory must see the same bytes).

The .proto files live under rmqnode/grpc/proto/rmqnode/grpc/v2/ and are compiled with that
`proto` directory as the include root, so each generated module imports its sibling as
`rmqnode.grpc.v2.definition_pb2` and registers its file as `rmqnode/grpc/v2/*.proto`: a
name that cannot clash with the official client's `definition.proto`.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent / "proto"
PROTOS = ("rmqnode/grpc/v2/definition.proto", "rmqnode/grpc/v2/service.proto")
# The directory holding the `rmqnode` package: protoc writes rmqnode/grpc/v2/... below it.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("definition_pb2.py", "service_pb2.py", "service_pb2_grpc.py")


def regenerate(out_root: Path) -> list[Path]:
    """Compile PROTOS into `out_root`/rmqnode/grpc/v2/ and return the generated files.

    Raises RuntimeError with protoc's exit status when compilation fails."""
    from grpc_tools import protoc  # test extra only: imported when regenerating

    well_known = resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    out_root.mkdir(parents=True, exist_ok=True)
    status = protoc.main(["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}",
                          f"--python_out={out_root}", f"--grpc_python_out={out_root}",
                          *PROTOS])
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}")
    target = out_root / "rmqnode" / "grpc" / "v2"
    # protoc also writes an empty definition_pb2_grpc.py (no services there): not ours to keep.
    (target / "definition_pb2_grpc.py").unlink(missing_ok=True)
    return [target / name for name in GENERATED]


def main() -> None:
    for path in regenerate(SOURCE_ROOT):
        print(path.relative_to(SOURCE_ROOT))


if __name__ == "__main__":
    sys.exit(main())
