"""The training loop, shared by plain training and distillation from a teacher.

Seeded; SGD with a one-cycle schedule; CUDA with mixed precision when a GPU is there, the CPU
otherwise; channels-last memory format (1.4x faster on the CPU here for ResNet-8). A checkpoint
with the model, optimizer, schedule and random state is written atomically after every epoch, so a
killed run resumes from its last complete epoch.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edgekit.rundir import atomic_path

STATE_FORMAT = "edgekit-train-state/1"


@dataclass(frozen=True)
class FitResult:
    """What a training run measured: the chosen epoch's validation accuracy and the per-epoch history."""

    val_accuracy: float
    epochs: int
    seconds: float
    history: list = field(default_factory=list)
    resumed_from: int = 0


def pick_device(name: str = "auto") -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        from edgekit.errors import ConfigError

        raise ConfigError("train.device = cuda, but torch sees no CUDA device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


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


def fit(model: torch.nn.Module, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
        epochs: int, batch_size: int, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4,
        label_smoothing: float = 0.0, seed: int = 0, device: str = "auto", amp: bool = True,
        teacher: torch.nn.Module | None = None, temperature: float = 4.0, alpha: float = 0.7,
        state_path: Path | None = None, desc: str = "train") -> FitResult:
    """Train ``model`` in place and keep the weights of the epoch with the best validation accuracy.

    Args:
        model: the network; moved to the chosen device and back to the CPU at the end.
        train: pre-processed float32 inputs (N, C, H, W) and int64 labels.
        val: the validation split used to pick the best epoch (never the test split).
        teacher: when given, the loss is :func:`kd_loss` against its logits (distillation).
        state_path: where the per-epoch resume state lives; an existing one is resumed from.
        desc: label of the progress bar and the log lines.

    Returns:
        A FitResult with the best validation accuracy and the per-epoch history.

    Example:
        >>> fit(model, splits.tensors("train"), splits.tensors("val"), epochs=4, batch_size=128, lr=0.05)
    """
    dev = pick_device(device)
    torch.manual_seed(seed)
    model.to(dev).to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher.to(dev).to(memory_format=torch.channels_last).eval()
    x_np, y_np = train
    steps = max(1, len(x_np) // batch_size)  # drop the last partial batch: BatchNorm dislikes tiny ones
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.25)
    use_amp = amp and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    best = (-1.0, None)
    start_epoch = 0
    if state_path is not None and state_path.exists():
        start_epoch, best, history = _restore(state_path, model, opt, sched, scaler, gen)
        print(f"[{desc}] resuming after epoch {start_epoch} of {epochs} from {state_path}", file=sys.stderr)
    x_all, y_all = torch.from_numpy(x_np), torch.from_numpy(y_np)
    t0 = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        model.train()
        order = torch.randperm(len(x_all), generator=gen)
        bar = tqdm(range(steps), desc=f"{desc} {epoch + 1}/{epochs}", unit="batch", leave=False, file=sys.stderr,
                   disable=None)
        total = 0.0
        for step in bar:
            idx = order[step * batch_size: (step + 1) * batch_size]
            xb = x_all[idx].to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            yb = y_all[idx].to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                out = model(xb)
                if teacher is None:
                    loss = F.cross_entropy(out, yb, label_smoothing=label_smoothing)
                else:
                    with torch.no_grad():
                        t_out = teacher(xb)
                    loss = kd_loss(out.float(), t_out.float(), yb, temperature=temperature, alpha=alpha,
                                   label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            total += loss.item()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        val_acc = accuracy(predict(model, val[0], device=dev), val[1])
        history.append({"epoch": epoch + 1, "loss": total / steps, "val_accuracy": val_acc})
        print(f"[{desc}] epoch {epoch + 1}/{epochs} loss {total / steps:.4f} val accuracy {val_acc:.4f}",
              file=sys.stderr)
        if val_acc > best[0]:
            best = (val_acc, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        if state_path is not None:
            _save(state_path, epoch + 1, model, opt, sched, scaler, gen, best, history)
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.to("cpu").to(memory_format=torch.contiguous_format).eval()
    return FitResult(val_accuracy=best[0], epochs=epochs, seconds=time.perf_counter() - t0, history=history,
                     resumed_from=start_epoch)


def _save(path, epoch, model, opt, sched, scaler, gen, best, history) -> None:
    state = {"format": STATE_FORMAT, "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "generator": gen.get_state(),
             "torch_rng": torch.get_rng_state(), "best_accuracy": best[0], "best_model": best[1],
             "history": history}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _restore(path, model, opt, sched, scaler, gen):
    from edgekit.errors import DataError
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
        torch.set_rng_state(state["torch_rng"])
    except Exception as exc:
        raise DataError(f"{path}: cannot resume from this training state ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]}); delete it to start over") from None
    return state["epoch"], (state["best_accuracy"], state["best_model"]), state["history"]
