"""Structured pruning alone (``edgekit.compress.prune.prune_any`` to 0.5x of the MACs) on architectures that are
*not* in the compatibility matrix (bench/zoo_timm.py): a cheap look at what a new user's model meets.

Each architecture runs in its own process with a time limit (a crash or a hang costs that row only), at
3x128x128, seeded random init (timm's definitions, nothing downloaded; see bench/zoo_timm.py for the
``--no-deps`` install and the torchvision placeholders). Pruning gets 150 s, as a 540 s ``edgekit compress``
gives its pruning stage. A row records the strategy that worked, the MACs reached, the layers left alone, the
seconds, or why every strategy failed. A model that does not build at 128 px is not edgekit's row.

    python bench/prune_sweep.py [--archs a,b] [--out docs/prune-sweep.md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "bench" / "timm_stub"

# Not in bench/zoo_timm.py's matrix: more attention hybrids, selective kernels, split attention, global context,
# normalizer-free, self-attention CNNs, windowed and pooled transformers, an LSTM mixer.
ARCHS = ("skresnet18 resnest14d ecaresnet26t cs3darknet_s vovnet39a gcresnet33ts lambda_resnet26t botnet26t_256 "
         "tresnet_m repvit_m1 fastvit_s12 mobilenetv4_hybrid_medium coat_lite_tiny xcit_nano_12_p16_224 "
         "cait_xxs24_224 twins_svt_small swin_tiny_patch4_window7_224 visformer_tiny inception_next_tiny davit_tiny "
         "gcvit_xxtiny maxvit_nano_rw_256 coatnet_nano_rw_224 nfnet_l0 regnetz_b16 efficientnetv2_rw_t "
         "sequencer2d_s volo_d1_224 nest_tiny rdnet_tiny hiera_tiny_224 ghostnetv3_100 hgnet_tiny dla46_c "
         "inception_v4 resnetv2_50 nf_resnet26 mobilevitv2_075 efficientvit_m1 tinynet_a fbnetv3_b mobileone_s1 "
         "convmixer_768_32 pit_ti_224 vit_small_patch16_224 mvitv2_tiny efficientformerv2_s1 shvit_s1 rexnetr_100 "
         "cspresnext50 darknet53").split()

CHILD = r'''
import json, sys, time
sys.path.insert(0, {stub!r}); sys.path.insert(0, {root!r})
import torch, timm
from edgekit.compress import prune
name = {name!r}
torch.manual_seed(0)
try:
    try:
        m = timm.create_model(name, pretrained=False, num_classes=10, img_size=128)
    except TypeError:
        m = timm.create_model(name, pretrained=False, num_classes=10)
    m.eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        m(x)
except Exception as exc:
    print(json.dumps({{"name": name, "build": f"{{type(exc).__name__}}: {{(str(exc).splitlines() or ['(no message)'])[0][:120]}}"}}))
    sys.exit(0)
t = time.monotonic()
pm, res, att = prune.prune_any(m, x, macs_ratio=0.5, deadline=time.monotonic() + {seconds}, log=lambda s: None)
print(json.dumps({{"name": name, "ok": res is not None, "strategy": res.strategy if res else None,
                  "ratio": round(res.macs_ratio, 3) if res else None,
                  "left_alone": len(res.left_alone) if res else None, "seconds": round(time.monotonic() - t, 1),
                  "why": "" if res else "; ".join(f"{{a.strategy}}: {{a.detail}}" for a in att)}}))
'''


def run(name: str, seconds: float, timeout: float) -> dict:
    code = CHILD.format(stub=str(STUB), root=str(ROOT), name=name, seconds=seconds)
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"name": name, "ok": False, "why": f"no result after {timeout:.0f} s (hang)", "seconds": timeout}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:160]
        return {"name": name, "ok": False, "why": f"process ended with {proc.returncode}: {tail}",
                "seconds": round(time.monotonic() - t0, 1)}
    return json.loads(lines[-1])


def table(rows: list[dict], commit: str, cpu: str) -> str:
    built = [r for r in rows if "build" not in r]
    ok = sum(1 for r in built if r.get("ok"))
    out = [f"# Pruning alone on {len(built)} architectures outside the matrix (timm)", "",
           f"{time.strftime('%Y-%m-%d')}, {cpu}, edgekit {commit}. `prune_any(model, x, macs_ratio=0.5)` at 3x128x128, "
           "150 s for pruning, each architecture in its own process (`python bench/prune_sweep.py`). Random init: "
           "this measures whether pruning works and reaches the target, not accuracy.", "",
           f"**{ok}/{len(built)} reached 0.5x of the MACs with a model that passed its checks**; 0 crashes, "
           f"{sum(1 for r in built if 'hang' in r.get('why', ''))} hangs.", "",
           "| model | result | strategy | MACs | layers left alone | s |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "build" in r:
            out.append(f"| {r['name']} | does not build at 128 px ({r['build']}) | | | | |")
        elif r.get("ok"):
            out.append(f"| {r['name']} | ok | {r['strategy']} | {r['ratio']:.2f}x | {r['left_alone']} | "
                       f"{r['seconds']:.0f} |")
        else:
            why = r.get("why", "").replace("|", "/")[:300]
            out.append(f"| {r['name']} | FAIL: {why} | | | | {r.get('seconds', 0):.0f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", help="comma-separated timm names (default: the list in this file)")
    ap.add_argument("--seconds", type=float, default=150.0, help="time for pruning per architecture")
    ap.add_argument("--out", default=str(ROOT / "docs" / "prune-sweep.md"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from zoo_timm import cpu_name

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                            check=False).stdout.strip() or "?"
    rows = []
    for name in args.archs.split(",") if args.archs else ARCHS:
        rows.append(run(name, args.seconds, timeout=args.seconds * 2 + 120))
        r = rows[-1]
        result = ("does not build" if "build" in r else f"{r['ratio']:.2f}x ({r['strategy']})" if r.get("ok")
                  else "FAIL")
        print(f"[prune-sweep] {name}: {result}", file=sys.stderr, flush=True)
    Path(args.out).write_text(table(rows, commit, cpu_name()))
    print(args.out)


if __name__ == "__main__":
    main()
