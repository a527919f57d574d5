"""The device profiles and recipes that come with edgekit, found the same way in a checkout and in a wheel.

The top-level ``devices/`` and ``recipes/`` folders of the source tree are the source of truth. Building the
wheel or the sdist copies them into the package as ``edgekit/_shipped/{devices,recipes}/`` (``setup.py``), read
here through :mod:`importlib.resources`; in a checkout, where there is no such copy, they are read where they are.
So ``edgekit devices list`` and ``edgekit run kws_dscnn`` work from ``pip install edgekit`` with no source tree.

Device side: the standard library and pyyaml only (listing reads each recipe's ``description``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

KINDS = ("devices", "recipes")


def folder(kind: str) -> Path:
    """Where the shipped ``kind`` ("devices" or "recipes") are: the package's copy, else the checkout's folder."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    packaged = Path(str(files("edgekit"))) / "_shipped" / kind
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / kind


def names(kind: str = "recipes") -> list[str]:
    """The shipped files' names (their stems), sorted."""
    return sorted(p.stem for p in folder(kind).glob("*.yaml"))


def find_recipe(name: str) -> Path | None:
    """The shipped recipe called ``name`` (``kws_dscnn`` or ``kws_dscnn.yaml``; never a path), or None."""
    if "/" in name or "\\" in name:
        return None
    stem = name.removesuffix(".yaml").removesuffix(".yml")
    path = folder("recipes") / f"{stem}.yaml"
    return path if path.is_file() else None


def describe_recipe(name: str) -> str:
    """The recipe's ``description:`` line ("" when it has none or cannot be read)."""
    import yaml

    try:
        raw = yaml.safe_load((folder("recipes") / f"{name}.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return ""
    return str(raw.get("description", "")) if isinstance(raw, dict) else ""
