# ruff: noqa: E402, E741  (a measurement script: imports after the path set-up, GPTQ's usual letters)
"""Weights-only int8 per channel on a zoo architecture: round-to-nearest against GPTQ (torch, measured).

A measurement, not part of edgekit: on the zoo's random backbones many int8 cells fail the 1-point budget on
weight rounding alone (the weight floor). This rounds every Conv/Linear weight to the per-channel int8 grid
(activations float) two ways -- nearest, and GPTQ (error feedback through each layer's input Hessian, from 128
calibration images, 64 positions per image) -- and prints accuracy and top-1 agreement with fp32 on the 1,000
labelled evaluation images. Needs a zoo run first (runs/zoo_timm: weights.pt, calib.npz, eval.npz).

    python bench/gptq_weights.py ARCH [LEVELS=127]
"""

import copy
import sys
import time
from pathlib import Path

ZOO = Path(__file__).resolve().parents[1] / "runs" / "zoo_timm"
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(ZOO))
import zoo_model

torch.set_num_threads(1)
name = sys.argv[1]
levels = int(sys.argv[2]) if len(sys.argv) > 2 else 127
m = zoo_model.build(name)
m.load_state_dict(torch.load(ZOO / name / "weights.pt", weights_only=True))
m.eval()
ev = np.load(ZOO / "eval.npz")
cal = np.load(ZOO / "calib.npz")
xe, ye = torch.from_numpy(ev["x"]), ev["y"]
xc = torch.from_numpy(cal[list(cal.keys())[0]][:128])


def acc(model):
    with torch.no_grad():
        out = torch.cat([model(xe[i : i + 100]) for i in range(0, len(xe), 100)])
    return (out.argmax(1).numpy() == ye).mean(), out


a0, ref = acc(m)
print("fp32", a0, flush=True)


def qgrid(w):  # per output channel symmetric
    s = w.abs().amax(1, keepdim=True).clamp_min(1e-12) / levels
    return s


def rtn(w):
    s = qgrid(w)
    return torch.round(w / s).clamp(-levels, levels) * s


layers = [mod for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]


def apply(fn):
    mm = copy.deepcopy(m)
    ls = [mod for mod in mm.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    for l, o in zip(ls, layers, strict=True):
        l.weight.data = fn(o)
    return mm


t = time.time()
mr = apply(lambda l: rtn(l.weight.data.reshape(l.weight.shape[0], -1)).reshape(l.weight.shape))
ar, outr = acc(mr)
print("rtn", ar, "agree", (outr.argmax(1) == ref.argmax(1)).float().mean().item(), time.time() - t, flush=True)
# Hessians from calibration inputs
H = {}


def hook(mod, inp, out):
    x = inp[0].detach()
    if isinstance(mod, nn.Conv2d):
        g = mod.groups
        cols = F.unfold(
            x, mod.kernel_size, dilation=mod.dilation, padding=mod.padding, stride=mod.stride
        )  # N, C*k*k, L
        N, D, L = cols.shape
        idx = torch.randperm(L)[: min(L, 64)]
        cols = cols[:, :, idx].permute(0, 2, 1).reshape(-1, D)  # samples x D
        cols = cols.reshape(-1, g, D // g)
        h = torch.einsum("ngd,nge->gde", cols.double(), cols.double())
    else:
        x2 = x.reshape(-1, x.shape[-1]).double()
        h = (x2.T @ x2)[None]
        N = x2.shape[0]
    acc_h, n = H.get(mod, (0, 0))
    H[mod] = (acc_h + h, n + cols.shape[0] if isinstance(mod, nn.Conv2d) else n + N)


hs = [l.register_forward_hook(hook) for l in layers]
t = time.time()
with torch.no_grad():
    for i in range(0, len(xc), 32):
        m(xc[i : i + 32])
for h in hs:
    h.remove()
print("hessians", time.time() - t, flush=True)


def gptq_w(w, h, damp=0.01, block=128):
    # w: O x D (one group), h: D x D
    w = w.double().clone()
    O, D = w.shape
    s = w.abs().amax(1, keepdim=True).clamp_min(1e-12) / levels
    h = h.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.diag(h).mean() * torch.eye(D, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros_like(w)
    for i1 in range(0, D, block):
        i2 = min(i1 + block, D)
        w1 = w[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = w1[:, i]
            d = hinv1[i, i]
            qc = torch.round(col / s[:, 0]).clamp(-levels, levels) * s[:, 0]
            q1[:, i] = qc
            e = (col - qc) / d
            w1[:, i:] -= e[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = e
        q[:, i1:i2] = q1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return q.float()


def gq(l):
    w = l.weight.data
    O = w.shape[0]
    h, n = H[l]
    h = h / n
    if isinstance(l, nn.Conv2d):
        g = l.groups
        wf = w.reshape(g, O // g, -1)
        return torch.stack([gptq_w(wf[i], h[i]) for i in range(g)]).reshape(w.shape)
    return gptq_w(w, h[0]).reshape(w.shape)


t = time.time()
mg = apply(gq)
print("gptq time", time.time() - t, flush=True)
ag, outg = acc(mg)
print("gptq", ag, "agree", (outg.argmax(1) == ref.argmax(1)).float().mean().item(), flush=True)
