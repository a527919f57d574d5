"""`edgekit compress` on public architectures (timm's model definitions): the compatibility matrix.

Each architecture goes through the command a user runs, in its own process, with a time limit:

    edgekit compress zoo_model.py:build --arg name=ARCH --weights W.pt --calib calib.npz --eval eval.npz \
        --prune 0.5 --format onnx,tflite --precision fp32,int8 --out OUT

at 3x128x128. The models are timm's definitions with seeded random initialisation (no download: nothing
pretrained). A random classifier gives near-tied logits, on which top-1 agreement measures noise, not the
export; so the backbone stays random and only the classifier is fitted (logistic regression on the pooled
features of 3,500 Fashion-MNIST training images, upscaled to 128 px and replicated to 3 channels, after the BatchNorm statistics
were estimated on 1,000 of them and the BatchNorm scales timm initialises to zero set to one, as training would
leave them): the model
then has real margins, 10 classes, and the evaluation data (1,000 test images) has labels, so the budget is
accuracy (1 point, 10 images; with 500 a single image decided resnet18's TFLite int8 cell). Calibration: 256 other training images.

Cells (each is what results.json says):

- ``prune``: pruning reached 0.5x of the MACs with a model that passed its checks (whether the distilled student
  was within the budget, and so kept, is the ``kept`` column);
- ``onnx_fp32``, ``tflite_fp32``: the artifact exists and passed edgekit's gate (elementwise against the model
  it was exported from, accuracy within budget of the original);
- ``onnx_int8``, ``tflite_int8``: an int8 artifact shipped within the budget.

Then, measured in the same run: the int8/fp32 latency ratio per runtime (1 thread, side by side) of the shipped
int8 artifact, the artifact edgekit recommends on each runtime and its ratio to fp32, and — for ``--nncf``
architectures — NNCF's ``nncf.quantize`` of the same fp32 ONNX with the same calibration samples, timed beside
edgekit's int8 on onnxruntime.

timm is installed with ``--no-deps`` (a plain install pulls a CUDA torch); the torchvision names it imports
at module level come from ``bench/timm_stub`` (placeholders). Usage:

    python bench/zoo_timm.py [--archs a,b] [--nncf a,b,c] [--timeout 900] [--out docs/zoo.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edgekit.errors import first_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "bench" / "timm_stub"
SIZE = 128
CELLS = ("prune", "onnx_fp32", "onnx_int8", "tflite_fp32", "tflite_int8")

# 61 architectures, chosen for the structures real nets have: plain and residual CNNs, grouped and depthwise
# convolutions, squeeze-excite, h-swish, re-parameterisable multi-branch blocks, dense and partial
# concatenations, multi-resolution branches, attention (ViT, hybrids, linear attention), MLP-mixers.
ARCHS = (  # the first twelve span the kinds, so that a partial run (--stop-after) still covers them
    "resnet18 mobilenetv2_100 efficientnet_b0 mobilenetv3_large_100 vit_tiny_patch16_224 convnext_atto repvgg_a0 "
    "ghostnet_100 regnetx_002 mobilevit_xxs densenet121 efficientformerv2_s0 "
    "resnet50 resnet10t resnext26ts seresnext26d_32x4d dla34 regnety_002 "
    "inception_v3 xception41 dpn68 res2net50_14w_8s cspresnet50 cspdarknet53 hrnet_w18_small gernet_s selecsls42b "
    "ese_vovnet19b_dw mobileone_s0 mobilenetv1_100 mobilenetv3_small_100 "
    "mobilenetv4_conv_small efficientnet_lite0 mnasnet_100 semnasnet_100 "
    "fbnetc_100 spnasnet_100 mixnet_s ghostnetv2_100 repghostnet_050 lcnet_050 rexnet_100 "
    "hardcorenas_a tinynet_e efficientvit_b0 efficientvit_m0 deit_tiny_patch16_224 levit_128s "
    "mobilevitv2_050 edgenext_xx_small convnextv2_atto "
    "poolformer_s12 resmlp_12_224 mixer_s16_224 fastvit_t8 tiny_vit_5m_224 coat_lite_tiny pvt_v2_b0 "
    "xcit_nano_12_p16_224 starnet_s1 hgnetv2_b0"
).split()
NNCF_DEFAULT = ("resnet18", "mobilenetv2_100", "efficientnet_b0", "mobilenetv3_large_100")

MODEL_FILE = '''"""timm model definitions for bench/zoo_timm.py (random backbone; the classifier is loaded from --weights)."""
import sys

sys.path.insert(0, {stub!r})
import timm  # noqa: E402


def build(name: str, size: int = {size}, num_classes: int = 10):
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, img_size=size)
    except TypeError:
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
'''


def cpu_name() -> str:
    text = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    vnni = "AVX512-VNNI" if "avx512_vnni" in flags else ("AVX-VNNI" if "avx_vnni" in flags else "no VNNI (AVX2)")
    return f"{model}, {os.cpu_count()} cores, {vnni}"


def images(x: np.ndarray) -> np.ndarray:
    """Fashion-MNIST (N, 28, 28) uint8 → (N, 3, 128, 128) float32, bilinear, scaled to about [-2, 2]."""
    import torch

    t = torch.from_numpy(x[:, None].astype(np.float32) / 255.0)
    t = torch.nn.functional.interpolate(t, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return ((t.repeat(1, 3, 1, 1) - 0.5) / 0.25).numpy().astype(np.float32)


def make_data(work: Path) -> dict:
    from edgekit.data import fashion_mnist

    tr_x, tr_y, te_x, te_y, _, _ = fashion_mnist.load(None)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(tr_x))
    fit, cal = order[:3500], order[3500:3756]
    ev = rng.permutation(len(te_x))[:1000]
    paths = {"fit": work / "fit.npz", "calib": work / "calib.npz", "eval": work / "eval.npz"}
    for key, xs, ys in (("fit", tr_x[fit], tr_y[fit]), ("calib", tr_x[cal], tr_y[cal]), ("eval", te_x[ev], te_y[ev])):
        if not paths[key].is_file():
            np.savez(paths[key], x=images(xs), y=ys)
    return paths


def fit_head(name: str, model_file: Path, fit_npz: Path, weights: Path) -> dict:
    """Seeded random backbone; the classifier fitted by logistic regression on its pooled features."""
    import importlib.util

    import torch
    from sklearn.linear_model import LogisticRegression

    spec = importlib.util.spec_from_file_location("zoo_model", model_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from edgekit.compress.prune_job import recalibrate_batchnorm

    torch.manual_seed(0)
    model = mod.build(name).eval()
    with np.load(fit_npz) as z:
        x, y = z["x"], z["y"]
    # A random net's BatchNorm statistics (mean 0, variance 1) leave its activations unnormalised, with ranges
    # no trained net has; int8 then measures that, not the export. Estimated on the data, as training sets them.
    # timm zero-initialises the last BatchNorm of each residual branch ("zero_init_last"): a random net's branches
    # then add nothing and converters rightly fold them away (a ResNet-18 became 4 convolutions). No trained net is
    # like that: those scales start at 1 here.
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.any():
            m.weight.data.fill_(1.0)
    recalibrate_batchnorm(model, torch.from_numpy(x[:1000]))  # the first 1,000 fitting images
    with torch.no_grad():
        feats = np.concatenate([model.forward_head(model.forward_features(torch.from_numpy(x[i:i + 50])),
                                                   pre_logits=True).reshape(len(x[i:i + 50]), -1).numpy()
                                for i in range(0, len(x), 50)])
    # Standardised features, but a feature that barely varies (a dead channel) must not get a huge weight: real
    # classifiers do not have them, and int8 would then spend its whole range on one input of the last layer.
    mean, std = feats.mean(0), feats.std(0)
    live = std > 1e-3 * std.max()
    std = np.maximum(std, np.percentile(std[live], 10) if live.any() else 1.0)
    z = ((feats - mean) / std)[:, live]
    n_val = len(z) // 7  # the regularisation that generalises best on held-back fitting images
    fits = [LogisticRegression(max_iter=1000, C=c).fit(z[n_val:], y[n_val:]) for c in (0.01, 0.1, 1.0)]
    best = max(fits, key=lambda f: f.score(z[:n_val], y[:n_val]))
    clf = LogisticRegression(max_iter=1000, C=best.C).fit(z, y)
    clf.coef_ = _spread(clf.coef_, live)
    heads = model.get_classifier()
    heads = heads if isinstance(heads, tuple | list) else (heads,)
    w = torch.from_numpy((clf.coef_ / std).astype(np.float32))
    b = torch.from_numpy((clf.intercept_ - (clf.coef_ / std) @ mean).astype(np.float32))
    fitted = 0
    for h in heads:
        if not isinstance(h, torch.nn.Linear):  # a normalised head (LeViT's BatchNorm1d + Linear): BN as identity
            lin = [m for m in h.modules() if isinstance(m, torch.nn.Linear)]
            if len(lin) == 1:
                for m in h.modules():
                    if isinstance(m, torch.nn.BatchNorm1d):
                        m.reset_parameters()
                        m.running_var.fill_(1.0 - m.eps)
                h = lin[0]
        # a 1x1 convolution on the pooled features (DPN, DLA) is a Linear layer in another shape
        kernel = w[:, :, None, None] if isinstance(h, torch.nn.Conv2d) and h.groups == 1 else w
        if isinstance(h, torch.nn.Linear | torch.nn.Conv2d) and tuple(h.weight.shape) == tuple(kernel.shape):
            h.weight.data.copy_(kernel / len(heads))
            h.bias.data.copy_(b / len(heads))
            fitted += 1
    torch.save(model.state_dict(), weights)
    return {"head": "fitted" if fitted == len(heads) else "random (the classifier is neither a Linear nor a 1x1 convolution)",
            "fit_accuracy": float(best.score(z[:n_val], y[:n_val])), "C": best.C, "features": int(feats.shape[1]),
            "params": int(sum(p.numel() for p in model.parameters())),
            "noise_agreement": noise_agreement(model, x[:n_val][:300])}


def noise_agreement(model, x: np.ndarray) -> float:
    """Top-1 agreement of the float model with itself when its inputs move by a uniform ±half step of an 8-bit
    grid over their range: the least noise any int8 artifact adds. A random deep backbone can amplify it until
    its decisions are unrelated to the unperturbed ones; where this is far below 99 %, whether an int8 cell
    passes an accuracy budget is chance, not the quantization (trained nets are not like that)."""
    import torch

    from edgekit.compress.floors import half_step_noise

    noisy = x + half_step_noise(x.shape, x, seed=1)[0]
    with torch.no_grad():
        a = np.concatenate([model(torch.from_numpy(x[i:i + 50])).numpy() for i in range(0, len(x), 50)])
        b = np.concatenate([model(torch.from_numpy(noisy[i:i + 50])).numpy() for i in range(0, len(x), 50)])
    return float((a.argmax(1) == b.argmax(1)).mean())


def _spread(coef: np.ndarray, live: np.ndarray) -> np.ndarray:
    full = np.zeros((coef.shape[0], len(live)))
    full[:, live] = coef
    return full


def cells_of(res: dict) -> dict:
    """Pass/fail and a reason for each cell, read off results.json."""
    by_name = {e["name"]: e for e in res["artifacts"]}
    skipped = {s["name"]: s["skipped"] for s in res.get("skipped", [])}
    out = {}
    p = res["stages"].get("prune", {})
    if "macs_ratio" in p:
        out["prune"] = {"passed": True, "summary": f"{p['macs_ratio']:.2f}x MACs ({p['strategy']}), "
                                                   f"{'kept' if p['kept'] else 'not kept: ' + p['verdict']}",
                        "kept": p["kept"]}
    else:
        out["prune"] = {"passed": False, "summary": p.get("skipped", "not run"), "kept": False}
    for cell in CELLS[1:]:
        e = by_name.get(cell)
        fmt = cell.split("_")[0]
        if cell in skipped:
            out[cell] = {"passed": False, "summary": skipped[cell]}
        elif e is None:
            why = res["stages"].get("int8_search" if fmt == "onnx" else "tflite_int8_search", {}).get("why", "missing")
            out[cell] = {"passed": False, "summary": why}
        else:
            ok = e["passed"] and "rejected" not in e["path"]
            acc = f"acc {e['accuracy']:.3f}" if e["accuracy"] is not None else f"agree {e['top1_agreement']:.3f}"
            winner = res["stages"].get("int8_search" if fmt == "onnx" else "tflite_int8_search", {}).get("shipped")
            if cell.endswith("int8") and winner:  # which candidate passed: the next person's first question
                acc += f" ({winner})"
            out[cell] = {"passed": ok, "summary": acc if ok else e["verdict"]}
    return out


def speed_of(res: dict) -> dict:
    """int8/fp32 p50 per runtime (1 thread), and the recommended artifact's ratio to fp32."""
    out = {}
    for e in res["artifacts"]:
        if e["precision"] == "int8" and e.get("speed_vs_fp32") and "rejected" not in e["path"]:
            for rt, by_t in e["speed_vs_fp32"].items():
                out[f"int8_vs_fp32_{rt}"] = min(by_t.values())
    for rt, r in (res.get("recommended") or {}).items():
        out[f"recommended_{rt}"] = r["artifact"]
        out[f"recommended_speedup_{rt}"] = r["speedup_vs_fp32"]
    return out


def nncf_row(out: Path, calib_npz: Path, eval_npz: Path) -> dict:
    """NNCF's post-training int8 of the same fp32 ONNX, timed beside edgekit's int8 and the fp32 on onnxruntime."""
    import nncf
    import onnx

    from edgekit.device.bench import compare
    from edgekit.device.runtime import open_session

    fp32, ours = out / "model_fp32.onnx", out / "model_int8.onnx"
    if not fp32.is_file() or not ours.is_file():
        return {"skipped": "edgekit shipped no ONNX int8 to compare with"}
    model = onnx.load(str(fp32))
    name = model.graph.input[0].name
    with np.load(calib_npz) as z:
        calib = z["x"]
    with np.load(eval_npz) as z:
        x, y = z["x"], z["y"]
    t0 = time.perf_counter()
    q = nncf.quantize(model, nncf.Dataset([calib[i:i + 1] for i in range(len(calib))], lambda s: {name: s}),
                      subset_size=len(calib))
    seconds = time.perf_counter() - t0
    path = out / "nncf_int8.onnx"
    onnx.save(q, str(path))
    acc = {}
    for label, p in (("fp32", fp32), ("edgekit", ours), ("nncf", path)):
        with open_session(p, runtime="onnxruntime", threads=2) as s:
            acc[label] = float((s.run(x).argmax(1) == y).mean())
    t = compare({"fp32": (str(fp32), "onnxruntime"), "edgekit": (str(ours), "onnxruntime"),
                 "nncf": (str(path), "onnxruntime")}, threads=1, rounds=6, iterations=30, sample=x[:1])
    return {"nncf_version": nncf.__version__, "seconds": seconds, "accuracy": acc,
            "p50_ms": {k: v["p50_ms"] for k, v in t.items()},
            "edgekit_vs_fp32": t["edgekit"]["p50_ms"] / t["fp32"]["p50_ms"],
            "nncf_vs_fp32": t["nncf"]["p50_ms"] / t["fp32"]["p50_ms"]}


def run_arch(name: str, work: Path, data: dict, timeout: float, nncf: bool, keep: bool) -> dict:
    row: dict = {"name": name}
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    model_file = work / "zoo_model.py"
    weights = folder / "weights.pt"
    try:
        row.update(fit_head(name, model_file, data["fit"], weights))
    except Exception as exc:  # the definition itself fails at this size: not edgekit's cell
        row["error"] = f"model does not build at {SIZE} px: {type(exc).__name__}: {first_line(exc, 160)}"
        return row
    out = folder / "out"
    cmd = [sys.executable, "-m", "edgekit", "compress", f"{model_file}:build", "--arg", f"name={name}",
           "--weights", str(weights), "--calib", str(data["calib"]), "--eval", str(data["eval"]), "--prune", "0.5",
           "--format", "onnx,tflite", "--precision", "fp32,int8", "--out", str(out)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        row["rc"], row["stderr_tail"] = proc.returncode, proc.stderr.strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        row["rc"], row["stderr_tail"] = "timeout", [f"no result after {timeout:.0f} s"]
    row["seconds"] = round(time.perf_counter() - t0, 1)
    (folder / "compress.log").write_text(" ".join(cmd) + "\n")
    results = out / "results.json"
    if row["rc"] in (0, 1) and results.is_file():
        res = json.loads(results.read_text())
        row["cells"] = cells_of(res)
        row.update(speed_of(res))
        if nncf:
            try:
                row["nncf"] = nncf_row(out, data["calib"], data["eval"])
            except Exception as exc:
                row["nncf"] = {"skipped": f"{type(exc).__name__}: {first_line(exc, 160)}"}
    else:
        why = "hang (killed at the time limit)" if row["rc"] == "timeout" else f"crash (exit {row['rc']})"
        row["cells"] = {c: {"passed": False, "summary": why} for c in CELLS}
    if not keep:
        for f in out.glob("**/*"):
            if f.suffix in (".onnx", ".tflite") and f.is_file():
                f.unlink()
    return row


def _commit() -> str:
    """The edgekit commit measured (with "+" when the work tree had changes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=ROOT, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (head or "?") + ("+" if dirty else "")


def _ratio(r: dict, key: str) -> str:
    return f"{r[key]:.2f}x" if r.get(key) else "—"


def markdown(rows: list[dict], meta: dict) -> str:
    dates = sorted({r.get("date", meta["date"]) for r in rows}) or [meta["date"]]
    cpus = sorted({r.get("cpu", meta["cpu"]) for r in rows}) or [meta["cpu"]]
    commits = sorted({r.get("commit", "?") for r in rows})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    lines = [f"# edgekit compress on {len(rows)} public architectures (timm {meta['timm']})", "",
             f"{when}, {'; '.join(cpus)}; edgekit {', '.join(commits)} (each row's own in "
             f"docs/zoo-rows.jsonl). Command per architecture (3x128x128, time limit "
             f"{meta['timeout']:.0f} s): `{meta['command']}`.", "",
             "Random backbones (seeded), classifier fitted on Fashion-MNIST features, labelled evaluation: the budget "
             "is 1 point of accuracy. Cells are what each run's results.json says (see bench/zoo_timm.py). "
             "Latency: 1 thread, median, int8 timed side by side with fp32 in the same run.", ""]
    head = "| model | params | head acc (held back) | fp32 vs itself, ½-step input noise | " + " | ".join(CELLS) + \
           " | kept | ORT int8/fp32 | LiteRT int8/fp32 | recommended (ORT; LiteRT) | s |"
    lines += [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | | | | " + " | ".join(["n/a"] * len(CELLS)) + f" | | | | {r['error']} | |")
            continue
        c = r["cells"]
        cells = " | ".join(("ok" if c[k]["passed"] else "FAIL") for k in CELLS)
        rec = f"{r.get('recommended_onnxruntime', '—')} {_ratio(r, 'recommended_speedup_onnxruntime')}; " \
              f"{r.get('recommended_litert', '—')} {_ratio(r, 'recommended_speedup_litert')}"
        noise = f"{r['noise_agreement']:.1%}" if r.get("noise_agreement") is not None else "—"
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.1f}M | {r['fit_accuracy']:.2f} | {noise} | {cells} | "
                     f"{'yes' if c['prune'].get('kept') else 'no'} | {_ratio(r, 'int8_vs_fp32_onnxruntime')} | "
                     f"{_ratio(r, 'int8_vs_fp32_litert')} | {rec} | {r['seconds']:.0f} |")
    judged = [r for r in rows if "cells" in r]
    passed = sum(c["passed"] for r in judged for c in r["cells"].values())
    total = sum(len(r["cells"]) for r in judged)
    crashes = sum(1 for r in judged if r["rc"] not in (0, 1, "timeout"))
    hangs = sum(1 for r in judged if r["rc"] == "timeout")
    over = sum(1 for r in judged if r["seconds"] > 600)
    speedups = {rt: [r[f"recommended_speedup_{rt}"] for r in judged if r.get(f"recommended_speedup_{rt}")]
                for rt in ("onnxruntime", "litert")}
    int8 = {rt: [1 / r[f"int8_vs_fp32_{rt}"] for r in judged if r.get(f"int8_vs_fp32_{rt}")]
            for rt in ("onnxruntime", "litert")}
    slower = sum(1 for r in judged for rt in ("onnxruntime", "litert")
                 if (r.get(f"recommended_speedup_{rt}") or 1) < 1 / 1.05)
    lines += ["", f"**{passed}/{total} cells pass ({passed / max(1, total):.1%})**; {crashes} crashes, {hangs} hangs; "
              f"{over} architectures over 10 minutes; recommended artifact slower than fp32 (beyond 5 % noise): "
              f"{slower}.", ""]
    calm = [r for r in judged if (r.get("noise_agreement") or 0) >= 0.99]
    wild = [r for r in judged if r.get("noise_agreement") is not None and r["noise_agreement"] < 0.99]
    for label, group in (("keeps >= 99 %", calm), ("keeps < 99 %", wild)):
        cells = [r["cells"][k]["passed"] for r in group for k in ("onnx_int8", "tflite_int8")]
        if cells:
            lines.append(f"- int8 cells where the fp32 model {label} of its decisions under ½-step input noise: "
                         f"{sum(cells)}/{len(cells)} pass ({len(group)} architectures)")
    lines.append("")
    for rt, v in int8.items():
        if v:
            lines.append(f"- {rt}: median int8 speed-up over fp32 of the shipped int8 artifacts "
                         f"{np.median(v):.2f}x ({len(v)} architectures); median speed-up of the recommended "
                         f"artifact {np.median(speedups[rt]):.2f}x")
    nn = [r for r in judged if isinstance(r.get("nncf"), dict) and "p50_ms" in r["nncf"]]
    if nn:
        lines += ["", "## NNCF beside edgekit (same fp32 ONNX, same 256 calibration samples, onnxruntime, 1 thread)",
                  "", "| model | fp32 ms | edgekit int8 ms | NNCF int8 ms | acc fp32 / edgekit / NNCF |",
                  "| --- | --- | --- | --- | --- |"]
        for r in nn:
            n = r["nncf"]
            lines.append(f"| {r['name']} | {n['p50_ms']['fp32']:.3f} | {n['p50_ms']['edgekit']:.3f} "
                         f"({n['edgekit_vs_fp32']:.2f}x) | {n['p50_ms']['nncf']:.3f} ({n['nncf_vs_fp32']:.2f}x) | "
                         f"{n['accuracy']['fp32']:.3f} / {n['accuracy']['edgekit']:.3f} / {n['accuracy']['nncf']:.3f} |")
    if meta.get("not_run"):
        lines += ["", f"Not run in this session (--stop-after): {len(meta['not_run'])} architectures, "
                      f"{', '.join(meta['not_run'])}."]
    fails = [(r["name"], k, c["summary"]) for r in judged for k, c in r["cells"].items() if not c["passed"]]
    if fails:
        lines += ["", "## Failing cells and their reasons", ""]
        lines += [f"- {n} / {k}: {re.sub(r'[|]', '/', s)[:300]}" for n, k, s in fails]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", help="comma-separated subset (default: all 61)")
    ap.add_argument("--nncf", default=",".join(NNCF_DEFAULT), help="architectures also quantized with NNCF")
    ap.add_argument("--timeout", type=float, default=900, help="seconds before a compress counts as a hang")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "zoo_timm")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "zoo.md")
    ap.add_argument("--rows", type=Path, default=ROOT / "docs" / "zoo-rows.jsonl",
                    help="one JSON line per measured architecture; committed, so a later session resumes the matrix")
    ap.add_argument("--fresh", action="store_true", help="measure every architecture again (new rows file)")
    ap.add_argument("--keep", action="store_true", help="keep the artifacts")
    ap.add_argument("--stop-after", type=float, metavar="MIN",
                    help="start no architecture after this many minutes; the table lists the rest as not run")
    args = ap.parse_args(argv)
    try:
        import timm  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(STUB))
    sys.path.insert(0, str(STUB))
    import timm

    names = args.archs.split(",") if args.archs else list(ARCHS)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "zoo_model.py").write_text(MODEL_FILE.format(stub=str(STUB), size=SIZE))
    data = make_data(args.work)
    rows_file = args.rows
    if args.fresh and rows_file.is_file():
        rows_file.unlink()
    done = {}
    if rows_file.is_file():  # resume: architectures measured before (by this edgekit or an earlier one) are kept
        for line in rows_file.read_text().splitlines():
            r = json.loads(line)
            done[r["name"]] = r
    rows, start, not_run = [], time.monotonic(), []
    for name in names:
        if name in done:
            rows.append(done[name])
            continue
        if args.stop_after is not None and time.monotonic() - start > args.stop_after * 60:
            not_run.append(name)
            continue
        print(f"[zoo] {name} ...", file=sys.stderr, flush=True)
        row = run_arch(name, args.work, data, args.timeout, name in args.nncf.split(","), args.keep)
        row.update(date=time.strftime("%Y-%m-%d"), commit=_commit(), cpu=cpu_name())
        rows.append(row)
        with open(rows_file, "a") as f:
            f.write(json.dumps(row) + "\n")
        cells = row.get("cells", {})
        print(f"[zoo] {name}: " + " ".join(f"{k}={'ok' if v['passed'] else 'FAIL'}" for k, v in cells.items())
              + f" ({row.get('seconds', 0):.0f} s)", file=sys.stderr, flush=True)
    meta = {"not_run": not_run, "timm": timm.__version__, "date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(), "timeout": args.timeout,
            "command": "edgekit compress zoo_model.py:build --arg name=ARCH --weights W.pt --calib calib.npz --eval "
                       "eval.npz --prune 0.5 --format onnx,tflite --precision fp32,int8 --out OUT"}
    text = markdown(rows, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    (args.work / "zoo.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
