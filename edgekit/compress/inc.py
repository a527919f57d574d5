"""Intel Neural Compressor 3.x: static int8 of a PyTorch model, tuned until it fits an accuracy budget.

A side-by-side alternative to edgekit's own int8 paths (onnxruntime ``quantize_static``, litert-torch's PT2E
quantizer), for the report of the "compress within an accuracy budget" search. INC 3.x quantizes a
``torch.export`` graph with torchao's X86InductorQuantizer (PT2E); ``autotune`` tries one configuration after
another until the quantized accuracy is within the tolerance.

What comes out is not shipped. It is a ``torch.fx.GraphModule`` in QDQ form: fp32 weights with
quantize/dequantize ops around fp32 convolutions, which runs on int8 kernels only through ``torch.compile``
(inductor, oneDNN). Exports tried once on a ResNet-8 (torch 2.13, INC 3.10, torchao 0.18):

- ``torch.export.export``: works.
- ``torch.onnx.export(dynamo=True)``: writes a QDQ ONNX model; onnxruntime runs it with the same top-1 on
  digits, but its fused int8 kernels give logits up to 2.7 away from torch's (0.06 unfused) on this AVX2
  machine without VNNI: INC's weights use the full int8 range, where U8S8 products can saturate.
- ``torch.onnx.export(dynamo=False)``: fails (an exported graph refuses ``.eval()``).
- ``litert_torch.convert``: fails, "Failed to export flatbuffer: Invalid TFLite MLIR module".

With intel_extension_for_pytorch imported, INC switches to its deprecated IPEX path; this module assumes PT2E.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from edgekit.errors import ConfigError, close_matches, first_line, require

# The static int8 choices INC 3.x offers on a CPU through PT2E, in trial order: per-channel weights first (the
# accurate ones), INC's own default at the head. "kl" is INC's name for torch's HistogramObserver (it minimizes
# the L2 quantization error, not a KL divergence). Left out because the X86 quantizer rejects them: asymmetric
# weights ("Unsupported quantization_spec ... for weight") and per-channel activations (NotImplementedError).
STATIC_INT8_CHOICES: tuple[dict, ...] = (
    {"w_granularity": "per_channel", "act_dtype": "uint8", "act_sym": False, "act_algo": "minmax"},
    {"w_granularity": "per_channel", "act_dtype": "uint8", "act_sym": False, "act_algo": "kl"},
    {"w_granularity": "per_channel", "act_dtype": "uint8", "act_sym": True, "act_algo": "minmax"},
    {"w_granularity": "per_channel", "act_dtype": "uint8", "act_sym": True, "act_algo": "kl"},
    {"w_granularity": "per_channel", "act_dtype": "int8", "act_sym": True, "act_algo": "minmax"},
    {"w_granularity": "per_channel", "act_dtype": "int8", "act_sym": True, "act_algo": "kl"},
    {"w_granularity": "per_tensor", "act_dtype": "uint8", "act_sym": False, "act_algo": "minmax"},
    {"w_granularity": "per_tensor", "act_dtype": "uint8", "act_sym": False, "act_algo": "kl"},
    {"w_granularity": "per_tensor", "w_algo": "kl", "act_dtype": "uint8", "act_sym": False, "act_algo": "kl"},
)
LATENCY_MODES = ("compiled", "eager", "off")
CALIB_BATCH = 64  # samples per calibration forward pass when ``calib`` is one array
_EPS = 1e-9  # float slack when comparing accuracies against the budget


@dataclass(frozen=True)
class IncTrial:
    """One configuration INC tried and the accuracy ``eval_fn`` measured for it."""

    config: dict
    accuracy: float

    @property
    def summary(self) -> str:
        return describe(self.config)


@dataclass(frozen=True)
class IncResult:
    """What :func:`inc_autotune` measured. Every number comes from this run.

    ``model`` is the best trial's QDQ GraphModule (None if INC returned none); ``accuracy`` is measured on it
    after tuning, ``baseline`` on the float model. ``met``: ``accuracy >= baseline - budget`` with at least one int8
    weight. Latency is batch 1, one thread, float and int8 timed interleaved in torch, as ``latency`` says
    ("compiled", "eager", "eager (compile failed: ...)" or "off", then the times are NaN).
    """

    model: object | None
    accuracy: float
    baseline: float
    budget: float
    tolerable_loss: float  # the relative loss handed to INC: budget / baseline
    met: bool
    trials: tuple[IncTrial, ...]
    best_config: dict | None
    int8_weights: int  # weight tensors that go through an int8 quantize op with a calibrated scale
    float_weights: tuple[str, ...]  # weight tensors (2-D and up) left in float
    latency: str
    float_p50_ms: float
    float_p90_ms: float
    int8_p50_ms: float
    int8_p90_ms: float
    tune_s: float  # export + INC autotune (baseline, trials, re-quantizing the best)
    wall_s: float  # the whole call, latency included
    inc_version: str

    @property
    def latency_ratio(self) -> float:
        """int8 p50 / float p50 (below 1: int8 is faster)."""
        return self.int8_p50_ms / self.float_p50_ms if self.float_p50_ms > 0 else math.nan


def describe(config: dict) -> str:
    """One line for a choice, e.g. ``w int8 sym per_channel minmax | a uint8 asym per_tensor kl``."""
    c = {"w_dtype": "int8", "w_sym": True, "w_granularity": "per_channel", "w_algo": "minmax",
         "act_dtype": "uint8", "act_sym": False, "act_granularity": "per_tensor", "act_algo": "minmax", **config}
    w = f"w {c['w_dtype']} {'sym' if c['w_sym'] else 'asym'} {c['w_granularity']} {c['w_algo']}"
    a = f"a {c['act_dtype']} {'sym' if c['act_sym'] else 'asym'} {c['act_granularity']} {c['act_algo']}"
    return f"{w} | {a}"


def inc_autotune(model, example, calib, eval_fn: Callable[[object], float], *, budget: float,
                 max_trials: int | None = None, baseline: float | None = None,
                 choices: Sequence[dict] = STATIC_INT8_CHOICES, latency: str = "compiled",
                 latency_rounds: int = 10, latency_iterations: int = 50) -> IncResult:
    """Quantize ``model`` to static int8 with INC 3.x ``autotune``, trying ``choices`` until one fits ``budget``.

    Calibration always runs (INC's ``run_fn``): without it INC leaves scales at their initial values, which is
    how its dynamic quantization silently drops a CNN to 9 % accuracy. INC's criterion is relative,
    ``trial >= baseline * (1 - tolerable_loss)``; edgekit's budget is absolute, so ``tolerable_loss`` is
    ``budget / baseline``. INC returns its best trial even when none fits; ``met`` is judged here, on an
    accuracy measured again on the returned model.

    Args:
        model: a float ``torch.nn.Module`` with one tensor input; put in eval mode and exported, its weights
            untouched.
        example: an input batch (N, ...); exported with a dynamic batch dimension, its first sample is timed.
        calib: calibration inputs: one tensor or numpy array (N, ...) run in batches of 64, or an iterable of
            batches. Never the test split.
        eval_fn: ``eval_fn(model) -> top-1 accuracy`` as a fraction in [0, 1], called with the float model and
            with each quantized GraphModule.
        budget: the largest accepted drop in absolute top-1, e.g. 0.01 for one point.
        max_trials: at most this many choices are tried; all by default.
        baseline: the float accuracy if already measured (``eval_fn`` on ``model`` otherwise).
        choices: ``INT8StaticQuantConfig`` keyword sets, in trial order.
        latency: "compiled" (both models through ``torch.compile``: the only way the QDQ graph runs int8
            kernels; about 10 s of compiling), "eager" (QDQ in fp32, slower than float) or "off".
        latency_rounds, latency_iterations: timed rounds, each running float then int8 this many times.

    Returns:
        An IncResult.

    Raises:
        MissingDependency: neural-compressor is not installed (``pip install "edgekit[inc]"``).
        ConfigError: a bad budget, trial count, latency mode, empty calibration data, an accuracy outside
            [0, 1], or a model that ``torch.export`` cannot capture.

    Example:
        >>> r = inc_autotune(model, x_val[:8], x_calib, lambda m: accuracy(m, x_val, y_val), budget=0.01)
        >>> r.met, r.accuracy, r.baseline, r.latency_ratio
        (True, 0.986, 0.986, 1.21)
    """
    t_start = time.perf_counter()
    budget = _check_budget(budget)
    if max_trials is not None and (not isinstance(max_trials, int) or max_trials < 1):
        raise ConfigError(f"max_trials must be a positive integer or None, got {max_trials!r}")
    if latency not in LATENCY_MODES:
        raise ConfigError(f"latency '{latency}' is not one of {', '.join(LATENCY_MODES)}.{close_matches(latency, LATENCY_MODES)}")
    choices = _unique(choices)
    if not choices:
        raise ConfigError("choices is empty: give at least one INT8StaticQuantConfig keyword set")

    inc = require("neural_compressor", extra="inc", why="Intel Neural Compressor quantization")
    incq = require("neural_compressor.torch.quantization", extra="inc", why="Intel Neural Compressor quantization")
    inc_export = require("neural_compressor.torch.export", extra="inc", why="Intel Neural Compressor quantization")
    torch = require("torch", extra="inc", why="INC quantization")

    example = _as_tensor(torch, example)
    batches = _calibration_batches(torch, calib)
    model.eval()
    if baseline is None:
        with torch.no_grad():
            baseline = _check_accuracy(eval_fn(model), "eval_fn(float model)")
    else:
        baseline = _check_accuracy(baseline, "baseline")
    tolerable_loss = (budget + _EPS) / baseline if baseline > 0 else 1.0

    trials: list[IncTrial] = []

    def evaluate(m) -> float:
        with torch.no_grad():
            acc = float(eval_fn(m))
        if getattr(m, "is_quantized", False):  # INC's first call measures the float graph: not a trial
            cfg = next(iter(m.qconfig.values()))
            trials.append(IncTrial(config=_config_dict(cfg), accuracy=acc))
        return acc

    def run_fn(m) -> None:
        with torch.no_grad():
            for b in batches:
                m(b)

    inc_log = logging.getLogger("neural_compressor")
    level = inc_log.level
    inc_log.setLevel(logging.ERROR)  # INC logs every trial as a table of emoji; the trials are in the result
    t_tune = time.perf_counter()
    try:
        exported = _export(torch, inc_export, model, example)
        tune = incq.TuningConfig(config_set=[incq.INT8StaticQuantConfig(**c) for c in choices],
                                 tolerable_loss=tolerable_loss, max_trials=max_trials or len(choices))
        q_model = incq.autotune(exported, tune, eval_fn=evaluate, run_fn=run_fn, example_inputs=(example,))
    finally:
        inc_log.setLevel(level)
    tune_s = time.perf_counter() - t_tune

    best_config = None
    if q_model is None:
        accuracy, int8, floats = math.nan, 0, ()
    else:
        best_config = _config_dict(next(iter(q_model.qconfig.values())))
        with torch.no_grad():
            accuracy = float(eval_fn(q_model))
        report = weight_report(q_model)
        int8 = sum(1 for w in report.values() if w["dtype"] == "int8" and not w["scale_one"])
        floats = tuple(n for n, w in report.items() if w["dtype"] is None)
    # False for a NaN accuracy, and for a graph with no int8 weight (nothing quantized is no int8 result)
    met = q_model is not None and int8 > 0 and accuracy >= baseline - budget - _EPS

    times = {"float": (math.nan, math.nan), "int8": (math.nan, math.nan)}
    how = "off"
    if latency != "off" and q_model is not None:
        times, how = _latency(torch, model, q_model, example[:1], compiled=latency == "compiled",
                              rounds=latency_rounds, iterations=latency_iterations)
    return IncResult(model=q_model, accuracy=accuracy, baseline=baseline, budget=budget,
                     tolerable_loss=tolerable_loss, met=met, trials=tuple(trials),
                     best_config=best_config, int8_weights=int8,
                     float_weights=floats, latency=how, float_p50_ms=times["float"][0],
                     float_p90_ms=times["float"][1], int8_p50_ms=times["int8"][0], int8_p90_ms=times["int8"][1],
                     tune_s=tune_s, wall_s=time.perf_counter() - t_start, inc_version=str(inc.__version__))


def weight_report(q_model) -> dict[str, dict]:
    """How each weight of a PT2E GraphModule is stored at run time, read from its graph.

    Returns:
        weight name → ``{"dtype": "int8" | None (left in float), "granularity", "scale_min", "scale_max",
        "scale_one": any scale exactly 1.0 (an uncalibrated observer), "levels": distinct int values,
        "max_error_in_steps": max |w - dequant(quant(w))| / scale}``. Weights are the 2-D and larger
        tensors the graph reads with ``get_attr``.
    """
    import torch

    def fetch(target):
        obj = q_model
        for part in target.split("."):
            obj = getattr(obj, part)
        return obj

    def value(arg):
        return fetch(arg.target) if isinstance(arg, torch.fx.Node) and arg.op == "get_attr" else arg

    out = {}
    for node in q_model.graph.nodes:
        if node.op != "get_attr":
            continue
        w = fetch(node.target)
        if not isinstance(w, torch.Tensor) or w.dim() < 2:
            continue
        quant = [u for u in node.users if "quantize_per" in str(u.target) and "dequantize" not in str(u.target)]
        if not quant:
            out[node.target] = {"dtype": None}
            continue
        qnode = quant[0]
        args = [value(a) for a in qnode.args]
        with torch.no_grad():
            q = qnode.target(*args)
        per_channel = "per_channel" in str(qnode.target)
        scale = torch.as_tensor(args[1], dtype=torch.float32)
        zp = torch.as_tensor(args[2], dtype=torch.float32)
        if per_channel:
            shape = [-1] + [1] * (w.dim() - 1)
            scale_b, zp_b = scale.reshape(shape), zp.reshape(shape)
        else:
            scale_b, zp_b = scale, zp
        deq = (q.float() - zp_b) * scale_b
        out[node.target] = {
            "dtype": str(q.dtype).removeprefix("torch."),
            "granularity": "per_channel" if per_channel else "per_tensor",
            "scale_min": float(scale.min()), "scale_max": float(scale.max()),
            "scale_one": bool((scale == 1.0).any()),
            "levels": int(torch.unique(q).numel()),
            "max_error_in_steps": float(((w.detach() - deq).abs() / scale_b).max()),
        }
    return out


def _check_budget(budget) -> float:
    try:
        b = float(budget)
    except (TypeError, ValueError):
        raise ConfigError(f"budget must be a number (absolute top-1, e.g. 0.01 for one point), got {budget!r}") from None
    if not math.isfinite(b) or not 0 <= b <= 1:
        raise ConfigError(f"budget {budget!r} is outside [0, 1]: it is an absolute top-1 drop, e.g. 0.01 for one point")
    return b


def _check_accuracy(value, what: str) -> float:
    v = float(value)
    if not math.isfinite(v) or not 0 <= v <= 1:
        hint = " (a percentage? give a fraction, e.g. 0.986)" if 1 < v <= 100 else ""
        raise ConfigError(f"{what} returned {value!r}: top-1 accuracy must be a fraction in [0, 1]{hint}")
    return v


def _unique(choices: Iterable[dict]) -> list[dict]:
    # INC skips a repeated config but still counts it in max_trials, then returns None: never hand it one.
    out = []
    for c in choices:
        if dict(c) not in out:
            out.append(dict(c))
    return out


def _config_dict(cfg) -> dict:
    keys = ("w_dtype", "w_sym", "w_granularity", "w_algo", "act_dtype", "act_sym", "act_granularity", "act_algo")
    return {k: getattr(cfg, k) for k in keys if hasattr(cfg, k)}


def _as_tensor(torch, x):
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    return t.float() if not t.is_floating_point() else t


def _calibration_batches(torch, calib) -> list:
    if isinstance(calib, torch.Tensor) or hasattr(calib, "__array__"):
        x = _as_tensor(torch, calib)
        batches = [x[i: i + CALIB_BATCH] for i in range(0, len(x), CALIB_BATCH)]
    else:
        batches = [_as_tensor(torch, b) for b in calib]
    if not batches or sum(len(b) for b in batches) == 0:
        raise ConfigError("calib is empty: static int8 needs calibration samples (e.g. 256 training inputs)")
    return batches


def _export(torch, inc_export, model, example):
    x = example if len(example) > 1 else example.repeat(2, *[1] * (example.dim() - 1))  # batch 1 would be fixed
    try:
        return inc_export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as exc:  # INC logs torch.export's reason, then raises RuntimeError
        raise ConfigError(f"INC needs a model torch.export can capture; it failed: {exc}") from None


def _latency(torch, float_model, q_model, sample, *, compiled: bool, rounds: int, iterations: int,
             warmup: int = 20) -> tuple[dict, str]:
    """p50/p90 ms of float and int8 at batch 1 on one thread, interleaved round by round (as bench.compare)."""
    import numpy as np

    fns = {"float": float_model, "int8": q_model}
    how = "eager"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            if compiled:
                try:
                    from torch._inductor import config as inductor

                    with inductor.patch(freezing=True):  # weights as constants: lets inductor pack int8 weights
                        fns = {k: torch.compile(m, dynamic=False) for k, m in fns.items()}
                        for f in fns.values():
                            f(sample)  # compiles here, inside the patch
                    how = "compiled"
                except Exception as exc:  # no C++ compiler, an inductor bug: time eager and say so
                    fns = {"float": float_model, "int8": q_model}
                    how = f"eager (compile failed: {type(exc).__name__}: {first_line(exc)[:120]})"
            for f in fns.values():
                for _ in range(warmup):
                    f(sample)
            times: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(rounds):
                for k, f in fns.items():
                    for _ in range(iterations):
                        t0 = time.perf_counter()
                        f(sample)
                        times[k].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    out = {}
    for k, t in times.items():
        ms = np.asarray(t) * 1e3
        out[k] = (float(np.median(ms)), float(np.percentile(ms, 90)))
    return out, how
