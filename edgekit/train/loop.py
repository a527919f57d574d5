"""The training loop, shared by plain training and distillation from a teacher.

Seeded; SGD (or AdamW) with a per-step schedule (one-cycle, cosine or step, with warm-up); CUDA
with mixed precision when a GPU is there, the CPU otherwise; channels-last memory format (1.4x
faster on the CPU here for ResNet-8); optionally torch.compile, and DistributedDataParallel when
torchrun started several processes. A checkpoint with the model, optimizer, schedule and random
state is written atomically after every epoch, so a killed run resumes from its last complete
epoch, and metrics.csv gets one row per epoch.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edgekit.rundir import atomic_path
from edgekit.train import distributed

STATE_FORMAT = "edgekit-train-state/1"


@dataclass(frozen=True)
class FitResult:
    """What a training run measured: the chosen epoch's validation accuracy and the per-epoch history."""

    val_accuracy: float
    epochs: int
    seconds: float
    history: list = field(default_factory=list)
    resumed_from: int = 0
    metric: str = "accuracy"  # what val_accuracy measures: accuracy, or e.g. auc for an anomaly detector


def pick_device(name: str = "auto", *, local_rank: int = 0) -> torch.device:
    """The training device: "cuda" (the GPU of this node-local rank) when asked or available, else the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        from edgekit.errors import ConfigError

        raise ConfigError("train.device = cuda, but torch sees no CUDA device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, *, batch_size: int = 512, device: torch.device | None = None
            ) -> np.ndarray:
    """Logits of ``model`` for float32 inputs ``x``, in eval mode, as a float32 numpy array."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        out.append(model(torch.from_numpy(x[i: i + batch_size]).to(device)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean()) if len(y) else float("nan")


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, *, temperature: float,
            alpha: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """Hinton et al. knowledge distillation: T²-scaled KL on softened logits plus the label loss."""
    t = temperature
    soft = F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean",
                    log_target=True) * t * t
    hard = F.cross_entropy(student, labels, label_smoothing=label_smoothing)
    return alpha * soft + (1 - alpha) * hard


class MeanOfModels(torch.nn.Module):
    """Several models as one: the mean of their outputs. An ensemble of independently trained models is a
    better teacher than any one of them (Hinton et al., 2015); the student learns the averaged logits."""

    def __init__(self, models: Sequence[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def fit(model: torch.nn.Module, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
        epochs: int, batch_size: int, lr: float, optimizer: str = "sgd", momentum: float = 0.9,
        weight_decay: float = 5e-4, label_smoothing: float = 0.0, schedule: str = "onecycle",
        warmup_epochs: float = 0.0, step_epochs: int = 30, step_gamma: float = 0.1, augment: Sequence[str] = (),
        crop_padding: int = 4, seed: int = 0, device: str = "auto", amp: bool = True, amp_dtype: str = "auto",
        compile: bool = False, prefetch: int = 2, teacher: torch.nn.Module | None = None, temperature: float = 4.0,
        alpha: float = 0.7, loss_fn: Callable | None = None, evaluate: Callable | None = None,
        metric: str = "accuracy", ema: float = 0.0, state_path: Path | None = None,
        metrics_path: Path | None = None, tensorboard_dir: Path | None = None, desc: str = "train") -> FitResult:
    """Train ``model`` in place and keep the weights of the epoch with the best validation metric.

    Under torchrun (an initialized process group, edgekit.train.distributed.init) the model is wrapped
    in DistributedDataParallel: ``batch_size`` is the global batch, each rank trains on its shard of
    every step's batch, validation metrics are combined over the ranks, and rank 0 alone writes the
    state, the CSV and TensorBoard files.

    Args:
        model: the network; moved to the chosen device and back to the CPU at the end.
        train: pre-processed float32 inputs (N, C, H, W) or (N, D) and int64 labels.
        val: the validation split used to pick the best epoch (never the test split).
        optimizer, schedule, warmup_epochs, step_epochs, step_gamma: see edgekit.train.schedule.
        augment: per-batch augmentations ("hflip", "crop" with ``crop_padding`` pixels), see batches.Augment.
        amp, amp_dtype: mixed precision on CUDA: bf16 where the GPU has it natively ("auto"), else fp16
            with loss scaling.
        compile: run the training forward through ``torch.compile``.
        prefetch: CUDA: batches gathered ahead into pinned memory by a background thread.
        teacher: when given, the loss is :func:`kd_loss` against its logits (distillation).
        loss_fn: ``loss_fn(output, x, y)`` instead of cross-entropy (e.g. reconstruction error).
        evaluate: ``evaluate(model, x, y) -> float``, higher is better, instead of accuracy; named ``metric``.
        ema: when > 0, validate and keep an exponential moving average of the weights (and BatchNorm
            statistics), updated after every step with this decay (warmed up, see :func:`_averaged`),
            instead of the raw weights. Averaging smooths out where the last steps happened to land,
            which on small data is much of the difference between two seeds. 0 = off; 0.999 averages
            over roughly the last 1000 steps.
        state_path: where the per-epoch resume state lives; an existing one is resumed from.
        metrics_path: the CSV of per-epoch scalars (edgekit.train.metrics), rewritten atomically each epoch.
        tensorboard_dir: also write TensorBoard scalars there.
        desc: label of the progress bar and the log lines.

    Returns:
        A FitResult with the best validation metric and the per-epoch history.

    Raises:
        ConfigError: bad option values (unknown schedule, a global batch that does not split over the ranks).
        DataError: a resume state that is unreadable or does not fit the model.

    Example:
        >>> fit(model, splits.tensors("train"), splits.tensors("val"), epochs=4, batch_size=128, lr=0.05)
    """
    from edgekit.train.batches import Augment, Batches, epoch_indices, per_rank_batch
    from edgekit.train.metrics import TensorBoard, write_csv
    from edgekit.train.schedule import make_optimizer, make_scheduler

    world = distributed.current()
    dev = pick_device(device, local_rank=world.local_rank)
    torch.manual_seed(seed)
    model.to(dev).to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher.to(dev).to(memory_format=torch.channels_last).eval()
    x_np, y_np = train
    # Fewer samples than a batch: one batch of all of them per epoch (every per-batch draw is sized to it).
    batch_size = max(1, min(batch_size, len(x_np))) if world.size == 1 else batch_size
    per_rank_batch(batch_size, world)
    steps = max(1, len(x_np) // batch_size)  # drop the last partial batch: BatchNorm dislikes tiny ones
    opt = make_optimizer(model.parameters(), name=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = make_scheduler(opt, name=schedule, lr=lr, epochs=epochs, steps_per_epoch=steps,
                           warmup_epochs=warmup_epochs, step_epochs=step_epochs, step_gamma=step_gamma)
    use_amp = amp and dev.type == "cuda"
    amp_dtype_ = autocast_dtype(amp_dtype) if use_amp else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype_ == torch.float16)
    gen = torch.Generator().manual_seed(seed)
    aug = Augment(augment, padding=crop_padding)
    if not 0.0 <= ema < 1.0:
        from edgekit.errors import ConfigError

        raise ConfigError(f"train.ema must be in [0, 1), got {ema}")
    averaged = _averaged(model, ema) if ema else None
    kept = averaged.module if averaged is not None else model  # the weights validated, kept and returned
    history: list[dict] = []
    best = (-math.inf, None)
    start_epoch = 0
    if state_path is not None and state_path.exists():
        start_epoch, best, history = _restore(state_path, model, opt, sched, scaler, gen, averaged)
        _log(world, f"[{desc}] resuming after epoch {start_epoch} of {epochs} from {state_path}")
        if world.main:  # a kill during a save leaves its temporary file; the state itself is whole
            for stale in state_path.parent.glob(f".{state_path.name}.*.partial"):
                stale.unlink(missing_ok=True)
    net = model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if compile:
        net = torch.compile(net)
    board = TensorBoard(tensorboard_dir) if tensorboard_dir is not None and world.main else None
    x_all, y_all = torch.from_numpy(x_np), torch.from_numpy(y_np)
    batches = Batches(x_all, y_all, device=dev, prefetch=prefetch)
    criterion = loss_fn or (lambda out, xb, yb: F.cross_entropy(out, yb, label_smoothing=label_smoothing))
    t0 = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        t_epoch = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_all), generator=gen)
        indices = epoch_indices(order, steps, batch_size, world)
        draws = [aug.draw(batch_size, gen) for _ in range(steps)] if aug else None
        bar = tqdm(range(steps), desc=f"{desc} {epoch + 1}/{epochs}", unit="batch", leave=False, file=sys.stderr,
                   disable=None if world.main else True)
        total = torch.zeros((), dtype=torch.float64, device=dev)  # summed on the device: no sync every step
        for step, (xb, yb) in zip(bar, batches(indices), strict=True):
            if draws is not None:
                xb = aug(xb, {k: v[world.rank:: world.size] for k, v in draws[step].items()})
            with torch.autocast(dev.type, dtype=amp_dtype_, enabled=use_amp):
                out = net(xb)
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(xb)
                    loss = kd_loss(out.float(), t_out.float(), yb, temperature=temperature, alpha=alpha,
                                   label_smoothing=label_smoothing)
                else:
                    loss = criterion(out.float(), xb, yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total += loss.detach()
            if step % 20 == 0 and world.main:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        loss_sum, = distributed.all_sum([total.item()], device=dev)
        val_metric = _validate(kept, val, evaluate, world, dev)
        row = {"epoch": epoch + 1, "step": (epoch + 1) * steps, "loss": loss_sum / world.size / steps,
               "lr": float(sched.get_last_lr()[0]), f"val_{metric}": val_metric,
               "seconds": time.perf_counter() - t_epoch}
        history.append(row)
        _log(world, f"[{desc}] epoch {epoch + 1}/{epochs} loss {row['loss']:.4f} val {metric} {val_metric:.4f}")
        if val_metric > best[0]:
            best = (val_metric, {k: v.detach().cpu().clone() for k, v in kept.state_dict().items()})
        if world.main:  # every rank holds the same weights; one writes them
            if state_path is not None:
                _save(state_path, epoch + 1, model, opt, sched, scaler, gen, best, history, averaged)
            if metrics_path is not None:
                write_csv(metrics_path, history, metric)
            if board is not None:
                board.add(row, metric)
    if board is not None:
        board.close()
    if best[1] is not None:
        model.load_state_dict(best[1])
    elif averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
    model.to("cpu").to(memory_format=torch.contiguous_format).eval()
    return FitResult(val_accuracy=best[0], epochs=epochs, seconds=time.perf_counter() - t0, history=history,
                     resumed_from=start_epoch, metric=metric)


def _log(world, msg: str) -> None:
    if world.main:
        print(msg, file=sys.stderr, flush=True)


def autocast_dtype(name: str) -> torch.dtype:
    """bf16 needs no loss scaling; "auto" takes it only where the GPU computes it natively (Ampere and later)."""
    if name == "bf16":
        return torch.bfloat16
    if name == "fp16":
        return torch.float16
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch before 2.3 has no including_emulation and reports native support only
        native = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if native else torch.float16


def _validate(model, val, evaluate, world, dev) -> float:
    """The validation metric over the whole split: each rank scores its share, the sizes weight the average."""
    x, y = val
    if world.distributed:
        x, y = x[world.rank:: world.size], y[world.rank:: world.size]
    if len(y) == 0:
        score, n = 0.0, 0
    elif evaluate is None:
        score, n = accuracy(predict(model, x, device=dev), y), len(y)
    else:
        model.eval()
        score, n = float(evaluate(model, x, y)), len(y)
    weighted, count = distributed.all_sum([score * n, float(n)], device=dev) if world.distributed else (score * n, n)
    return weighted / count if count else float("nan")


def _averaged(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """torch's AveragedModel of ``model`` as an exponential moving average with a warm-up: after n updates
    the decay is min(decay, (1 + n) / (10 + n)), as timm's ModelEmaV3 does. Without the warm-up the average
    of a fast-moving early trajectory is no model at all (a DS-CNN scored chance for 6 epochs at 0.999).
    Parameters and buffers (BatchNorm statistics) both follow the average."""
    from torch.optim.swa_utils import AveragedModel

    @torch.no_grad()
    def ema(averaged: list, current: list, n: torch.Tensor) -> None:
        d = min(decay, (1 + float(n)) / (10 + float(n)))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1 - d)
        else:  # integer buffers (BatchNorm's batch counter) are only counted, not averaged
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=ema, use_buffers=True)


def _save(path, epoch, model, opt, sched, scaler, gen, best, history, averaged=None) -> None:
    state = {"format": STATE_FORMAT, "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "generator": gen.get_state(),
             "torch_rng": torch.get_rng_state(), "best_accuracy": best[0], "best_model": best[1],
             "history": history}
    if averaged is not None:
        state["averaged"] = averaged.state_dict()
    if torch.cuda.is_available():  # kernels that draw on the GPU (dropout) continue their streams too
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _restore(path, model, opt, sched, scaler, gen, averaged=None):
    from edgekit.errors import DataError, first_line
    from edgekit.models import load_weights_only

    state = load_weights_only(path, what="training state (delete it to start over)")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DataError(f"{path}: not an edgekit training state; delete it to start over")
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        gen.set_state(state["generator"])
        if averaged is not None and "averaged" in state:  # else the average restarts from the restored weights
            averaged.load_state_dict(state["averaged"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available() and len(state["cuda_rng"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    except Exception as exc:
        raise DataError(f"{path}: cannot resume from this training state ({type(exc).__name__}: "
                        f"{first_line(exc)}); delete it to start over") from None
    return state["epoch"], (state["best_accuracy"], state["best_model"]), state["history"]
