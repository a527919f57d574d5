"""Device bundles: what one device needs to run a model, checksummed, and nothing else.

A bundle is a folder::

    manifest.json        schema, edgekit version, recipe name + digest, device, input spec, pre-processing,
                         labels, per artifact the expected numbers and the host outputs' key, per file
                         sha256 and size, and a digest of the manifest itself
    artifacts/*.onnx|*.tflite   only the artifacts the device runs (format, precision, runtime)
    golden.npz           held-out samples: raw pixels, model inputs, labels, PyTorch logits, and each
                         artifact's outputs on the host runtime, computed when the bundle was made
    signature.json       an Ed25519 signature of the manifest's digest (edgekit.signing)

:func:`load_bundle` verifies every checksum, then the signature against the trusted keys, before
anything else reads a byte of the bundle, so a tampered, truncated or missing file is refused with a
message naming it, and so is a bundle that someone changed and re-digested without the signing key.

Device side: numpy and a runtime (the host outputs need one), never torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from edgekit import __version__, rundir, signing
from edgekit.errors import ConfigError, DataError, close_matches

BUNDLE_SCHEMA = 1
KIND = "edgekit-bundle"
MANIFEST = "manifest.json"
GOLDEN = "golden.npz"
HOST_PREFIX = "host_"  # golden.npz key of an artifact's host outputs: host_<artifact name>


@dataclass(frozen=True)
class BundleArtifact:
    """One model file in a bundle.

    Attributes:
        name: e.g. "onnx_int8" (as in results.json).
        path: the file inside the bundle.
        format, precision: as exported.
        runtimes: the device profile's runtimes for it, preferred first.
        expected: the host's measured numbers from results.json (accuracy on the whole test split,
            top-1 agreement and max abs diff against PyTorch, latency per runtime and threads).
        host_runtime: the runtime that computed the golden outputs at bundle time.
        golden_key: the golden.npz key of those outputs.
    """

    name: str
    path: Path
    format: str
    precision: str
    runtimes: tuple[str, ...]
    expected: dict
    host_runtime: str
    golden_key: str


@dataclass(frozen=True)
class Bundle:
    """A verified bundle folder (only :func:`load_bundle` and :func:`bundle` make one)."""

    path: Path
    manifest: dict
    artifacts: tuple[BundleArtifact, ...]
    signature: dict | None = None  # signing.check's result: who signed it, or why it runs unsigned

    @property
    def device(self) -> str:
        return self.manifest["device"]["name"]

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def preprocess(self) -> dict:
        return dict(self.manifest["preprocess"])

    @property
    def input(self) -> dict:
        return dict(self.manifest["input"])

    def artifact(self, name: str) -> BundleArtifact:
        """The artifact called ``name``; ConfigError with the choices and a close match otherwise."""
        names = [a.name for a in self.artifacts]
        for a in self.artifacts:
            if a.name == name:
                return a
        raise ConfigError(f"{self.path}: no artifact '{name}' in this bundle.{close_matches(name, names)} "
                          f"Choices: {', '.join(names)}")

    def golden(self) -> dict[str, np.ndarray]:
        """The golden arrays: raw, x, y, reference (PyTorch logits) and host_<artifact> outputs."""
        with np.load(self.path / self.manifest["golden"]["file"]) as npz:
            return {k: npz[k] for k in npz.files}


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
    from edgekit.runtime import open_session, read_metadata, runtimes_for

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
    from edgekit.verify import parity

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


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without its own ``digest`` key."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_bundle(path: str | Path, *, policy: signing.Policy | None = None) -> Bundle:
    """Open a bundle folder after verifying every checksum and its signature.

    The manifest's own digest, then every file's size and sha256, then the signature of the digest
    against the trusted keys are checked before anything is returned; a missing, truncated, extended
    or modified file is refused, and so is an unsigned bundle or one signed by a key not trusted here
    (unless ``policy.allow_unsigned``).

    Args:
        path: the bundle folder (holding manifest.json).
        policy: which signatures to accept (default: a trusted key's only; see :class:`signing.Policy`).

    Returns:
        The Bundle.

    Raises:
        DataError: not a bundle, an unsupported schema, a file that fails its check (the message
            names every such file and what is wrong with it), or a signature that is missing or not
            trusted (naming the key id).

    Example:
        >>> b = load_bundle("bundles/rpi5")
        >>> b.artifact("tflite_int8").path
        PosixPath('bundles/rpi5/artifacts/model_int8.tflite')
    """
    root = Path(path)
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise DataError(f"{root}: not a bundle (no {MANIFEST}); make one with: edgekit bundle RUN --device NAME --out DIR")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{mpath}: refused: not valid JSON (corrupt or truncated: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise DataError(f"{mpath}: refused: not an edgekit bundle manifest")
    if manifest.get("schema") != BUNDLE_SCHEMA:
        raise DataError(f"{mpath}: bundle schema {manifest.get('schema')!r} is not supported "
                        f"(this edgekit {__version__} reads {BUNDLE_SCHEMA})")
    if manifest.get("digest") != manifest_digest(manifest):
        raise DataError(f"{mpath}: refused: the manifest was modified after bundling (its digest does not match)")
    try:
        arts = _check_files(root, mpath, manifest)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # digest right, structure wrong
        raise DataError(f"{mpath}: refused: malformed manifest ({type(exc).__name__}: {str(exc)[:120]})") from None
    return Bundle(root, manifest, arts, signing.check(root, manifest["digest"], policy))


def _check_files(root: Path, mpath: Path, manifest: dict) -> tuple[BundleArtifact, ...]:
    """Every file's size and sha256 against the manifest, then the artifacts it lists."""
    problems = []
    for rel, want in manifest["files"].items():
        file = _inside(root, rel)
        if file is None:
            problems.append(f"{rel}: path leaves the bundle folder")
            continue
        if not file.is_file():
            problems.append(f"{rel}: missing")
            continue
        size = file.stat().st_size
        if size != want["size_bytes"]:
            problems.append(f"{rel}: {size} bytes, the manifest says {want['size_bytes']} (truncated or extended)")
        elif rundir.sha256(file) != want["sha256"]:
            problems.append(f"{rel}: sha256 differs from the manifest (modified or corrupt)")
    if problems:
        raise DataError(f"{root}: bundle refused, {len(problems)} file(s) fail their checksum: " + "; ".join(problems))
    arts = tuple(
        BundleArtifact(name=a["name"], path=root / a["file"], format=a["format"], precision=a["precision"],
                       runtimes=tuple(a["runtimes"]), expected=a.get("expected", {}), host_runtime=a["host_runtime"],
                       golden_key=a["golden_key"])
        for a in manifest["artifacts"]
    )
    for a in arts:
        if a.path.relative_to(root).as_posix() not in manifest["files"]:
            raise DataError(f"{mpath}: refused: artifact {a.name} ({a.path.name}) has no checksum in the manifest")
    return arts


def _inside(root: Path, rel: str) -> Path | None:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        return None
    return root.joinpath(*p.parts)


def summary(b: Bundle) -> str:
    """A few lines describing a bundle, for the CLI."""
    size = sum(f["size_bytes"] for f in b.manifest["files"].values())
    lines = [f"bundle {b.path} for {b.device}: {len(b.artifacts)} artifact(s), {len(b.manifest['files'])} files, "
             f"{size / 1024:.1f} KB, recipe {b.manifest['recipe']['name']}@{b.manifest['recipe']['digest']}"]
    if b.signature and b.signature.get("status") == "verified":
        lines.append(f"  signed by key {b.signature['key_name']} ({b.signature['key_id']})")
    elif b.signature:
        lines.append(f"  {b.signature['status']}: {b.signature.get('reason')}")
    for a in b.artifacts:
        acc = a.expected.get("accuracy")
        lines.append(f"  {a.name:14} {a.path.name:22} runtimes {', '.join(a.runtimes):26} "
                     f"expected accuracy {acc:.4f}" if acc is not None else f"  {a.name}")
    for s in b.manifest.get("skipped", []):
        lines.append(f"  skipped {s['name']}: {s['reason']}")
    return "\n".join(lines)


__all__ = ["Bundle", "BundleArtifact", "bundle", "load_bundle", "manifest_digest", "summary"]
