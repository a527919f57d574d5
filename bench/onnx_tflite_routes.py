"""ONNX → TFLite: the two routes of edgekit.export.onnx_tflite side by side on every ONNX file made here.

Routes: ``onnx2torch`` (onnx2torch → torch.fx → litert-torch, in-process) and ``onnx2tf`` (onnx2tf 1.29 in its
isolated venv, int8 afterwards by ai-edge-quantizer). The models: edgekit's registered models exported with
edgekit's own exporter (torch.export, opset 18), and torch-built architectures exported with the legacy
TorchScript exporter (``dynamo=False``, opsets 13-17, a dynamic batch axis), as third-party files mostly are,
some with an NHWC input. Weights are random, BatchNorm statistics too, so fp32 parity is judged elementwise
(max abs diff divided by the reference output's range) and int8 by top-1 agreement with onnxruntime's fp32
outputs on seeded normal inputs, calibrated on other seeded normal inputs (a random net has close logits, so
int8 agreement here is a lower bound of what trained nets get).

Each conversion runs with ``check=False`` (no built-in parity gate, no fallback): the table shows what each
route produces by itself. Prints a Markdown table; ``--json FILE`` also writes the rows.

Usage:
    .venv/bin/python bench/onnx_tflite_routes.py [--models a,b] [--routes onnx2torch,onnx2tf] [--precisions fp32,int8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FP32_PARITY = 1e-4  # max abs diff / output range counted as parity (float reassociation gives ~1e-6)
INT8_AGREEMENT = 0.9  # top-1 agreement with the fp32 ONNX model counted as int8 parity on these random nets


@dataclass(frozen=True)
class Case:
    name: str
    onnx: Path
    exporter: str  # "dynamo opset 18" or "legacy opset N"
    classifier: bool = True


@dataclass
class Row:
    model: str
    exporter: str
    route: str
    precision: str
    converted: bool
    reason: str = ""
    rel_diff: float | None = None  # max abs diff / reference output range
    max_abs_diff: float | None = None
    top1: float | None = None
    seconds: float | None = None


def _randomize_bn(model) -> None:
    """Give every BatchNorm random running statistics and affine weights, so folding them is really tested."""
    import torch

    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def _torch_models() -> dict:
    """Torch-built architectures a third-party ONNX file is likely to hold: name -> (module, input shape, opset)."""
    import torch
    from torch import nn

    class InvertedResidual(nn.Module):  # MobileNetV2
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            mid = cin * expand
            self.skip = stride == 1 and cin == cout
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
                nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
                nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            return x + self.body(x) if self.skip else self.body(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
            self.blocks = nn.Sequential(InvertedResidual(16, 16, 1, 1), InvertedResidual(16, 24, 2, 6),
                                        InvertedResidual(24, 24, 1, 6), InvertedResidual(24, 32, 2, 6),
                                        InvertedResidual(32, 32, 1, 6), InvertedResidual(32, 64, 2, 6))
            self.head = nn.Sequential(nn.Conv2d(64, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU6())
            self.fc = nn.Linear(128, 10)

        def forward(self, x):
            x = self.head(self.blocks(self.stem(x)))
            return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).view(x.size(0), -1))

    class Basic(nn.Module):  # ResNet-18 BasicBlock
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
            self.c2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.c2(self.c1(x)) + self.down(x))

    class ResNet18(nn.Module):  # torchvision's layout at a quarter of the width
        def __init__(self, w=16):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
            layers, cin = [], w
            for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
                layers += [Basic(cin, cout, 1 if i == 0 else 2), Basic(cout, cout, 1)]
                cin = cout
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(cin, 10)

        def forward(self, x):
            x = self.layers(self.stem(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1))

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

        def forward(self, x):
            s = x.mean((2, 3), keepdim=True)
            return x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))

    class MobileNetV3(nn.Module):  # hard-swish, squeeze-excite, 5x5 depthwise
        def __init__(self):
            super().__init__()

            def block(cin, mid, cout, k, s):
                return nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.Hardswish(),
                                     nn.Conv2d(mid, mid, k, s, k // 2, groups=mid, bias=False), nn.BatchNorm2d(mid),
                                     nn.Hardswish(), SE(mid), nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
            self.blocks = nn.Sequential(block(16, 64, 24, 3, 2), block(24, 72, 40, 5, 2), block(40, 120, 48, 5, 1))
            self.head = nn.Sequential(nn.Linear(48, 128), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(128, 10))

        def forward(self, x):
            return self.head(self.blocks(self.stem(x)).mean((2, 3)))

    class NHWCNet(nn.Module):  # takes (N, H, W, C) like a TensorFlow-trained model; transposes inside
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
                                      nn.Conv2d(32, 32, 3, 1, 1, groups=32), nn.ReLU())
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            x = self.body(x.permute(0, 3, 1, 2))
            return self.fc(x.mean((2, 3)))

    class GRUNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.fc = nn.GRU(10, 48, batch_first=True), nn.Linear(48, 12)

        def forward(self, x):
            return self.fc(self.rnn(x)[0][:, -1])

    class LSTMNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.fc = nn.LSTM(10, 48, num_layers=2, batch_first=True), nn.Linear(48, 12)

        def forward(self, x):
            return self.fc(self.rnn(x)[0][:, -1])

    class AttentionNet(nn.Module):  # LayerNorm + nn.MultiheadAttention + MLP, a pre-norm Transformer block
        def __init__(self, dim=32):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.att = nn.MultiheadAttention(dim, 4, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(dim, 64), nn.GELU(), nn.Linear(64, dim))
            self.fc = nn.Linear(dim, 10)

        def forward(self, x):
            h = self.norm1(x)
            x = x + self.att(h, h, h, need_weights=False)[0]
            x = x + self.mlp(self.norm2(x))
            return self.fc(x.mean(1))

    from edgekit.models import build

    return {
        "mbv2_style": (MobileNetV2(), (3, 64, 64), 13),
        "resnet18_style": (ResNet18(), (3, 64, 64), 13),
        "mbv3_se_hswish": (MobileNetV3(), (3, 64, 64), 14),
        "nhwc_input_cnn": (NHWCNet(), (32, 32, 3), 13),
        "gru": (GRUNet(), (49, 10), 14),
        "lstm": (LSTMNet(), (49, 10), 14),
        "layernorm_attention": (AttentionNet(), (16, 32), 17),
        # edgekit's ResNet-8 again, through the legacy exporter with a dynamic batch: stride-2 convs
        "resnet8_legacy": (build("resnet8"), (3, 32, 32), 17),
    }


# edgekit's registered models: name -> (factory args, input shape, classifier?)
EDGEKIT_MODELS = {
    "resnet8": ({}, (3, 32, 32), True),
    "mobilenet_v1": ({}, (3, 96, 96), True),
    "ds_cnn": ({}, (1, 49, 10), True),
    "gru_kws": ({}, (1, 49, 10), True),
    "kwt": ({}, (1, 49, 10), True),
    "fc_autoencoder": ({}, (640,), False),
}


def make_zoo(out: Path, only: set[str] | None = None) -> list[Case]:
    """Export every model of the zoo to ``out``; seeded, so the files are the same run after run."""
    import torch

    from edgekit.export.onnx import export_onnx_fp32
    from edgekit.models import build

    cases = []
    for name, (args, shape, classifier) in EDGEKIT_MODELS.items():
        if only and name not in only:
            continue
        torch.manual_seed(0)
        model = build(name, args)
        _randomize_bn(model)
        model.eval()
        path = out / f"{name}.onnx"
        export_onnx_fp32(model, np.zeros((1, *shape), np.float32), path,
                         metadata={"schema": 1, "source": f"edgekit:{name}", "input": {"shape": [1, *shape]}})
        cases.append(Case(name, path, "dynamo opset 18", classifier))
    for name, (model, shape, opset) in _torch_models().items():
        if only and name not in only:
            continue
        torch.manual_seed(0)
        for p in model.parameters():  # reinitialize: the same weights whichever subset is built
            torch.nn.init.normal_(p, std=0.2) if p.dim() > 1 else torch.nn.init.normal_(p, std=0.05)
        _randomize_bn(model)
        model.eval()
        path = out / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), dynamo=False, opset_version=opset,
                              input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
        cases.append(Case(name, path, f"legacy opset {opset}"))
    return cases


def evaluate(case: Case, route: str, precision: str, work: Path, *, n: int = 64) -> Row:
    from edgekit.device.runtime import open_session
    from edgekit.errors import EdgekitError, first_line
    from edgekit.export.onnx_tflite import onnx_to_tflite

    ref_session = open_session(case.onnx, runtime="onnxruntime")
    shape = tuple(ref_session.input_shape[1:])
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    calib = np.random.default_rng(2).normal(size=(128, *shape)).astype(np.float32)
    ref = ref_session.run(x)
    out = work / f"{case.name}_{route}_{precision}.tflite"
    row = Row(case.name, case.exporter, route, precision, False)
    start = time.perf_counter()
    try:
        art = onnx_to_tflite(case.onnx, out, precision=precision, calib=calib, route=route, check=False)
    except EdgekitError as exc:
        row.reason = str(exc).rsplit(" failed: ", 1)[-1].split(" skipped: ", 1)[-1][:110]
        row.seconds = time.perf_counter() - start
        return row
    row.seconds = time.perf_counter() - start
    row.converted = art.path.is_file()
    try:
        got = open_session(art.path, runtime="litert").run(x)
    except Exception as exc:  # a file that does not run is not converted
        row.converted, row.reason = False, f"does not run: {first_line(exc)[:80]}"
        return row
    if got.shape != ref.shape:
        row.converted, row.reason = False, f"output shape {list(got.shape)} != ONNX {list(ref.shape)}"
        return row
    diff = float(np.abs(got - ref).max())
    row.max_abs_diff, row.rel_diff = diff, diff / max(float(ref.max() - ref.min()), 1e-12)
    if case.classifier:
        r2, g2 = ref.reshape(len(ref), -1), got.reshape(len(got), -1)
        row.top1 = float((r2.argmax(1) == g2.argmax(1)).mean())
    return row


def parity(row: Row) -> bool:
    if not row.converted:
        return False
    if row.precision == "int8":
        return row.top1 is None or row.top1 >= INT8_AGREEMENT
    return row.rel_diff is not None and row.rel_diff <= (FP32_PARITY if row.precision == "fp32" else 1e-2)


def table(rows: list[Row]) -> str:
    head = ["model", "exporter", "route", "prec", "converted", "rel diff", "max abs diff", "int8 top-1", "time s",
            "parity"]
    lines = []
    for r in rows:
        lines.append([
            r.model, r.exporter, r.route, r.precision, "yes" if r.converted else f"no: {r.reason}",
            "" if r.rel_diff is None else f"{r.rel_diff:.1e}",
            "" if r.max_abs_diff is None else f"{r.max_abs_diff:.1e}",
            "" if r.top1 is None or r.precision != "int8" else f"{r.top1:.3f}",
            "" if r.seconds is None else f"{r.seconds:.1f}", "yes" if parity(r) else "NO"])
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
           "| " + " | ".join("-" * w for w in widths) + " |"]
    out += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(x, widths, strict=True)) + " |" for x in lines]
    return "\n".join(out)


def summary(rows: list[Row]) -> str:
    lines = []
    for route in sorted({r.route for r in rows}):
        mine = [r for r in rows if r.route == route]
        models = sorted({r.model for r in mine})
        full = [m for m in models if all(parity(r) for r in mine if r.model == m)]
        secs = [r.seconds for r in mine if r.converted and r.seconds is not None]
        failed = ", ".join(sorted(set(models) - set(full)))
        lines.append(f"{route}: {len(full)}/{len(models)} models with parity at every precision"
                     f"{f' (not: {failed})' if failed else ''}; "
                     f"median conversion {np.median(secs) if secs else float('nan'):.1f} s")
    return "\n".join(lines)


def main() -> int:
    from edgekit.export.onnx_tflite import ROUTES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated subset of the zoo")
    ap.add_argument("--routes", default=",".join(ROUTES))
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--keep", type=Path, help="keep the ONNX and TFLite files in this folder")
    ap.add_argument("--table-from", type=Path, help="print the table of an earlier --json file and exit")
    args = ap.parse_args()
    if args.table_from:
        rows = [Row(**r) for r in json.loads(args.table_from.read_text())]
        print(table(rows), summary(rows), sep="\n\n")
        return 0
    only = set(args.models.split(",")) if args.models else None
    with tempfile.TemporaryDirectory(prefix="onnx_tflite_routes-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        cases = make_zoo(work, only)
        rows = []
        for case in cases:
            for route in args.routes.split(","):
                for precision in args.precisions.split(","):
                    row = evaluate(case, route, precision, work)
                    rows.append(row)
                    print(f"{row.model:20s} {route:10s} {precision}: "
                          f"{'ok' if row.converted else row.reason} {row.rel_diff} {row.top1} {row.seconds:.1f}s",
                          file=sys.stderr, flush=True)
    print("\n## ONNX → TFLite routes\n")
    print(table(rows))
    print()
    print(summary(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
