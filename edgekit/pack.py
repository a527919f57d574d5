"""Packing a run for one device: the artifacts the device runs, golden pairs, checksums and a signature.

The host side of bundles: it reads a finished run folder and a device profile (edgekit.devices), computes
each artifact's host outputs on the golden inputs, writes the folder atomically (built in a temporary
folder beside it, then swapped into place) and signs it. Opening and checking a bundle is the device
side's job (edgekit.device.bundle), which never needs this module.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from edgekit import __version__, rundir
from edgekit.device import signing
from edgekit.device.bundle import (
    BUNDLE_SCHEMA,
    GOLDEN,
    HOST_PREFIX,
    KIND,
    MANIFEST,
    Bundle,
    load_bundle,
    manifest_digest,
)
from edgekit.errors import ConfigError, DataError, close_matches


def bundle(run_dir: str | Path, device, out: str | Path, *, artifacts: list[str] | None = None,
           include_failed: bool = False, key: str | Path | None = None, signed: bool = True) -> Bundle:
    """Pack what ``device`` can run from a finished run folder into a checksummed bundle folder.

    Only the run's compressed artifacts go in (not the dense baseline), only those whose format and
    precision a runtime in the device profile runs, and only those that passed the accuracy budget.
    Each artifact's outputs on the golden inputs are computed now, on this host's runtime, so the
    device can compare its own outputs with them.

    Args:
        run_dir: a run folder holding results.json, golden.npz and artifacts/.
        device: a Device or a profile name (``rpi4``).
        out: the bundle folder to create. An existing bundle there is replaced; any other non-empty
            folder is refused. The bundle is built in a temporary folder beside it and renamed into
            place, so ``out`` is either the old bundle or the complete new one.
        artifacts: artifact names to restrict to (e.g. ``["tflite_int8"]``); None takes all the device runs.
        include_failed: also pack artifacts that missed the accuracy budget.
        key: the private key that signs it: a file or a key name in ``edgekit keys`` (default: this
            machine's default key, made on first use).
        signed: False makes an unsigned bundle (devices refuse it unless told ``--allow-unsigned``).

    Returns:
        The verified Bundle.

    Raises:
        DataError: the run folder is incomplete, or an artifact changed since the run measured it.
        ConfigError: the device runs none of the artifacts, an unknown artifact name, or ``out`` is
            something else than a bundle.
        MissingDependency: no runtime is installed here for an artifact's format.

    Example:
        >>> b = bundle("runs/fashion_mnist_resnet8/20261125-153000", "rpi5", "bundles/rpi5")
        >>> [a.name for a in b.artifacts]
        ['onnx_fp32', 'onnx_int8', 'tflite_fp32', 'tflite_fp16', 'tflite_int8']
    """
    from edgekit import devices
    from edgekit.device.runtime import open_session, read_metadata, runtimes_for

    run_dir, out = Path(run_dir), Path(out)
    dev = devices.load(device) if isinstance(device, str) else device
    res = _results(run_dir)
    entries = [e for e in res["artifacts"] if e.get("role", "compressed") == "compressed"]
    if artifacts:
        known = [e["name"] for e in entries]
        for name in artifacts:
            if name not in known:
                raise ConfigError(f"{run_dir}: no artifact '{name}' in this run.{close_matches(name, known)} "
                                  f"Choices: {', '.join(known)}")
        entries = [e for e in entries if e["name"] in artifacts]
    chosen, skipped = [], []
    for e in entries:
        rts = dev.runtimes_for(e["format"], e["precision"])
        if not rts:
            skipped.append({"name": e["name"], "reason": f"{dev.name} runs no {e['format']} {e['precision']}"})
        elif not e.get("passed", True) and not include_failed:
            skipped.append({"name": e["name"], "reason": f"missed the accuracy budget: {e.get('verdict')}"})
        else:
            chosen.append((e, rts))
    if not chosen:
        why = "; ".join(f"{s['name']}: {s['reason']}" for s in skipped) or "the run has no artifacts"
        raise ConfigError(f"{dev.name} runs none of the artifacts of {run_dir} ({why})")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ConfigError(f"{out}: exists and is not a bundle; choose another --out")
    key_path = (signing.find_key(key) if key is not None else signing.default_key()) if signed else None
    if key_path is not None:
        signing.load_private(key_path)  # a wrong key file fails here, before any work

    golden_path = run_dir / GOLDEN
    if not golden_path.is_file():
        raise DataError(f"{golden_path}: missing (the run folder is incomplete: rerun with --resume)")
    with np.load(golden_path) as npz:
        missing = {"raw", "x", "y", "logits"} - set(npz.files)
        if missing:
            raise DataError(f"{golden_path}: arrays {sorted(missing)} missing")
        golden = {"raw": npz["raw"], "x": npz["x"].astype(np.float32), "y": npz["y"].astype(np.int64),
                  "reference": npz["logits"].astype(np.float32)}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        (tmp / "artifacts").mkdir()
        meta, items = None, []
        for e, rts in chosen:
            src = run_dir / "artifacts" / Path(e["path"]).name
            if not src.is_file():
                raise DataError(f"{src}: artifact listed in results.json is missing")
            if e.get("sha256") and rundir.sha256(src) != e["sha256"]:
                raise DataError(f"{src}: changed since the run measured it (sha256 differs from results.json)")
            m = read_metadata(src)
            key = {k: m.get(k) for k in ("task", "labels", "input", "preprocess")}
            if meta is None:
                meta = key
            elif key != meta:
                raise DataError(f"{src}: its labels, input or pre-processing differ from the other artifacts'")
            host = [r for r in runtimes_for(src) if r in rts] or runtimes_for(src)
            if not host:
                open_session(src)  # raises MissingDependency naming the extra
            with open_session(src, runtime=host[0], threads=1) as s:
                golden[HOST_PREFIX + e["name"]] = s.run(golden["x"])
            shutil.copy2(src, tmp / "artifacts" / src.name)
            items.append({
                "name": e["name"], "file": f"artifacts/{src.name}", "format": e["format"],
                "precision": e["precision"], "runtimes": rts, "host_runtime": host[0],
                "golden_key": HOST_PREFIX + e["name"],
                "expected": {k: e.get(k) for k in ("accuracy", "top1_agreement", "max_abs_diff", "latency")},
                "host_golden": _golden_numbers(golden[HOST_PREFIX + e["name"]], golden),
            })
        with open(tmp / GOLDEN, "wb") as f:
            np.savez(f, **golden)
        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            rel = path.relative_to(tmp).as_posix()
            files[rel] = {"sha256": rundir.sha256(path), "size_bytes": path.stat().st_size}
        manifest = {
            "schema": BUNDLE_SCHEMA, "kind": KIND, "edgekit_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "recipe": {"name": res.get("recipe"), "digest": res.get("recipe_digest"), "source": res.get("recipe_source")},
            "run": {"dir": str(run_dir.resolve()), "created": res.get("created"),
                    "host": (res.get("environment") or {}).get("machine")},
            "device": {"name": dev.name, "arch": dev.arch, "digest": dev.digest()},
            "task": meta["task"], "labels": meta["labels"], "input": meta["input"], "preprocess": meta["preprocess"],
            "artifacts": items,
            "golden": {"file": GOLDEN, "samples": int(len(golden["x"])), "raw": "raw", "inputs": "x", "labels": "y",
                       "reference": "reference"},
            "skipped": skipped,
            "files": files,
        }
        manifest["digest"] = manifest_digest(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if key_path is not None:
            signing.sign(tmp, manifest["digest"], key_path)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        _swap_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    # The maker checks the checksums; whether the signer is trusted is each device's decision.
    return load_bundle(out, policy=signing.Policy(allow_unsigned=True))


def _results(run_dir: Path) -> dict:
    path = run_dir / "results.json"
    if not path.is_file():
        raise DataError(f"{path}: no results.json (is {run_dir} a finished run folder?)")
    try:
        res = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(res, dict) or not isinstance(res.get("artifacts"), list):
        raise DataError(f"{path}: no 'artifacts' list")
    return res


def _golden_numbers(out: np.ndarray, golden: dict) -> dict:
    from edgekit.device.verify import parity

    p = parity(golden["reference"], out, golden["y"])
    return {"accuracy": p.accuracy, "top1_agreement_with_pytorch": p.top1_agreement, "max_abs_diff": p.max_abs_diff}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)  # a folder cannot replace a non-empty folder in one rename: two, then delete
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
