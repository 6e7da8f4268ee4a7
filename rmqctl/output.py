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


def emit_rows(rows: Iterable[dict[str, Any]], fmt: str, columns: list[str] | None = None,
              out: TextIO | None = None) -> None:
    """Print rows. `raw` prints the first column's values, one per line (for pipes)."""
    out = out or sys.stdout
    rows = list(rows)
    if fmt == "json":
        json.dump(_jsonable(rows), out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif fmt == "ndjson":
        for row in rows:
            out.write(json.dumps(_jsonable(row), ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
    elif fmt == "raw":
        cols = columns or (list(rows[0]) if rows else [])
        for row in rows:
            out.write(" ".join(str(row.get(c, "")) for c in cols[:1]) + "\n")
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
