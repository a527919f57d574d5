"""The output folder of ``edgekit compress``: fresh, resumed, or cleaned — never refused for its own leftovers.

A compress writes ``.edgekit-compress.json`` into ``--out`` first: the command's fingerprint (its options
and the digests of the model, weights and data it read). Its intermediate files live in ``--out/.work``,
each finished stage marked there (:mod:`edgekit.rundir` markers, written last and atomically).

Run again with the same command:

- after a failure or ``kill -9`` (``.work`` still there): it resumes, skipping the finished stages;
- after it finished: it starts clean (the old results are its own, replaced by this run's).

A folder holding anything else (another command's output, or files edgekit did not write) is refused:
edgekit never deletes what it did not make.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgekit import rundir
from edgekit.errors import ConfigError

MARKER = ".edgekit-compress.json"


@dataclass(frozen=True)
class Workspace:
    """Where a compress writes: ``out`` for results, ``work`` for intermediates; ``resumed`` says whether
    earlier stages of this same command were found and are reused."""

    out: Path
    work: Path
    resumed: bool

    def done(self, stage: str) -> dict | None:
        """What a finished stage recorded, or None."""
        return rundir.stage_summary(self.work, stage)

    def mark(self, stage: str, summary: dict) -> dict:
        rundir.mark_stage(self.work, stage, summary)
        return summary

    def finish(self) -> None:
        """Drop the intermediates and record that this command ran to its end."""
        shutil.rmtree(self.work, ignore_errors=True)
        marker = json.loads((self.out / MARKER).read_text())
        rundir.write_json(self.out / MARKER, {**marker, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def open_workspace(out: str | Path, fingerprint: dict) -> Workspace:
    """Prepare ``out`` for the command that ``fingerprint`` describes.

    Raises:
        ConfigError: ``out`` is a file, or holds files that are not this command's own.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: --out is a file; give a folder")
    work = out / ".work"
    marker = out / MARKER
    if out.is_dir() and any(out.iterdir()):
        if not marker.is_file():
            raise ConfigError(f"{out}: output folder exists and is not empty (and was not written by edgekit "
                              f"compress); choose a new --out")
        try:
            previous = json.loads(marker.read_text())
        except (OSError, ValueError):
            previous = {}
        if previous.get("fingerprint") != fingerprint:
            spec = previous.get("fingerprint", {}).get("options", {}).get("model", "another model")
            raise ConfigError(f"{out}: holds the output of another edgekit compress command ({spec}, other options "
                              f"or data); choose a new --out, or delete the folder to reuse it")
        if work.is_dir() and not previous.get("finished"):
            _drop_partials(out)
            return Workspace(out, work, resumed=True)
        for child in out.iterdir():  # this same command finished before: its results are replaced
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_json(marker, {"fingerprint": fingerprint, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "finished": None})
    work.mkdir(exist_ok=True)
    return Workspace(out, work, resumed=False)


def _drop_partials(work: Path) -> None:
    """Temporary files a killed write left behind (finished files are complete: they were moved into place)."""
    rundir.drop_partials(work)
    for stale in work.rglob(".scratch-*"):
        shutil.rmtree(stale, ignore_errors=True)


def digest(path: str | Path | None) -> str | None:
    """A cheap identity of an input: a file's sha256, or a folder's listing (names, sizes, times)."""
    if path is None:
        return None
    p = Path(str(path).split(":")[0]) if ":" in str(path) and not Path(str(path)).exists() else Path(str(path))
    if p.is_file():
        return rundir.sha256(p)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(p.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()
    return str(path)  # a registry name or dataset:NAME


def fingerprint(opts) -> dict:
    """What makes two commands the same one: their options and the content of what they read."""
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "out"}
    options["pixels"] = asdict(opts.pixels)
    model_file = opts.model.rpartition(":")[0] if ".py:" in opts.model else opts.model
    fingerprint = {"options": options, "model": digest(model_file), "weights": digest(opts.weights),
                   "calib": digest(opts.calib), "eval": digest(opts.eval)}
    return json.loads(json.dumps(fingerprint, default=str))  # as it reads back from the marker (tuples -> lists)
