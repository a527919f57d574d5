"""One Registry type for every extension point (models, data sets, exporters, runtimes, transports).

Entries are ``"module:attr"`` strings resolved on first use, so registering a torch model does not
import torch until someone asks for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from edgekit.errors import ConfigError, close_matches


class Registry:
    """A name → object table whose entries may be lazy ``"module:attr"`` references."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, target: str | Callable | None = None):
        """Register ``target`` under ``name``; without a target, return a decorator."""
        if target is None:
            def deco(obj):
                self._entries[name] = obj
                return obj

            return deco
        self._entries[name] = target
        return target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str, *, where: str = "") -> Any:
        """Resolve ``name``; unknown names raise ConfigError with the valid choices and a close match."""
        if name not in self._entries:
            at = f"{where}: " if where else ""
            raise ConfigError(
                f"{at}unknown {self.kind} '{name}'.{close_matches(name, self._entries)}"
                f" Choices: {', '.join(self.names())}"
            )
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry
