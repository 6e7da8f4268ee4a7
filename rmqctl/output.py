"""Rendering results for people (tables) and for programs (json, ndjson, csv, raw).

Rows are dicts keyed by RocketMQ's field names, so `--output json` is stable for scripts and
the table is only a view of the same data: only tables show epoch milliseconds as local
times and colour their headers and status columns; every other format prints the values as
they are (numbers as JSON numbers), with no escape codes.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TextIO

import click
from tabulate import tabulate

FORMATS = ("table", "json", "ndjson", "csv", "raw")
COLORS = ("auto", "always", "never")

_BOLD, _GREEN, _YELLOW, _RED, _RESET = "\x1b[1m", "\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[0m"
# Columns whose values say how something went: coloured by what they say.
_STATUS_COLUMNS = {"status", "success", "problem", "clamped", "consumedByGroup", "state"}
_GOOD = {"SEND_OK", "OK", "TRUE", "YES", "CONSUMED"}
_BAD_WORDS = ("FAIL", "ERROR", "FALSE", "BAD", "CORRUPT", "MISSING")
# Epoch milliseconds from 1973 to 5138: smaller values in a *Time column are durations.
_EPOCH_MS = range(10 ** 11, 10 ** 14)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return value


def local_time(ms: int) -> str:
    """Epoch milliseconds as local ISO 8601 with the zone's offset."""
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="milliseconds")


def color_wanted(out: TextIO) -> bool:
    """--color: always, never, or (auto) when `out` is a terminal and NO_COLOR is unset."""
    click_ctx = click.get_current_context(silent=True)
    setting = getattr(click_ctx.find_root().obj, "color", "auto") if click_ctx else "auto"
    if setting != "auto":
        return setting == "always"
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def _is_time(column: str, value: Any) -> bool:
    if not (column.endswith(("Timestamp", "Time")) or column in ("timestamp", "time")):
        return False
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and value in _EPOCH_MS


def _cell(column: str, value: Any) -> str:
    """A table cell: epoch ms in a time column as local time, nested values as JSON."""
    if value is None:
        return ""
    if _is_time(column, value):
        try:
            return local_time(int(value))
        except (OverflowError, OSError, ValueError):
            return str(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(_jsonable(value), ensure_ascii=False)
    return str(_jsonable(value))


def _paint(column: str, text: str) -> str:
    """A status cell in green (it went well), red (it failed) or yellow (anything else);
    the padding of a streamed table's cell stays outside the colour."""
    value = text.rstrip()
    if column not in _STATUS_COLUMNS or not value or value == "-":
        return text
    upper = value.upper()
    if upper in _GOOD:
        colour = _GREEN
    elif column == "problem" or any(word in upper for word in _BAD_WORDS):
        colour = _RED
    else:
        colour = _YELLOW
    return f"{colour}{value}{_RESET}{text[len(value):]}"


def _csv_cell(value: Any) -> Any:
    """JSON's spelling for what CSV has no type for: true/false, nested values as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple, set)):
        return json.dumps(_jsonable(value), ensure_ascii=False, separators=(",", ":"))
    return _jsonable(value)


def _csv_writer(out: TextIO):
    """RFC 4180 quoting; rows end with LF, as other tools in a pipe expect."""
    return csv.writer(out, lineterminator="\n")


def _line(row: dict[str, Any], fmt: str, columns: list[str] | None) -> str:
    """One row as one line: ndjson, or `raw`'s first column."""
    if fmt == "ndjson":
        return json.dumps(_jsonable(row), ensure_ascii=False, separators=(",", ":")) + "\n"
    return f"{row.get((columns or list(row))[0], '')}\n"


def _all_columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def emit_rows(rows: Iterable[dict[str, Any]], fmt: str, columns: list[str] | None = None,
              out: TextIO | None = None) -> None:
    """Print rows. `raw` prints the first column's values, one per line (for pipes); `csv` a
    header row, then the rows (every field, nested ones as JSON, when no columns are given)."""
    out = out or sys.stdout
    rows = list(rows)
    if fmt == "json":
        json.dump(_jsonable(rows), out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif fmt in ("ndjson", "raw"):
        out.writelines(_line(row, fmt, columns) for row in rows)
    elif fmt == "csv":
        cols = columns or _all_columns(rows)
        if cols:
            writer = _csv_writer(out)
            writer.writerow(cols)
            writer.writerows([_csv_cell(row.get(c)) for c in cols] for row in rows)
    else:
        cols = columns or (list(rows[0]) if rows else [])
        if rows:
            color = color_wanted(out)
            cells = [[_cell(c, row.get(c)) for c in cols] for row in rows]
            if color:
                cells = [[_paint(c, v) for c, v in zip(cols, line)] for line in cells]
            headers = [f"{_BOLD}{c}{_RESET}" for c in cols] if color else cols
            out.write(tabulate(cells, headers=headers, tablefmt="simple",
                               disable_numparse=True) + "\n")


def emit_object(obj: dict[str, Any], fmt: str, out: TextIO | None = None) -> None:
    """One record: json/ndjson as one object; csv as a header and one row; table/raw as
    key/value lines."""
    out = out or sys.stdout
    if fmt in ("json", "ndjson"):
        indent = 2 if fmt == "json" else None
        sep = None if fmt == "json" else (",", ":")
        out.write(json.dumps(_jsonable(obj), ensure_ascii=False, indent=indent, separators=sep))
        out.write("\n")
    elif fmt == "csv":
        emit_rows([obj], "csv", out=out)
    elif fmt == "raw":
        out.writelines(f"{k}={_cell('', v)}\n" for k, v in obj.items())
    else:
        color = color_wanted(out)
        pairs = [(f"{_BOLD}{k}{_RESET}" if color else k,
                  _paint(k, _cell(k, v)) if color else _cell(k, v)) for k, v in obj.items()]
        out.write(tabulate(pairs, tablefmt="plain", disable_numparse=True) + "\n")


class RowStream:
    """Rows printed as they come, each flushed: ndjson and raw a line each, csv a header
    then a line each, a table in the column widths of its first row (tabulate needs every
    row); json, one document, collects them and prints the array at close."""

    def __init__(self, fmt: str, columns: list[str], out: TextIO | None = None) -> None:
        self.fmt = fmt
        self.columns = columns
        self.out = out or sys.stdout
        self.widths: list[int] = []
        self.held: list[dict[str, Any]] = []
        self.started = False
        self.color = fmt == "table" and color_wanted(self.out)

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "json":
            self.held.append(row)
            return
        if self.fmt in ("ndjson", "raw"):
            self.out.write(_line(row, self.fmt, self.columns))
        elif self.fmt == "csv":
            writer = _csv_writer(self.out)
            if not self.started:
                writer.writerow(self.columns)
            writer.writerow([_csv_cell(row.get(c)) for c in self.columns])
        else:
            cells = [_cell(c, row.get(c)) for c in self.columns]
            if not self.started:
                self.widths = [max(len(c), len(v)) for c, v in zip(self.columns, cells)]
                header = self._table_line(self.columns)
                self.out.write((f"{_BOLD}{header}{_RESET}" if self.color else header) + "\n")
                self.out.write(self._table_line(["-" * w for w in self.widths]) + "\n")
            self.out.write(self._table_line(cells, self.color) + "\n")
        self.started = True
        self.out.flush()

    def _table_line(self, cells: list[str], paint: bool = False) -> str:
        line = [c.ljust(w) for c, w in zip(cells, self.widths)]
        if paint:
            line = [_paint(col, text) for col, text in zip(self.columns, line)]
        return "  ".join(line).rstrip()

    def close(self) -> None:
        if self.fmt == "json":
            emit_rows(self.held, "json", out=self.out)
