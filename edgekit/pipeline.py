"""The whole job, top to bottom: train → prune → distill → export → verify → bench → report.

Each stage writes its outputs atomically, then a marker (``.stages/<stage>.json``) with what it
measured. ``run(recipe, resume=RUN)`` skips the stages whose markers exist and resumes an
interrupted training from its last epoch, so nothing finished is ever recomputed or lost.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgekit import data as datasets
from edgekit import rundir
from edgekit.device.artifact import Artifact, model_metadata
from edgekit.errors import CheckFailed, ConfigError
from edgekit.recipe import Recipe
from edgekit.registry import Registry
from edgekit.stages import (
    _fit_args,
    bench_all,
    cpu_int8_note,
    log,
    open_run,
    train_stage,
)

# Tasks with a pipeline of their own (recipe ``task``); classifiers run :func:`run`'s stages below.
PIPELINES = Registry("task")
PIPELINES.register("anomaly", "edgekit.anomaly:run")


def run(recipe: Recipe, *, out: str | Path = "runs", resume: str | Path | None = None) -> Path:
    """Run every stage of ``recipe`` and return the run folder.

    Args:
        recipe: a validated Recipe (edgekit.recipe.load).
        out: root folder of runs; the run goes to ``out/<recipe name>/<timestamp>``.
        resume: an existing run folder to continue instead of starting a new one.

    Returns:
        The run folder, holding report.md, results.json, pareto.png, artifacts/ and checkpoints/.

    Raises:
        CheckFailed: when an artifact misses the accuracy budget (the report is written first).
        ConfigError, DataError: bad recipe values, missing data, unreadable checkpoints.

    Example:
        >>> run(edgekit.recipe.load("recipes/fashion_mnist_resnet8.yaml"))
        PosixPath('runs/fashion_mnist_resnet8/20261125-101500')
    """
    import torch

    from edgekit.models import load_checkpoint, save_checkpoint
    from edgekit.train import distributed

    if distributed.launched_by_torchrun():
        raise ConfigError(
            "edgekit run is one process: under torchrun every rank would run its own prune, export and bench. "
            f"Train on all processes with `torchrun --nproc_per_node N -m edgekit train {recipe.source or 'RECIPE'}`, "
            "then finish the pipeline in one process with `edgekit run RECIPE --resume RUN` (training is skipped)")
    if recipe.task in PIPELINES:  # e.g. anomaly: an autoencoder scored by AUC, its own stages (edgekit.anomaly)
        return PIPELINES.get(recipe.task)(recipe, out=out, resume=resume)
    from edgekit import devices

    for target in recipe.targets:  # a typo here should not cost a training run
        devices.load(target)
    splits, run_dir = open_run(recipe, out=out, resume=resume)
    ckpt = run_dir / "checkpoints"
    train_xy, val_xy, test_xy = splits.tensors("train"), splits.tensors("val"), splits.tensors("test")
    model_args = dict(recipe.model.args)

    # 1. train the full model: the fp32 reference and the teacher (with distill.teachers > 1, more of it,
    #    trained the same way from other seeds, whose mean is the distillation teacher)
    train_stage(recipe, run_dir, train_xy, val_xy)
    teacher = load_checkpoint(ckpt / "teacher.pt").eval()
    distill_teacher = teacher
    if (recipe.distill.enabled and recipe.distill.epochs > 0 and recipe.distill.teachers > 1
            and not rundir.stage_done(run_dir, "distill")):  # a resumed run past distillation needs none of it
        from edgekit.train.loop import MeanOfModels, accuracy, predict

        members = [teacher]
        for member in range(1, recipe.distill.teachers):
            train_stage(recipe, run_dir, train_xy, val_xy, member=member)
            members.append(load_checkpoint(ckpt / f"teacher_{member}.pt").eval())
        distill_teacher = MeanOfModels(members).eval()
        log(f"teacher: the mean of {len(members)} models, validation accuracy "
            f"{accuracy(predict(distill_teacher, val_xy[0]), val_xy[1]):.4f} (the first alone "
            f"{accuracy(predict(teacher, val_xy[0]), val_xy[1]):.4f})")
    example = torch.from_numpy(train_xy[0][:1])

    # 2. structured pruning to the MACs target
    from edgekit.compress.prune import count, prune

    if recipe.prune.enabled and not rundir.stage_done(run_dir, "prune"):
        student = copy.deepcopy(teacher)
        p = recipe.prune
        res = prune(student, example, macs_ratio=p.macs_ratio, round_to=p.round_to, importance=p.importance,
                    max_steps=p.max_steps)
        log(f"pruned: MACs {res.dense_macs:,} -> {res.macs:,} ({res.macs_ratio:.2f}x), "
            f"params {res.dense_params:,} -> {res.params:,} ({res.params_ratio:.2f}x)")
        save_checkpoint(ckpt / "pruned.pt", student, name=recipe.model.name, args=model_args)
        rundir.mark_stage(run_dir, "prune", {**asdict(res), "macs_ratio": res.macs_ratio})

    # 3. distillation: fine-tune the pruned student against the teacher
    student_path = ckpt / ("pruned.pt" if recipe.prune.enabled else "teacher.pt")
    if recipe.distill.enabled and recipe.distill.epochs > 0:
        if not rundir.stage_done(run_dir, "distill"):
            from edgekit.train.loop import fit

            student = load_checkpoint(student_path)
            d = recipe.distill
            res = fit(student, train_xy, val_xy, epochs=d.epochs, lr=d.lr, optimizer=d.optimizer, teacher=distill_teacher,
                      temperature=d.temperature, alpha=d.alpha, state_path=ckpt / "distill.state",
                      desc="distill", **_fit_args(recipe))
            save_checkpoint(ckpt / "student.pt", student, name=recipe.model.name, args=model_args)
            rundir.mark_stage(run_dir, "distill", asdict(res))
        student_path = ckpt / "student.pt"
    student = load_checkpoint(student_path).eval()

    # 4. export every target, calibrated on training samples (never the test split)
    calib = splits.calibration(recipe.export.calib_samples, seed=recipe.data.seed)
    skipped: list[dict] = []  # targets that could not be exported, each with the reason (in the report)
    artifacts = export_all(recipe, run_dir, student, teacher, splits, calib, skipped=skipped)

    # 5. verify each artifact against the PyTorch model it came from, on the held-out test split
    from edgekit.train.loop import accuracy, predict

    x_test, y_test = test_xy
    teacher_logits, student_logits = predict(teacher, x_test), predict(student, x_test)
    teacher_acc, student_acc = accuracy(teacher_logits, y_test), accuracy(student_logits, y_test)
    dense_macs, dense_params = count(teacher, example)
    macs, params = count(student, example)
    models = {
        "dense": {"accuracy": teacher_acc, "macs": dense_macs, "params": dense_params},
        "compressed": {"accuracy": student_acc, "macs": macs, "params": params, "macs_ratio": macs / dense_macs,
                       "params_ratio": params / dense_params, "accuracy_drop": teacher_acc - student_acc},
    }
    log(f"test accuracy: dense fp32 {teacher_acc:.4f}, compressed (PyTorch) {student_acc:.4f}")
    write_golden(run_dir / "golden.npz", splits.test_x, x_test, y_test, student_logits)
    entries = verify_all(recipe, artifacts, x_test, y_test, {"compressed": student_logits, "baseline": teacher_logits},
                         teacher_acc)

    # 6. bench every artifact on every installed runtime for its format
    bench_all(recipe, entries, x_test[:1])
    from edgekit.audit import audit_all
    from edgekit.compress.diagnose import onnx_ops

    fp32_onnx = next((e["path"] for e in entries if e["format"] == "onnx" and e["precision"] == "fp32"), None)
    audit_all(entries, x_test[:1], reference_ops=onnx_ops(fp32_onnx) if fp32_onnx else None, log=log)

    # 7. report
    from edgekit import report
    from edgekit.device.verify import judge, parity

    compressed = judge("pytorch compressed model", "fp32", parity(student_logits, student_logits, y_test),
                       baseline_accuracy=teacher_acc, budget=recipe.verify.budget, fp32_tolerance=float("inf"))
    models["compressed"].update(passed=compressed.passed, verdict=compressed.reason)
    results = report.results(recipe, run_dir, entries, models, stages=_stage_summaries(run_dir),
                             cpu_note=cpu_int8_note())
    results["skipped"] = skipped
    report.write(run_dir, results)
    failed = [e for e in entries if not e["passed"]]
    if not compressed.passed:
        failed.append({"name": compressed.name, "verdict": compressed.reason})
    if failed:
        lines = "; ".join(f"{e['name']}: {e['verdict']}" for e in failed)
        raise CheckFailed(f"{len(failed)} over the accuracy budget: {lines} (report: {run_dir / 'report.md'})",
                          run_dir=run_dir)

    # 8. prove a bundle for each target device on that device's instruction set (arm64: qemu-user)
    if recipe.targets:
        results["targets"] = prove_targets(recipe.targets, run_dir)
        report.write(run_dir, results)
        bad = [f"{t['device']}: {t['verdict']}" for t in results["targets"] if t["verified"] is False]
        if bad:
            raise CheckFailed(f"target check failed: {'; '.join(bad)} (report: {run_dir / 'report.md'})",
                              run_dir=run_dir)
    return run_dir


def prove_targets(targets: list[str], run_dir: Path) -> list[dict]:
    """Bundle the run for each target and run its smoke test on the target's CPU architecture.

    arm64 targets run under qemu-user in a sysroot matching the profile (edgekit.emulate); a host of the
    target's own architecture runs the smoke test directly. Where emulation is unavailable (no qemu, no
    cached packages) the target is reported as not verified, with the reason, instead of failing the run.
    """
    import platform

    from edgekit import devices, emulate
    from edgekit.device.smoke import smoke
    from edgekit.pack import bundle

    out = []
    for name in targets:
        dev = devices.load(name)
        b = bundle(run_dir, name, run_dir / "bundles" / name)
        if dev.arch == platform.machine():
            rep = smoke(b.path)
            out.append({"device": name, "how": f"{dev.arch} (this host)", "verified": rep["passed"],
                        "verdict": "smoke test passed" if rep["passed"] else "; ".join(rep["problems"])})
        elif dev.arch == "aarch64":
            try:
                rep = emulate.emulated_check(b.path, name)
            except emulate.EmulationUnavailable as exc:
                out.append({"device": name, "how": "arm64 (emulated)", "verified": None, "verdict": str(exc)})
                log(f"{name}: not verified on arm64: {exc}")
                continue
            out.append({"device": name, "how": f"arm64 (emulated, {rep['qemu_cpu']})", "verified": rep["passed"],
                        "verdict": "every artifact matches the host" if rep["passed"] else "; ".join(rep["problems"]),
                        "results": rep["results"]})
        else:
            out.append({"device": name, "how": dev.arch, "verified": None,
                        "verdict": f"no way to run {dev.arch} code on this {platform.machine()} host"})
    done = [t["device"] for t in out if t["verified"]]
    if done:
        log(f"verified on {', '.join(sorted({t['how'].split(' (')[0] for t in out if t['verified']}))} "
            f"for {', '.join(done)}")
    return out


GOLDEN_SAMPLES = 64


def write_golden(path: Path, raw: np.ndarray, x: np.ndarray, y: np.ndarray, logits: np.ndarray) -> None:
    """Held-out samples for bundles and device checks: raw pixels, model inputs, labels, PyTorch logits."""
    n = min(GOLDEN_SAMPLES, len(x))
    with rundir.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, raw=raw[:n], x=x[:n], y=y[:n], logits=logits[:n])


def _stage_summaries(run_dir: Path) -> dict:
    """What each finished stage measured (train, train_<i> for extra teachers, prune, distill), in run order."""
    return {s: rundir.stage_summary(run_dir, s) for s in rundir.finished_stages(run_dir)}


def export_all(recipe: Recipe, run_dir: Path, student, teacher, splits, calib: np.ndarray, *,
               skipped: list[dict] | None = None) -> list[Artifact]:
    """Write every export target of the recipe (and the dense baseline); existing files are kept on resume.

    A target whose converter fails (an op the format or its int8 quantizer does not support, a missing
    converter package) is not fatal: it is logged and appended to ``skipped`` as ``{"name", "target",
    "skipped": reason}`` (the exception, its message and the converter function that raised it) so the
    report says why it is missing; the other targets go on. ConfigError (a bad recipe value) still stops
    the run, and without a ``skipped`` list every error is raised as before.
    """
    from edgekit.export import EXPORTERS, SUFFIX

    art_dir = run_dir / "artifacts"
    source = f"{recipe.name}@{recipe.digest()}"
    jobs = [(t, student, "compressed") for t in recipe.export.targets]
    if recipe.export.baseline:
        jobs.append(("onnx:fp32", teacher, "baseline"))
    artifacts = []
    for target, model, role in jobs:
        exporter = EXPORTERS.get(target, where="export.targets")
        fmt, precision = target.split(":")
        path = art_dir / f"{'model' if role == 'compressed' else 'dense'}_{precision}{SUFFIX[fmt]}"
        if not path.exists():
            t0 = time.perf_counter()
            meta = model_metadata(labels=list(splits.labels), input_shape=splits.input_shape,
                                  preprocess=splits.preprocess, precision=precision, source=source)
            try:
                exporter(model, calib[:1], path, metadata=meta, calib=calib)
            except Exception as exc:  # converters raise anything (torch.export, MLIR, quantizer): record, go on
                path.unlink(missing_ok=True)  # a partial file would pass for a finished export on --resume
                if skipped is None or isinstance(exc, ConfigError):
                    raise
                import traceback

                where = traceback.extract_tb(exc.__traceback__)[-1]  # which converter stage gave up
                reason = (f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
                          f"(in {Path(where.filename).parent.name}/{Path(where.filename).name}:{where.name})")
                name = Artifact(path, fmt, precision, role).name
                skipped.append({"name": name, "target": target, "skipped": reason})
                log(f"skipped {target} ({role}): export failed: {reason}")
                continue
            log(f"exported {target} ({role}) -> {path.name}: {path.stat().st_size:,} bytes in "
                f"{time.perf_counter() - t0:.1f} s")
        artifacts.append(Artifact(path, fmt, precision, role))
    return artifacts


def verify_all(recipe: Recipe, artifacts: list[Artifact], x: np.ndarray, y: np.ndarray,
               references: dict[str, np.ndarray], baseline_accuracy: float) -> list[dict]:
    """Run each artifact on the held-out split on every installed runtime; judge it against the budget."""
    from edgekit.device.verify import check_artifacts, judge

    def judge_one(art: Artifact, rep) -> tuple[bool, str]:
        v = judge(art.name, art.precision, rep, baseline_accuracy=baseline_accuracy, budget=recipe.verify.budget,
                  fp32_tolerance=recipe.verify.fp32_tolerance)
        return v.passed, v.reason

    return check_artifacts(artifacts, x, y, lambda art: references[art.role], judge_one, log=log)


def train_only(recipe: Recipe, *, out: str | Path = "runs", resume: str | Path | None = None) -> Path:
    """Train the recipe's full model into a run folder (resumable); the checkpoint is checkpoints/teacher.pt.

    Started by torchrun with several processes, it trains with DistributedDataParallel: every rank
    loads the data, rank 0 creates the run folder and tells the others its path, and only rank 0 writes.

    Args:
        recipe: a validated Recipe.
        out: root folder of runs; the run goes to ``out/<recipe name>/<timestamp>``.
        resume: an existing run folder whose training continues from its last complete epoch.

    Returns:
        The run folder (the same on every rank).

    Raises:
        ConfigError, DataError: bad recipe values, missing data, an unreadable resume state.

    Example:
        >>> train_only(edgekit.recipe.load("recipes/digits_resnet8.yaml"))   # or under torchrun
    """
    import torch

    from edgekit import devices
    from edgekit.train import distributed

    for target in recipe.targets:  # a typo here should not cost a training run
        devices.load(target)
    resume = rundir.resumable(resume) if resume else None
    splits = datasets.load(recipe.data)  # fail on missing data before creating anything
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    world = distributed.init(recipe.train.device)
    if resume:
        run_dir = Path(resume)
    else:
        run_dir = distributed.broadcast(rundir.new_run_dir(out, recipe.name) if world.main else None)
    if world.main:
        rundir.write_json(run_dir / "recipe.json", recipe.to_dict())
    train_stage(recipe, run_dir, splits.tensors("train"), splits.tensors("val"))
    # Only after success: on an error this rank exits and torchrun stops the others, while a barrier here
    # would wait for ranks that are stuck in a collective.
    distributed.finish()
    return run_dir
