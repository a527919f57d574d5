"""GPU check: training throughput of the CIFAR-10 recipe's shape (ResNet-8, 3x32x32) on synthetic tensors.

Trains for a fixed number of steps, after warm-up steps, with edgekit's own pieces (the model from the
registry, the recipe's optimizer, channels-last, the pinned-memory batch feeder, autocast and GradScaler
as edgekit.train.loop uses them) and prints images/s per configuration, with the ratio to fp32:

* fp32, and AMP (bf16 where the GPU has it natively, else fp16 with loss scaling);
* optionally ``--compile`` (torch.compile) for each;
* DistributedDataParallel over every GPU with NCCL when two or more are present (per-GPU batch as given).

Without a GPU it says so and measures the CPU (fp32, few steps; ``--cpu-ddp`` also runs the 2-process
Gloo path), so the script itself is checked everywhere. Usage::

    python bench/gpu_train.py                 # GPU: 200 steps of batch 256; CPU: 10 steps of batch 64
    python bench/gpu_train.py --steps 500 --batch 512 --compile
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SHAPE = (3, 32, 32)  # CIFAR-10, the recipes/cifar10_resnet8.yaml input
CLASSES = 10


def table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
             "| " + " | ".join("-" * w for w in widths) + " |"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(lines)


def measure(device: torch.device, *, batch: int, steps: int, warmup: int, amp: bool, compile: bool = False,
            world=None) -> float:
    """Images per second of ``steps`` training steps (after ``warmup`` untimed ones) on ``device``."""
    from edgekit.models import build
    from edgekit.train.batches import Batches
    from edgekit.train.loop import autocast_dtype
    from edgekit.train.schedule import make_optimizer

    torch.manual_seed(0)
    model = build("resnet8", {"in_channels": SHAPE[0], "num_classes": CLASSES}).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    net = model
    if world is not None:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        net = torch.compile(net)
    opt = make_optimizer(model.parameters(), name="sgd", lr=0.05)
    use_amp = amp and device.type == "cuda"
    dtype = autocast_dtype("auto") if use_amp else torch.float32
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and dtype == torch.float16)
    n = batch * min(steps + warmup, 64)  # a pool of synthetic samples on the host, cycled through
    x = torch.randn(n, *SHAPE)
    y = torch.randint(0, CLASSES, (n,))
    feed = Batches(x, y, device=device, prefetch=2)
    total = steps + warmup
    order = [torch.arange(i * batch, (i + 1) * batch) % n for i in range(total)]
    t0 = None
    for i, (xb, yb) in enumerate(feed(order)):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
            loss = F.cross_entropy(net(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    _sync(device)
    return batch * steps / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, backend: str, args, amp: bool, results) -> None:
    import torch.distributed as dist

    from edgekit.train.distributed import World

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    else:
        torch.set_num_threads(1)
        device = torch.device("cpu")
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        ips = measure(device, batch=args.batch, steps=args.steps, warmup=args.warmup, amp=amp, compile=args.compile,
                      world=World(rank, world_size, rank))
        total = torch.tensor([ips], dtype=torch.float64, device=device)
        dist.all_reduce(total)  # every rank trains its own batch: the throughputs add up
        if rank == 0:
            results.put(total.item())
    finally:
        dist.destroy_process_group()


def measure_ddp(world_size: int, backend: str, args, amp: bool) -> float:
    """Images/s of all ranks together, DDP over ``world_size`` processes (NCCL on GPUs, Gloo on the CPU)."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    mp.spawn(_ddp_worker, args=(world_size, _free_port(), backend, args, amp, results), nprocs=world_size,
             join=True)
    return results.get()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, help="timed steps (default: 200 on a GPU, 10 on the CPU)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default: 20 on a GPU, 2 on the CPU)")
    ap.add_argument("--batch", type=int, help="batch per process (default: 256 on a GPU, 64 on the CPU)")
    ap.add_argument("--compile", action="store_true", help="also measure with torch.compile")
    ap.add_argument("--no-ddp", action="store_true", help="skip the multi-GPU DistributedDataParallel rows")
    ap.add_argument("--cpu-ddp", action="store_true", help="without GPUs: also run DDP with 2 Gloo processes")
    args = ap.parse_args()
    gpus = torch.cuda.device_count()
    on_gpu = gpus > 0
    args.steps = args.steps or (200 if on_gpu else 10)
    args.warmup = args.warmup if args.warmup is not None else (20 if on_gpu else 2)
    args.batch = args.batch or (256 if on_gpu else 64)
    if on_gpu:
        names = ", ".join(sorted({torch.cuda.get_device_name(i) for i in range(gpus)}))
        print(f"{gpus} GPU(s): {names}; torch {torch.__version__}, CUDA {torch.version.cuda}")
        device = torch.device("cuda", 0)
        torch.backends.cudnn.benchmark = True
    else:
        print(f"no GPU present: measuring the CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads); "
              f"torch {torch.__version__}")
        device = torch.device("cpu")
    print(f"ResNet-8 on synthetic {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} tensors, batch {args.batch} per process, "
          f"{args.steps} timed steps after {args.warmup}\n")

    configs = [("fp32", False, False)]
    if on_gpu:
        configs.append((f"AMP {'bf16' if _bf16() else 'fp16 + GradScaler'}", True, False))
    if args.compile:
        configs += [(f"{name} + compile", amp, True) for name, amp, _ in list(configs)]
    rows, base = [], None
    for name, amp, comp in configs:
        ips = measure(device, batch=args.batch, steps=args.steps, warmup=args.warmup, amp=amp, compile=comp)
        base = base or ips
        rows.append([device.type, name, "1", f"{ips:,.0f}", f"{ips / base:.2f}x"])
    if on_gpu and gpus >= 2 and not args.no_ddp:
        for name, amp, comp in configs:
            if comp:
                continue
            ips = measure_ddp(gpus, "nccl", args, amp)
            rows.append([f"cuda x{gpus} (DDP, NCCL)", name, str(gpus), f"{ips:,.0f}", f"{ips / base:.2f}x"])
    elif on_gpu and not args.no_ddp:
        print("one GPU: the DDP rows need two or more (torchrun runs the same path)\n")
    if not on_gpu and args.cpu_ddp:
        ips = measure_ddp(2, "gloo", args, False)
        rows.append(["cpu (DDP, Gloo, 1 thread each)", "fp32", "2", f"{ips:,.0f}", f"{ips / base:.2f}x"])
    print(table(["device", "precision", "processes", "images/s", "vs fp32"], rows))
    return 0


def _bf16() -> bool:
    from edgekit.train.loop import autocast_dtype

    return autocast_dtype("auto") == torch.bfloat16


if __name__ == "__main__":
    raise SystemExit(main())
