"""Device bundles: what one device needs to run a model, checksummed, and nothing else.

A bundle is a folder::

    manifest.json        schema, edgekit version, recipe name + digest, device, input spec, pre-processing,
                         labels, per artifact the expected numbers and the host outputs' key, per file
                         sha256 and size, and a digest of the manifest itself
    artifacts/*.onnx|*.tflite   only the artifacts the device runs (format, precision, runtime)
    golden.npz           held-out samples: raw pixels, model inputs, labels, PyTorch logits, and each
                         artifact's outputs on the host runtime, computed when the bundle was made
    signature.json       an Ed25519 signature of the manifest's digest (edgekit.device.signing)

:func:`load_bundle` verifies every checksum, then the signature against the trusted keys, before
anything else reads a byte of the bundle, so a tampered, truncated or missing file is refused with a
message naming it, and so is a bundle that someone changed and re-digested without the signing key.

Device side: numpy and a runtime (the host outputs need one), never torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from edgekit import __version__, rundir
from edgekit.device import signing
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


def save_device_report(b: Bundle, report: dict) -> Path:
    """Write ``deploy-report-<device>.json`` next to the bundle, and into the run folder when it is here.

    Used by ``edgekit deploy`` (the device is the profile's name) and by the browser page of ``edgekit demo
    web`` (``<device>-web``); ``edgekit report RUN`` shows every one of them under "On the device".
    """
    path = b.path.parent / f"deploy-report-{report['device']}.json"
    rundir.write_json(path, report)
    run = Path(b.manifest.get("run", {}).get("dir") or "")
    results = run / "results.json"
    if run.parts and results.is_file():
        try:
            same = json.loads(results.read_text()).get("recipe_digest") == b.manifest["recipe"]["digest"]
        except (OSError, ValueError):
            same = False
        if same:
            rundir.write_json(run / "deploy" / f"{report['device']}.json", report)
    return path


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


__all__ = ["Bundle", "BundleArtifact", "load_bundle", "save_device_report", "manifest_digest", "summary"]
