"""The smoke test a device runs on a bundle: checksums, golden pairs through every runtime, a short benchmark.

``edgekit deploy`` runs it on the device (``python -m edgekit smoke BUNDLE --json``) and brings the
JSON back; it runs the same anywhere a bundle and a runtime are installed. The bundle's checksums and
its signature are verified before any model is opened: a tampered bundle, or one no trusted key
signed, is refused before anything runs.

Criteria, per artifact and runtime, against the host runtime's outputs stored in the bundle:
fp32 artifacts elementwise (max abs diff of the outputs), fp16 and int8 artifacts by top-1
agreement (their kernels legitimately differ between CPUs: fp16 arithmetic on ARMv8.2, other
rounding in int8 requantization).

Device side: numpy and the runtimes, never torch.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from edgekit import __version__
from edgekit.errors import EdgekitError

SMOKE_SCHEMA = 1
FP32_TOLERANCE = 1e-3  # max abs output diff for fp32 artifacts, device vs host: different SIMD, same math
MIN_AGREEMENT = 0.95  # top-1 agreement with the host outputs for fp16 and int8 artifacts


def smoke(bundle_dir, *, runtimes: list[str] | None = None, threads: int = 1, warmup: int = 10,
          iterations: int = 50, fp32_tolerance: float = FP32_TOLERANCE, min_agreement: float = MIN_AGREEMENT,
          policy=None) -> dict:
    """Verify a bundle, run its golden inputs through each artifact on each installed runtime, time each.

    Args:
        bundle_dir: a bundle folder.
        runtimes: restrict to these runtime names; None = every installed runtime the bundle lists for an artifact.
        threads: runtime threads for the golden run and the benchmark.
        warmup: untimed runs before timing.
        iterations: timed batch-1 runs.
        fp32_tolerance: max abs diff allowed for fp32 artifacts against the host outputs.
        min_agreement: top-1 agreement with the host outputs required for fp16 and int8 artifacts.
        policy: which signatures to accept (edgekit.device.signing.Policy; default: trusted keys only).

    Returns:
        The smoke report (a JSON-ready dict): environment, one result per artifact and runtime with
        max_abs_diff, top1_agreement, accuracy on the golden labels, p50/p90 ms and a verdict, and
        ``passed``. An artifact that no installed runtime runs fails the smoke test.

    Raises:
        DataError: the bundle fails its checksums or its signature (nothing has run then).

    Example:
        >>> smoke("bundles/rpi5", threads=1)["passed"]
        True
    """
    from edgekit.device.bench import bench
    from edgekit.device.bundle import load_bundle
    from edgekit.device.runtime import RUNTIMES, open_session
    from edgekit.device.verify import parity

    t0 = time.perf_counter()
    b = load_bundle(bundle_dir, policy=policy)  # every checksum and the signature first: nothing below runs on a tampered bundle
    golden = b.golden()
    x, y = golden["x"], golden["y"]
    results, problems = [], []
    pre = check_preprocessing(b.preprocess, golden)
    if pre is not None and not pre["passed"]:
        problems.append(f"pre-processing: {pre['verdict']}")
    for art in b.artifacts:
        names = [r for r in art.runtimes if r in RUNTIMES and RUNTIMES.get(r).installed()]
        if runtimes:
            names = [r for r in names if r in runtimes]
        if not names:
            listed = ", ".join(r for r in art.runtimes) or "none"
            problems.append(f"{art.name}: no installed runtime runs it (the profile lists {listed})")
            results.append({"artifact": art.name, "runtime": None, "passed": False,
                            "verdict": f"no installed runtime (the profile lists {listed})"})
            continue
        host = golden[art.golden_key]
        for rt in names:
            try:
                with open_session(art.path, runtime=rt, threads=threads) as s:
                    out = s.run(x)
            except EdgekitError as exc:  # the device's runtime cannot load or run this file
                problems.append(f"{art.name} on {rt}: {exc}")
                results.append({"artifact": art.name, "runtime": None, "passed": False, "verdict": f"{rt}: {exc}"})
                continue
            p = parity(host, out, y)
            row = bench(art.path, runtime=rt, threads=threads, warmup=warmup, iterations=iterations, sample=x[:1])
            if art.precision == "fp32":
                ok = p.max_abs_diff <= fp32_tolerance
                verdict = (f"max abs diff {p.max_abs_diff:.1e} vs the host's {art.host_runtime}"
                           f" ({'<=' if ok else '>'} {fp32_tolerance:.0e})")
            else:
                ok = p.top1_agreement >= min_agreement
                verdict = (f"top-1 agreement {p.top1_agreement:.4f} with the host's {art.host_runtime}"
                           f" ({'>=' if ok else '<'} {min_agreement})")
            if not ok:
                problems.append(f"{art.name} on {rt}: {verdict}")
            results.append({
                "artifact": art.name, "file": art.path.name, "format": art.format, "precision": art.precision,
                "runtime": rt, "host_runtime": art.host_runtime, "threads": threads, "samples": p.samples,
                "max_abs_diff": p.max_abs_diff, "top1_agreement": p.top1_agreement, "accuracy": p.accuracy,
                "host_range": float(np.ptp(host)) if np.size(host) else 0.0,
                "expected_accuracy": art.expected.get("accuracy"),
                "p50_ms": row.p50_ms, "p90_ms": row.p90_ms, "mean_ms": row.mean_ms, "iterations": row.iterations,
                "passed": ok, "verdict": verdict,
            })
    return {
        "schema": SMOKE_SCHEMA, "kind": "edgekit-smoke", "edgekit_version": __version__,
        "bundle": str(b.path), "device": b.device, "recipe": b.manifest["recipe"],
        "checksums": f"ok ({len(b.manifest['files'])} files)", "signature": b.signature,
        "environment": environment(),
        "preprocessing": pre, "results": results, "problems": problems, "passed": not problems,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def check_preprocessing(spec: dict, golden: dict) -> dict | None:
    """Does the manifest's pre-processing, run here, turn the golden raw pixels (or waveforms) into the host's inputs?"""
    from edgekit.device import preprocess
    if spec.get("kind") not in ("image", "mfcc") or "raw" not in golden:
        return None
    try:
        mine = preprocess.apply(spec, golden["raw"])
        diff = float(np.abs(mine - golden["x"]).max()) if mine.shape == golden["x"].shape else float("inf")
    except ValueError as exc:
        return {"passed": False, "max_abs_diff": None, "verdict": str(exc)}
    ok = diff <= 1e-5
    return {"passed": ok, "max_abs_diff": diff,
            "verdict": f"reproduces the host's inputs (max abs diff {diff:.1e})" if ok else
            f"the manifest's pre-processing does not reproduce the host's model inputs (max abs diff {diff:.2e})"}


def environment() -> dict:
    """What the device is: platform, Python, glibc, CPU count and the versions of edgekit's packages."""
    from edgekit import info

    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION").split()[-1]
    except (ValueError, OSError, AttributeError, IndexError):
        glibc = None
    return {**info.machine(), "glibc": glibc, "node": platform.node(),
            "versions": {k: v for k, v in info.versions().items() if v}}


def format_report(rep: dict) -> str:
    """The smoke report as a small table."""
    from edgekit.device.signing import describe

    env = rep["environment"]
    lines = [f"smoke test of {rep['bundle']} on {env['platform']} (python {env['python']}, {env['cpus']} CPUs): "
             f"checksums {rep['checksums']}",
             *([describe(rep["signature"])] if rep.get("signature") else []),
             f"{'artifact':14} {'runtime':15} {'agreement':>9} {'max diff':>9} {'accuracy':>9} {'p50 ms':>8} "
             f"{'p90 ms':>8}  verdict"]
    pre = rep.get("preprocessing")
    if pre is not None:
        lines.append(f"{'pre-processing':14} {'numpy':15} {'':>9} {'':>9} {'':>9} {'':>8} {'':>8}  "
                     f"{'ok' if pre['passed'] else 'FAIL'}: {pre['verdict']}")
    for r in rep["results"]:
        if r.get("runtime") is None:
            lines.append(f"{r['artifact']:14} {'-':15} {'':>9} {'':>9} {'':>9} {'':>8} {'':>8}  FAIL: {r['verdict']}")
            continue
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "n/a"
        lines.append(f"{r['artifact']:14} {r['runtime']:15} {r['top1_agreement']:>9.4f} {r['max_abs_diff']:>9.1e} "
                     f"{acc:>9} {r['p50_ms']:>8.3f} {r['p90_ms']:>8.3f}  {'ok' if r['passed'] else 'FAIL'}")
    lines.append(f"{'PASSED' if rep['passed'] else 'FAILED'} in {rep['seconds']:.1f} s"
                 + ("" if rep["passed"] else ": " + "; ".join(rep["problems"])))
    return "\n".join(lines)


__all__ = ["environment", "format_report", "smoke"]
