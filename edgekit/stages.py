"""The stages every task's pipeline shares: the run folder, training, benchmarking, the log line.

``edgekit.pipeline`` (classifiers) and ``edgekit.anomaly`` (autoencoders) build their runs from these,
so neither imports the other; how a task prepares its training data and loss is looked up in
:data:`TRAINING` by the recipe's ``task``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgekit import data as datasets
from edgekit import rundir
from edgekit.recipe import Recipe
from edgekit.registry import Registry

# task -> callable(train_xy) -> (train_xy, extra fit options). Tasks not listed train on the split as it is.
TRAINING = Registry("task")
TRAINING.register("anomaly", "edgekit.anomaly:training")


def log(msg: str) -> None:
    from edgekit.log import get

    get().info(msg)


def open_run(recipe: Recipe, *, out: str | Path, resume: str | Path | None):
    """Load the data (failing before anything is created), then create or reopen the run folder."""
    import torch

    resume = rundir.resumable(resume) if resume else None
    splits = datasets.load(recipe.data)
    run_dir = resume if resume else rundir.new_run_dir(out, recipe.name)
    log(f"run folder {run_dir}")
    if resume:
        rundir.drop_partials(run_dir)  # what a kill left mid-write
    rundir.write_json(run_dir / "recipe.json", recipe.to_dict())
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    return splits, run_dir


def bench_all(recipe: Recipe, entries: list[dict], sample: np.ndarray) -> None:
    """Add latency and the int8 speed check to each entry, measured now, side by side.

    The artifacts of one format are timed interleaved round by round (edgekit.device.bench.compare) on each
    runtime and thread count, so the ratios to fp32 are fair on a noisy machine. Each entry gets
    ``latency[runtime][threads] = {p50_ms, p90_ms}``, ``speed_vs_fp32[runtime][threads]`` and, for
    int8, ``offered[runtime]``: int8 is offered on a runtime only where it is no slower than fp32.
    """
    from edgekit.device.bench import compare
    from edgekit.device.runtime import runtimes_for

    b = recipe.bench
    rounds = max(1, b.iterations // 50)
    for fmt in sorted({e["format"] for e in entries}):
        group = [e for e in entries if e["format"] == fmt]
        runtimes = runtimes_for(group[0]["path"])
        if b.runtimes is not None:
            runtimes = [r for r in runtimes if r in b.runtimes]
        for rt in runtimes:
            for threads in b.threads:
                res = compare({e["name"]: (e["path"], rt) for e in group}, threads=int(threads), rounds=rounds,
                              iterations=min(50, b.iterations), warmup=b.warmup, sample=sample)
                for e in group:
                    r = res[e["name"]]
                    e["latency"].setdefault(rt, {})[str(threads)] = {"p50_ms": r["p50_ms"], "p90_ms": r["p90_ms"]}
        fp32 = next((e for e in group if e["precision"] == "fp32" and e["role"] == "compressed"), None)
        for e in group:
            log(f"benched {e['name']}: " + ", ".join(f"{rt}@{t}T p50 {v['p50_ms']:.3f} ms"
                                                      for rt, d in e["latency"].items() for t, v in d.items()))
            if fp32 is None or e is fp32:
                continue
            e["speed_vs_fp32"] = {rt: {t: v["p50_ms"] / fp32["latency"][rt][t]["p50_ms"] for t, v in d.items()}
                                  for rt, d in e["latency"].items()}
            if e["precision"] == "int8":
                e["offered"] = {rt: all(r <= SLOWER_THAN_FP32 for r in by_t.values())
                                for rt, by_t in e["speed_vs_fp32"].items()}
                for rt, ok in e["offered"].items():
                    if not ok:
                        worst = max(e["speed_vs_fp32"][rt].values())
                        log(f"{e['name']} is {worst:.2f}x the fp32 latency on {rt} on this CPU: not offered there "
                            f"({cpu_int8_note()})")


SLOWER_THAN_FP32 = 1.05  # int8 p50 / fp32 p50 above this counts as slower (5 % covers run-to-run noise)


def cpu_int8_note() -> str:
    """Why int8 may not pay off on this host: x86 int8 dot products are fast with VNNI, not with AVX2 alone."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        return "CPU features unknown"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "CPU has VNNI int8 dot products"
    if "asimddp" in flags:
        return "CPU has Arm dot-product (sdot) instructions"
    if " avx2" in flags:
        return "CPU has AVX2 but no VNNI: int8 convolutions have no fast dot-product path here"
    return "CPU without x86 int8 dot-product extensions"



def _fit_args(recipe: Recipe) -> dict:
    """The fit options that training and distillation share (schedule and optimizer belong to training)."""
    t = recipe.train
    return dict(batch_size=t.batch_size, momentum=t.momentum, weight_decay=t.weight_decay,
                label_smoothing=t.label_smoothing, seed=t.seed, device=t.device, amp=t.amp, amp_dtype=t.amp_dtype,
                compile=t.compile, prefetch=t.prefetch, augment=list(t.augment), crop_padding=t.crop_padding,
                ema=t.ema)


def train_stage(recipe: Recipe, run_dir: Path, train_xy, val_xy, *, member: int = 0) -> None:
    """Train the full model (the fp32 reference and teacher) into checkpoints/teacher.pt, unless done.

    Per-epoch scalars go to ``metrics.csv`` (and ``tb/`` with ``train.tensorboard``). Under torchrun every
    rank trains its shard; rank 0 alone writes the checkpoint, the CSV and the stage marker. ``member`` > 0
    trains another teacher for a distillation ensemble (``distill.teachers``) from seed ``train.seed +
    member``, into teacher_<member>.pt with its own state, CSV and stage marker.
    """
    import torch

    from edgekit.models import build, save_checkpoint
    from edgekit.train import distributed
    from edgekit.train.loop import fit

    tag = f"_{member}" if member else ""
    if rundir.stage_done(run_dir, f"train{tag}"):
        return
    t = recipe.train
    # each task prepares its own training data and loss (TRAINING): classifiers take the split as it is
    train_xy, task = TRAINING.get(recipe.task, where="task")(train_xy) if recipe.task in TRAINING else (train_xy, {})
    torch.manual_seed(t.seed + member)  # the initial weights depend on the seed only
    model = build(recipe.model.name, dict(recipe.model.args))
    res = fit(model, train_xy, val_xy, epochs=t.epochs, lr=t.lr, optimizer=t.optimizer, schedule=t.schedule,
              warmup_epochs=t.warmup_epochs, step_epochs=t.step_epochs, step_gamma=t.step_gamma,
              state_path=run_dir / "checkpoints" / f"train{tag}.state", metrics_path=run_dir / f"metrics{tag}.csv",
              tensorboard_dir=run_dir / f"tb{tag}" if t.tensorboard else None,
              desc=f"train {member + 1}/{recipe.distill.teachers}" if member else "train", **task,
              **{**_fit_args(recipe), "seed": t.seed + member})
    if distributed.current().main:
        save_checkpoint(run_dir / "checkpoints" / f"teacher{tag}.pt", model, name=recipe.model.name,
                        args=dict(recipe.model.args))
        rundir.mark_stage(run_dir, f"train{tag}", asdict(res))
