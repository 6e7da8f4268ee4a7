"""Rendering results for people (tables) and for programs (json, ndjson, raw).

Rows are dicts keyed by RocketMQ's field names, so `--output json` is stable for scripts and
the table is only a view of the same data.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tabulate import tabulate

FORMATS = ("table", "json", "ndjson", "raw")


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return value


def _line(row: dict[str, Any], fmt: str, columns: list[str] | None) -> str:
    """One row as one line: ndjson, or `raw`'s first column."""
    if fmt == "ndjson":
        return json.dumps(_jsonable(row), ensure_ascii=False, separators=(",", ":")) + "\n"
    return f"{row.get((columns or list(row))[0], '')}\n"


def emit_rows(rows: Iterable[dict[str, Any]], fmt: str, columns: list[str] | None = None,
              out: TextIO | None = None) -> None:
    """Print rows. `raw` prints the first column's values, one per line (for pipes)."""
    out = out or sys.stdout
    rows = list(rows)
    if fmt == "json":
        json.dump(_jsonable(rows), out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif fmt in ("ndjson", "raw"):
        out.writelines(_line(row, fmt, columns) for row in rows)
    else:
        cols = columns or (list(rows[0]) if rows else [])
        if rows:
            out.write(tabulate([[row.get(c, "") for c in cols] for row in rows], headers=cols,
                               tablefmt="simple", disable_numparse=True) + "\n")


def emit_object(obj: dict[str, Any], fmt: str, out: TextIO | None = None) -> None:
    """One record: json/ndjson as one object; table/raw as key/value lines."""
    out = out or sys.stdout
    if fmt in ("json", "ndjson"):
        indent = 2 if fmt == "json" else None
        sep = None if fmt == "json" else (",", ":")
        out.write(json.dumps(_jsonable(obj), ensure_ascii=False, indent=indent, separators=sep))
        out.write("\n")
    else:
        pairs = [(k, json.dumps(_jsonable(v), ensure_ascii=False)
                  if isinstance(v, (dict, list)) else _jsonable(v)) for k, v in obj.items()]
        if fmt == "raw":
            out.writelines(f"{k}={v}\n" for k, v in pairs)
        else:
            out.write(tabulate(pairs, tablefmt="plain", disable_numparse=True) + "\n")


class RowStream:
    """Rows printed as they come, each flushed: ndjson and raw a line each, a table in the
    column widths of its first row (tabulate needs every row); json, one document, collects
    them and prints the array at close."""

    def __init__(self, fmt: str, columns: list[str], out: TextIO | None = None) -> None:
        self.fmt = fmt
        self.columns = columns
        self.out = out or sys.stdout
        self.widths: list[int] = []
        self.held: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "json":
            self.held.append(row)
            return
        if self.fmt in ("ndjson", "raw"):
            self.out.write(_line(row, self.fmt, self.columns))
        else:
            cells = [str(_jsonable(row.get(c, ""))) for c in self.columns]
            if not self.widths:
                self.widths = [max(len(c), len(v)) for c, v in zip(self.columns, cells)]
                self.out.write(self._table_line(self.columns) + "\n")
                self.out.write(self._table_line(["-" * w for w in self.widths]) + "\n")
            self.out.write(self._table_line(cells) + "\n")
        self.out.flush()

    def _table_line(self, cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, self.widths)).rstrip()

    def close(self) -> None:
        if self.fmt == "json":
            emit_rows(self.held, "json", out=self.out)
