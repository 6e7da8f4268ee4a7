"""The wire captures in tests/fixtures/wire, loaded and paired request -> response."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from conftest import WIRE


@dataclass
class Frame:
    flow: str
    conn: int
    peer: str
    to_server: bool
    header: dict
    raw: bytes
    body_length: int

    @property
    def is_response(self) -> bool:
        return bool(self.header.get("flag", 0) & 1)


def flows() -> list[str]:
    return sorted(p.stem for p in Path(WIRE).glob("*.jsonl"))


def frames(flow: str) -> list[Frame]:
    out = []
    for line in (Path(WIRE) / f"{flow}.jsonl").read_text().splitlines():
        d = json.loads(line)
        out.append(Frame(flow, d["conn"], d["peer"], d["dir"] == "to_server", d["header"],
                         bytes.fromhex(d["frameHex"]), d["bodyLength"]))
    return out


def exchanges(flow: str, peer: str | None = None) -> list[tuple[Frame, Frame | None]]:
    """Requests sent to the server, in time order, each with the server's response (or None
    for oneway requests and requests never answered)."""
    fs = frames(flow)
    answers: dict[tuple[int, int], Frame] = {}
    for f in fs:
        if not f.to_server and f.is_response:
            answers.setdefault((f.conn, f.header["opaque"]), f)
    out = []
    for f in fs:
        if f.to_server and not f.is_response and (peer is None or f.peer == peer):
            out.append((f, answers.get((f.conn, f.header["opaque"]))))
    return out
