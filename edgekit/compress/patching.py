"""Replacing library attributes for the length of a block, restored however the block ends.

edgekit mends torch-pruning 1.6 in place (:mod:`edgekit.compress.prune`, :mod:`edgekit.compress.prune_grouped`):
its methods and module functions are swapped for wrapped ones while a pruning run traces and prunes, and put
back afterwards, so nothing outside the run (another library, a second model in the same process) sees them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock


@contextlib.contextmanager
def patched(*replacements: tuple[object, str, object]) -> Iterator[None]:
    """Inside: ``setattr(owner, name, value)`` for each ``(owner, name, value)``; on leaving, even by an exception,
    every attribute is what it was before (nested uses restore in turn)."""
    with contextlib.ExitStack() as stack:
        for owner, name, value in replacements:
            stack.enter_context(mock.patch.object(owner, name, value))
        yield
