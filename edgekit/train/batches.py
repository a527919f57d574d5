"""Mini-batches for the training loop: the epoch order, its shard per rank, augmentation, and feeding a GPU.

The order of an epoch is one seeded permutation, the same on every rank. Step ``s`` takes the
global batch ``order[s*B:(s+1)*B]`` and rank ``r`` of ``n`` takes every n-th sample of it from
``r`` on, so the ranks' shards of a step are exactly the single-process batch of that step: a
2-process run sees the same samples in the same steps as a 1-process run with the same seed.

On CUDA a background thread gathers each batch into pinned (page-locked) memory ahead of time and
the loop copies it with ``non_blocking=True``, so the copy overlaps the previous step's kernels.
On the CPU batches are sliced in place: a thread would only compete with the compute for the cores.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

import torch

from edgekit.errors import ConfigError
from edgekit.recipe import AUGMENTATIONS
from edgekit.train.distributed import World


def per_rank_batch(batch_size: int, world: World) -> int:
    """The batch each rank trains on: ``train.batch_size`` is the global batch, split evenly over the ranks.

    Raises:
        ConfigError: when the global batch does not split evenly.
    """
    if batch_size % world.size:
        raise ConfigError(f"train.batch_size = {batch_size} is the global batch and must divide evenly by the "
                          f"{world.size} processes (e.g. {batch_size - batch_size % world.size or world.size})")
    return batch_size // world.size


def shard(batch: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's share of one global batch of sample indices: every ``size``-th one, from ``rank`` on."""
    return batch[world.rank:: world.size]


def epoch_indices(order: torch.Tensor, steps: int, batch_size: int, world: World) -> list[torch.Tensor]:
    """The sample indices this rank trains on at each step of an epoch (global batches of ``batch_size``)."""
    return [shard(order[s * batch_size: (s + 1) * batch_size], world) for s in range(steps)]


class Augment:
    """Random horizontal flips, padded random crops and SpecAugment masks, drawn per global batch from the
    loop's generator.

    "specaugment" (Park et al., 2019) is for spectrogram-like inputs (N, C, time, features): it zeroes one
    random band of up to a sixth of the time frames and one of up to a fifth of the feature bins per sample,
    so a keyword model cannot lean on one frame or one coefficient that a new voice or room changes.

    The draws for a whole global batch are made on every rank and each rank keeps its shard of them,
    so the augmentation of a sample does not depend on the number of processes.
    """

    def __init__(self, names: Sequence[str], *, padding: int = 4):
        unknown = [n for n in names if n not in AUGMENTATIONS]
        if unknown:
            raise ConfigError(f"train.augment: unknown {unknown[0]!r}; choices: {', '.join(AUGMENTATIONS)}")
        self.flip = "hflip" in names
        self.crop = "crop" in names and padding > 0
        self.padding = padding
        self.mask = "specaugment" in names

    def __bool__(self) -> bool:
        return self.flip or self.crop or self.mask

    def draw(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Random parameters for ``n`` samples (one global batch)."""
        params = {}
        if self.flip:
            params["flip"] = torch.rand(n, generator=gen) < 0.5
        if self.crop:
            params["shift"] = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=gen)
        if self.mask:  # fractions, scaled to the batch's shape when applied: (time start, width, feature start, width)
            params["mask"] = torch.rand(n, 4, generator=gen)
        return params

    def __call__(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply drawn parameters to a batch (N, C, H, W) on any device."""
        if "flip" in params:
            flip = params["flip"].to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if "shift" in params:
            n, c, h, w = x.shape
            p = self.padding
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            shift = params["shift"].to(x.device)
            rows = (shift[:, 0:1] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
            cols = (shift[:, 1:2] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            chan = torch.arange(c, device=x.device)[None, :, None, None]
            x = padded[batch, chan, rows, cols]  # one gather: every sample its own crop window
        if "mask" in params:
            x = x * _band_masks(params["mask"].to(x.device), x.shape[2], x.shape[3]).to(x.dtype)
        return x


def _band_masks(draws: torch.Tensor, frames: int, bins: int) -> torch.Tensor:
    """(N, 1, frames, bins) masks of ones with one time band and one feature band zeroed per sample."""
    def band(start, width, size, widest):
        w = (width * (widest + 1)).floor()  # 0..widest
        s = (start * (size - w + 1)).floor()
        pos = torch.arange(size, device=draws.device)[None, :]
        return (pos < s[:, None]) | (pos >= (s + w)[:, None])  # True = kept
    keep_t = band(draws[:, 0], draws[:, 1], frames, max(1, frames // 6))
    keep_f = band(draws[:, 2], draws[:, 3], bins, max(1, bins // 5))
    return (keep_t[:, None, :, None] & keep_f[:, None, None, :])


class Batches:
    """One epoch's batches of in-memory tensors, moved to ``device`` (and augmented there).

    Args:
        x, y: the whole training split on the CPU.
        device: where the loop trains.
        prefetch: batches staged ahead in pinned memory by a background thread (CUDA; 0 = none).
        background: force the background thread on (tests) or off; None = on for CUDA with prefetch > 0.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, device: torch.device, prefetch: int = 2,
                 background: bool | None = None):
        self.x, self.y, self.device = x, y, device
        cuda = device.type == "cuda"
        self.pin = cuda
        self.prefetch = max(1, prefetch)
        self.background = (cuda and prefetch > 0) if background is None else background

    def __call__(self, indices: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` on the device for each step's indices, in order."""
        host = self._threaded(indices) if self.background else (self._gather(i) for i in indices)
        for xb, yb in host:
            xb = xb.to(self.device, non_blocking=self.pin)
            if xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb.to(self.device, non_blocking=self.pin)

    def _gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = self.x[idx], self.y[idx]
        if self.pin:  # page-locked memory: the copy to the GPU runs asynchronously
            xb, yb = xb.pin_memory(), yb.pin_memory()
        return xb, yb

    def _threaded(self, indices: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def put(item) -> bool:
            while not stop.is_set():  # the consumer may be gone (an exception in the step): never block forever
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for idx in indices:
                    if not put(self._gather(idx)):
                        return
                put(done)
            except BaseException as exc:  # handed to the consumer, which re-raises it in the training thread
                put(exc)

        worker = threading.Thread(target=produce, name="edgekit-batches", daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join(timeout=5)
