"""Anomaly detection (``task: anomaly``): an autoencoder learns normal machine sounds; its reconstruction error
flags the rest.

A recipe with ``task: anomaly`` runs these stages instead of the classification ones:

1. train: the shared train stage (stages.train_stage, so torchrun, resume and metrics.csv work
   alike) on the log-mel windows of normal clips, mean squared reconstruction error as the loss,
   the validation AUC picking the epoch;
2. export: every ``export.targets`` entry, calibrated on training windows, with the scoring rule
   and decision threshold in the metadata;
3. verify: each artifact on the held-out test clips on every installed runtime: AUC, accuracy of the
   thresholded decision, agreement with the PyTorch decisions and max abs diff of the reconstruction;
   ``verify.budget`` bounds the AUC drop against the PyTorch model;
4. bench and report: results.json (readable by ``edgekit report``) and report.md.

Prune and distill are not applied: edgekit's pruning pass targets convolution channels and its
distillation matches classifier logits; neither is defined for this model yet.

The score of a clip is the mean over its windows of the mean squared error between window and
reconstruction, as in the DCASE 2020 task 2 baseline that MLPerf Tiny uses. ``auc`` and ``clip_scores``
are numpy-only, for the device side as well.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgekit import rundir
from edgekit.errors import CheckFailed

THRESHOLD_PERCENTILE = 90.0  # a clip is anomalous above this percentile of the normal validation clips' scores


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (1 = anomaly): the chance that a random anomalous
    clip scores above a random normal one, ties counting half (Mann-Whitney U). NaN when a class is missing.

    Example:
        >>> auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        0.75
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    pos, neg = int((labels == 1).sum()), int((labels != 1).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mid_ranks = np.cumsum(counts) - (counts - 1) / 2  # 1-based; tied scores share their average rank
    ranks = mid_ranks[inverse]
    return float((ranks[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def clip_scores(inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Anomaly score per clip: mean squared reconstruction error over its windows.

    Args:
        inputs: (clips, windows, features) model inputs.
        outputs: the reconstructions, (clips * windows, features) or the same shape as ``inputs``.
    """
    outputs = np.asarray(outputs, np.float64).reshape(inputs.shape)
    return ((outputs - inputs) ** 2).mean(axis=(1, 2))


def training_windows(train_xy: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every window of the (normal) training clips as one sample: (clips * windows, features), labels 0."""
    x, _ = train_xy
    flat = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
    return flat, np.zeros(len(flat), np.int64)


def _reconstruction_loss(out, x, y):
    import torch.nn.functional as F

    return F.mse_loss(out, x)


def _validation_auc(model, x: np.ndarray, y: np.ndarray) -> float:
    from edgekit.train.loop import predict

    return auc(clip_scores(x, predict(model, x.reshape(-1, x.shape[-1]))), y)


def fit_options() -> dict:
    """What edgekit.train.loop.fit needs for an autoencoder: the loss, the validation metric and its name."""
    return {"loss_fn": _reconstruction_loss, "evaluate": _validation_auc, "metric": "auc"}


def training(train_xy: tuple[np.ndarray, np.ndarray]) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
    """How the shared train stage trains this task (edgekit.stages.TRAINING): on windows, by reconstruction."""
    return training_windows(train_xy), fit_options()


def run(recipe, *, out: str | Path = "runs", resume: str | Path | None = None) -> Path:
    """Train, export, verify, bench and report an anomaly-detection recipe; return the run folder.

    Args:
        recipe: a validated Recipe with ``task: anomaly``.
        out: root folder of runs.
        resume: an existing run folder to continue.

    Returns:
        The run folder with results.json, report.md, metrics.csv, artifacts/ and checkpoints/.

    Raises:
        CheckFailed: an artifact's AUC is more than ``verify.budget`` below the PyTorch model's, or an fp32
            artifact's reconstruction differs by more than ``verify.fp32_tolerance`` (the report is written first).
        ConfigError, DataError: bad recipe values or data.

    Example:
        >>> run(edgekit.recipe.load("recipes/anomaly_autoencoder.yaml"))
    """
    import torch

    from edgekit import report
    from edgekit.compress.prune import count
    from edgekit.models import load_checkpoint
    from edgekit.stages import bench_all, cpu_int8_note, log, open_run, train_stage
    from edgekit.train.loop import predict

    splits, run_dir = open_run(recipe, out=out, resume=resume)
    if recipe.prune.enabled or recipe.distill.enabled:
        log("task anomaly: prune and distill are skipped (defined for classifiers only)")

    # 1. train on normal clips; the validation AUC picks the epoch
    train_stage(recipe, run_dir, splits.tensors("train"), splits.tensors("val"))
    model = load_checkpoint(run_dir / "checkpoints" / "teacher.pt").eval()

    # 2. the decision threshold from normal validation clips, then every export target
    val_x, val_y = splits.tensors("val")
    val_scores = clip_scores(val_x, predict(model, val_x.reshape(-1, val_x.shape[-1])))
    normal = val_scores[val_y == 0]
    threshold = float(np.percentile(normal if len(normal) else val_scores, THRESHOLD_PERCENTILE))
    calib = training_windows(splits.tensors("train"))[0]
    calib = calib[np.random.default_rng(recipe.data.seed).permutation(len(calib))[: recipe.export.calib_samples]]
    artifacts = _export(recipe, run_dir, model, splits, calib, threshold)

    # 3. verify on the held-out test clips
    x_test, y_test = splits.tensors("test")
    flat = x_test.reshape(-1, x_test.shape[-1])
    reference = predict(model, flat)
    ref_scores = clip_scores(x_test, reference)
    ref_auc = auc(ref_scores, y_test)
    ref_decisions = ref_scores > threshold
    log(f"test AUC of the PyTorch model {ref_auc:.4f}; threshold {threshold:.4g} "
        f"(p{THRESHOLD_PERCENTILE:g} of normal validation clips)")
    entries = [_verify(recipe, art, x_test, y_test, reference, ref_decisions, ref_auc, threshold)
               for art in artifacts]

    # 4. bench and report
    bench_all(recipe, entries, flat[:1])
    macs, params = count(model, torch.from_numpy(flat[:1]))
    torch_acc = float((ref_decisions == (y_test == 1)).mean())
    pytorch = {"auc": ref_auc, "accuracy": torch_acc, "macs": macs, "params": params, "threshold": threshold}
    models = {"dense": pytorch, "compressed": {**pytorch, "passed": True, "note": "not compressed (task anomaly)"}}
    stages = {"train": rundir.stage_summary(run_dir, "train")}
    res = {**report.results(recipe, run_dir, entries, models, stages=stages, cpu_note=cpu_int8_note()),
           "task": "anomaly", "metric": "auc"}
    rundir.write_json(run_dir / "results.json", res)
    rundir.write_text(run_dir / "report.md", markdown(res))
    failed = [e for e in entries if not e["passed"]]
    if failed:
        lines = "; ".join(f"{e['name']}: {e['verdict']}" for e in failed)
        raise CheckFailed(f"{len(failed)} over the budget: {lines} (report: {run_dir / 'report.md'})", run_dir=run_dir)
    return run_dir


def _export(recipe, run_dir: Path, model, splits, calib: np.ndarray, threshold: float) -> list:
    from edgekit.device.artifact import Artifact, model_metadata
    from edgekit.export import EXPORTERS, SUFFIX
    from edgekit.stages import log

    source = f"{recipe.name}@{recipe.digest()}"
    artifacts = []
    for target in recipe.export.targets:
        exporter = EXPORTERS.get(target, where="export.targets")
        fmt, precision = target.split(":")
        path = run_dir / "artifacts" / f"model_{precision}{SUFFIX[fmt]}"
        if not path.exists():
            t0 = time.perf_counter()
            meta = model_metadata(labels=list(splits.labels), input_shape=splits.input_shape,
                                  preprocess=splits.preprocess, precision=precision, source=source, task="anomaly")
            meta["input"]["layout"] = "NC"  # one window of frames * mel bands per row
            meta["anomaly"] = {"score": "mean over a clip's windows of the mean squared reconstruction error",
                               "threshold": threshold, "threshold_rule": f"p{THRESHOLD_PERCENTILE:g} of normal "
                                                                         f"validation clips"}
            exporter(model, calib[:1], path, metadata=meta, calib=calib)
            log(f"exported {target} -> {path.name}: {path.stat().st_size:,} bytes in {time.perf_counter() - t0:.1f} s")
        artifacts.append(Artifact(path, fmt, precision))
    return artifacts


def _verify(recipe, art, x_test: np.ndarray, y_test: np.ndarray, reference: np.ndarray, ref_decisions: np.ndarray,
            ref_auc: float, threshold: float) -> dict:
    from edgekit.device.runtime import open_session, runtimes_for
    from edgekit.stages import log

    runtimes = runtimes_for(art.path)
    if not runtimes:
        raise CheckFailed(f"{art.path}: no runtime installed for {art.format}")
    flat = x_test.reshape(-1, x_test.shape[-1])
    per_runtime = {}
    for rt in runtimes:
        out = open_session(art.path, runtime=rt, threads=2).run(flat)
        scores = clip_scores(x_test, out)
        decisions = scores > threshold
        diff = np.abs(np.asarray(out, np.float64) - reference)
        per_runtime[rt] = {"auc": auc(scores, y_test), "accuracy": float((decisions == (y_test == 1)).mean()),
                           "top1_agreement": float((decisions == ref_decisions).mean()),
                           "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
    problems = []
    for rt, p in per_runtime.items():
        drop = ref_auc - p["auc"]
        if not drop <= recipe.verify.budget + 1e-12:  # a NaN AUC fails too
            problems.append(f"{rt}: AUC {p['auc']:.4f} is {drop:.4f} below the PyTorch model's {ref_auc:.4f} "
                            f"(budget {recipe.verify.budget})")
        if art.precision == "fp32" and p["max_abs_diff"] > recipe.verify.fp32_tolerance:
            problems.append(f"{rt}: max abs diff {p['max_abs_diff']:.2e} exceeds the fp32 tolerance "
                            f"{recipe.verify.fp32_tolerance:.0e}")
    first = per_runtime[runtimes[0]]
    log(f"verified {art.name}: AUC {first['auc']:.4f}, accuracy {first['accuracy']:.4f}, agreement "
        f"{first['top1_agreement']:.4f}, max abs diff {first['max_abs_diff']:.2e} -> "
        f"{'ok' if not problems else 'FAILED: ' + '; '.join(problems)}")
    return {"name": art.name, "role": art.role, "path": str(art.path), "format": art.format,
            "precision": art.precision, "size_bytes": art.path.stat().st_size, "sha256": rundir.sha256(art.path),
            **first, "cosine": None, "parity": per_runtime, "passed": not problems,
            "verdict": "; ".join(problems) or "within budget", "latency": {}}


def markdown(res: dict) -> str:
    """report.md of an anomaly run: the PyTorch model and one row per artifact, AUC first."""
    m = res["models"]["dense"]
    lines = [
        f"# {res['recipe']} — edgekit anomaly-detection report", "",
        f"Run `{res['run_dir']}`, {res['created']}, edgekit {res['edgekit_version']}. Every number was measured in "
        f"this run on {res['environment']['machine']['platform']} ({res['environment']['machine']['cpus']} CPUs), "
        "on the held-out test clips.", "",
        f"**Result: {'PASSED' if res['passed'] else 'FAILED'}** — budget: AUC at most {res['budget']} below the "
        "PyTorch model's.", "",
        f"PyTorch fp32 autoencoder: {m['params']:,} parameters, {m['macs']:,} MACs per window, test AUC "
        f"{m['auc']:.4f}, accuracy {m['accuracy']:.4f} at threshold {m['threshold']:.4g} "
        f"(p{THRESHOLD_PERCENTILE:g} of normal validation clips' scores).", "",
        "| artifact | size KB | AUC | accuracy | agreement | max abs diff | p50 ms (runtime, threads) | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in res["artifacts"]:
        lat = ", ".join(f"{v['p50_ms']:.3f} ({rt}, {t})" for rt, d in e["latency"].items() for t, v in d.items())
        lines.append(f"| {e['name']} | {e['size_bytes'] / 1024:.1f} | {e['auc']:.4f} | {e['accuracy']:.4f} | "
                     f"{e['top1_agreement']:.4f} | {e['max_abs_diff']:.1e} | {lat} | "
                     f"{'ok' if e['passed'] else 'FAIL: ' + e['verdict']} |")
    lines += ["", "Agreement: the share of test clips whose anomaly decision matches the PyTorch model's.", ""]
    return "\n".join(lines)

