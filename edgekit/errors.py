"""The few error types edgekit raises; the CLI prints them as one line, without a traceback."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class EdgekitError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with: 2 for bad input, 1 for a failed check."""

    exit_code = 2


class ConfigError(EdgekitError):
    """A recipe, device profile or command-line value is wrong."""


class DataError(EdgekitError):
    """A data set, checkpoint or artifact cannot be read or does not fit."""


class MissingDependency(EdgekitError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class CheckFailed(EdgekitError):
    """A measured check (accuracy budget, parity) failed; the artifacts are kept for inspection."""

    exit_code = 1

    def __init__(self, message: str, *, run_dir=None):
        super().__init__(message)
        self.run_dir = run_dir


# onnxruntime's prefix before its actual message: "[ONNXRuntimeError] : 1 : FAIL : Load model from /long/path failed:"
_ORT_PREFIX = re.compile(r"\[ONNXRuntimeError\] : \d+ : \w+ : (?:Load model from .*? failed:)?\s*")


def first_line(exc: BaseException, limit: int = 600) -> str:
    """The first non-empty line of an exception's message (its type name when there is none), at most ``limit``
    characters, with onnxruntime's boilerplate prefix dropped so that its actual message survives.

    For one-line reasons in logs and reports; ``str(exc).splitlines()[0]`` fails on an empty message.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    line = _ORT_PREFIX.sub("", lines[0]) if lines else type(exc).__name__
    return line[:limit]


def describe(exc: BaseException) -> str:
    """``"TypeName: first line"`` (or just the type name when there is no message): a failure in one line."""
    line = first_line(exc)
    return type(exc).__name__ if line == type(exc).__name__ else f"{type(exc).__name__}: {line}"


def close_matches(word: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    found = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean '{found[0]}'?" if found else ""


def require(module: str, *, extra: str, why: str):
    """Import an optional module or raise MissingDependency naming the extra that installs it.

    Example:
        >>> torch = require("torch", extra="train", why="training")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{why} needs {module.split('.')[0]}: pip install \"edgekit[{extra}]\" ({exc})"
        ) from None
