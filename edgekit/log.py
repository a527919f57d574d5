"""edgekit's own log lines: stdlib ``logging`` to stderr, so results alone go to stdout.

Every module logs through ``logging.getLogger("edgekit.<part>")``; :func:`setup` (called by the CLI and by
child-process jobs) prints them as ``[edgekit <part>] message``. A library user who configures logging
themselves gets the records like any other library's.
"""

from __future__ import annotations

import logging
import sys


class _Tagged(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        part = record.name.split(".", 1)[1] if "." in record.name else ""
        return f"[edgekit{' ' + part if part else ''}] {record.getMessage()}"


def setup(level: int = logging.INFO) -> None:
    """Send edgekit's records to stderr, once (idempotent)."""
    root = logging.getLogger("edgekit")
    if any(getattr(h, "_edgekit", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Tagged())
    handler._edgekit = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def get(part: str = "") -> logging.Logger:
    """The logger of one part of edgekit ("compress" prints as ``[edgekit compress]``)."""
    return logging.getLogger(f"edgekit.{part}" if part else "edgekit")
