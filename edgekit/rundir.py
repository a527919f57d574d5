"""Run folders, atomic writes and stage markers.

Every file edgekit writes goes through :func:`atomic_path`: it is written under a temporary name in
the same folder and moved into place with ``os.replace`` only when complete, so an interrupted run
never leaves a file that looks finished. A stage writes its marker last; a resumed run skips the
stages whose markers exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place, on error delete it.

    Example:
        >>> with atomic_path("model.onnx") as tmp:
        ...     onnx.save(model, tmp)
    """
    path = Path(path)
    if path.is_dir():
        from edgekit.errors import ConfigError

        raise ConfigError(f"{path}: is a folder; give a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
            _fsync(tmp)  # the bytes reach the disk before the name does: a power cut cannot leave an empty file
        os.replace(tmp, path)
        _fsync(path.parent)  # and the rename itself is on disk (a done-marker that vanished would rerun a stage)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk; a file system that refuses is left as it is."""
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def scratch(near: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``near`` for intermediate files; removed afterwards, whatever happens."""
    parent = Path(near).parent
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=parent) as d:
        yield Path(d)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resumable(path: str | os.PathLike) -> Path:
    """The run folder ``--resume`` names, checked before anything is written into it.

    A run folder holds the ``recipe.json`` its run wrote first (then ``.stages/``, ``checkpoints/``); an empty
    folder (a run killed before that) is taken too. Anything else, a file above all, is refused with one line instead of being written over.

    Raises:
        ConfigError: no such folder, a file, or a folder that is not a run's.
    """
    from edgekit.errors import ConfigError

    p = Path(path)
    hint = "--resume takes the run folder a run printed, e.g. runs/<recipe>/<YYYYmmdd-HHMMSS>"
    if not p.exists():
        raise ConfigError(f"{p}: no such run folder; {hint}")
    if not p.is_dir():
        raise ConfigError(f"{p}: a file, not a run folder; {hint}")
    if not any((p / name).exists() for name in ("recipe.json", ".stages", "checkpoints")) and any(p.iterdir()):
        raise ConfigError(f"{p}: not a run folder (no recipe.json, .stages/ or checkpoints/ in it); {hint}")
    return p


def drop_partials(folder: str | os.PathLike) -> int:
    """Remove what killed writes left in ``folder`` (``.NAME.*.partial`` files and folders); returns how many.

    Every finished file was renamed into place whole, so a ``.partial`` is never anything but a leftover; a
    resumed run (the only writer of its folder) sweeps them before it writes again.
    """
    import shutil

    stale = sorted(Path(folder).rglob(".*.partial"), key=lambda p: len(p.parts), reverse=True)
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return len(stale)


def new_run_dir(root: str | os.PathLike, recipe_name: str) -> Path:
    """Create ``root/<recipe>/<YYYYmmdd-HHMMSS>`` (with a suffix if that second is taken)."""
    base = Path(root) / recipe_name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(100):
        run = base / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            run.mkdir(parents=True, exist_ok=False)
            return run
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder under {base}")


def latest_run(root: str | os.PathLike, recipe_name: str) -> Path | None:
    """The newest finished run folder (one holding results.json) of a recipe under ``root``, or None."""
    runs = sorted((Path(root) / recipe_name).glob("*/results.json"))
    return runs[-1].parent if runs else None


def stage_done(run: Path, stage: str) -> bool:
    """Whether ``stage`` finished in ``run`` (its marker is written last, atomically)."""
    return stage_summary(run, stage) is not None


def stage_summary(run: Path, stage: str) -> dict | None:
    """What a finished stage measured (its marker's content), or None if it has not finished.

    A marker that does not parse (a disk that lost the last write before a power cut, on a file system that
    ignored fsync) means the stage did not finish: it is removed, and the stage runs again.
    """
    marker = Path(run) / ".stages" / f"{stage}.json"
    if not marker.is_file():
        return None
    try:
        value = json.loads(marker.read_text())
    except (OSError, ValueError):
        marker.unlink(missing_ok=True)
        return None
    return value if isinstance(value, dict) else None


def finished_stages(run: Path) -> list[str]:
    """Every stage that finished in ``run``, oldest first (by marker time, then name)."""
    markers = (run / ".stages").glob("*.json")
    return [m.stem for m in sorted(markers, key=lambda m: (m.stat().st_mtime_ns, m.name))]


def mark_stage(run: Path, stage: str, summary: dict) -> None:
    write_json(run / ".stages" / f"{stage}.json", summary)
