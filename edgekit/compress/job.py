"""``edgekit compress``: a user's own model in, verified and benchmarked compact artifacts out.

Follow :func:`compress` from top to bottom:

1. read the model (:mod:`edgekit.compress.source`) and the data (:mod:`edgekit.compress.samples`), check
   they fit, and warn about calibration data that cannot represent the model's inputs;
2. take the original's outputs on the evaluation data: the reference every artifact is compared with;
3. prune and distil (PyTorch models, ``--prune``), kept only when within the budget;
4. write fp32, fp16 and int8 ONNX/TFLite; int8 goes through the budget search (:mod:`.search`);
5. verify every artifact on the evaluation data, time them side by side, diagnose them (:mod:`.diagnose`);
6. write results.json, report.md and pareto.png as a recipe run does, plus the search and diagnostics.

Nothing that misses the budget ships: it is kept under ``rejected/`` and the command exits 1.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edgekit import rundir
from edgekit.artifact import Artifact, model_metadata
from edgekit.compress import diagnose, samples, search, source
from edgekit.errors import CheckFailed, ConfigError, DataError, EdgekitError, describe, first_line

FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8")
FEW_CALIB = 32  # fewer calibration samples than this gets a warning


@dataclass
class Options:
    """What ``edgekit compress`` was asked (see ``edgekit compress --help``)."""

    model: str
    calib: str
    out: Path
    eval: str | None = None
    weights: str | None = None
    args: dict = field(default_factory=dict)
    input_shape: list[int] | None = None
    formats: tuple[str, ...] = FORMATS
    precisions: tuple[str, ...] = PRECISIONS
    prune: float | None = None
    budget: float = 0.01
    pixels: samples.Pixels = samples.Pixels()
    labels: list[str] | None = None
    calib_samples: int = search.MAX_CALIB
    eval_samples: int | None = 2000
    threads: tuple[int, ...] = (1,)
    inc: bool = True
    distill_epochs: int = 3


def log(msg: str) -> None:
    print(f"[edgekit compress] {msg}", flush=True)


def compress(opts: Options) -> Path:
    """Run the whole job; returns the output folder. Raises CheckFailed (exit 1) when a gate fails."""
    _check_options(opts)
    out = _fresh_out(opts.out)
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    src = _open_source(opts)
    calib = samples.load(opts.calib, input_shape=_shape_hint(src, opts), pixels=opts.pixels, metadata=src.metadata,
                         split="train", limit=opts.calib_samples)
    source.fix_input_shape(src, calib.x.shape[1:])
    ev = _eval_samples(opts, src, calib)
    warnings = calibration_warnings(calib.x, ev.x)
    for w in warnings:
        log(f"WARNING: {w}")
    source.to_onnx(src, work)
    labels = opts.labels or src.labels or ev.labels or calib.labels
    reference = _reference_outputs(src, ev.x)
    _check_labels(ev, reference, labels)
    baseline = float((reference.argmax(1) == ev.y).mean()) if ev.y is not None else None
    gate = search.Gate(opts.budget, baseline)
    log(f"{src.spec}: input {src.input_shape}, {len(calib.x)} calibration and {len(ev.x)} evaluation samples"
        + (f", original accuracy {baseline:.4f}" if baseline is not None else ", no labels: agreement is the metric"))

    meta = model_metadata(labels=list(labels) if labels else [str(i) for i in range(reference.shape[1])],
                          input_shape=list(src.input_shape), preprocess=_preprocess_of(src, calib), precision="fp32",
                          source=src.spec, input_name=src.input_name)
    if len(src.input_shape) == 4 and samples.image_layout(src.input_shape) == "NHWC":
        meta["input"]["layout"] = "NHWC"

    stages: dict = {}
    model_src, fp32_onnx = src, _opset_at_least(src.onnx_path, 13, work, stages)
    if opts.prune:
        pruned = _prune(src, calib, ev, gate, opts, work, stages)
        if pruned is not None:
            model_src, fp32_onnx = pruned

    artifacts, candidates, skipped, winner = [], [], [], None
    ref_ops = diagnose.onnx_ops(src.onnx_path)
    for fmt in opts.formats:
        for precision in opts.precisions:
            path = out / f"model_{precision}.{fmt}"
            t0 = time.perf_counter()
            try:
                if fmt == "onnx" and precision == "int8":
                    found = search.onnx_int8(fp32_onnx, work / "candidates", calib=calib.x, x=ev.x, y=ev.y,
                                             reference=reference, gate=gate, metadata=meta, log=log)
                    candidates += found
                    _time_candidates(found, fp32_onnx, ev.x, opts)
                    winner = search.choose(found)
                    art = _ship_int8(winner, found, path, out, opts.budget, stages)
                elif fmt == "tflite" and precision == "int8" and (net := _torch_of(model_src, fp32_onnx, stages)):
                    found = search.tflite_int8(net, work / "tflite_candidates", calib=calib.x, x=ev.x, y=ev.y,
                                               reference=reference, gate=gate, metadata=meta, log=log,
                                               mirror_axis=calib.mirror_axis)
                    candidates += found
                    winner_t = search.choose(found)
                    art = _ship_int8(winner_t, found, path, out, opts.budget, stages, fmt="tflite")
                else:
                    art = _export(fmt, precision, model_src, fp32_onnx, path, calib.x, meta, stages)
            except Exception as exc:  # one target that cannot be made is reported, the others still are
                if isinstance(exc, EdgekitError) and not isinstance(exc, (DataError, ConfigError)):
                    raise
                reason = str(exc) if isinstance(exc, EdgekitError) else describe(exc)
                skipped.append({"target": f"{fmt}:{precision}", "name": f"{fmt}_{precision}", "skipped": reason})
                log(f"{fmt}:{precision} not exported: {reason}")
                continue
            if art is not None:
                artifacts.append(art)
                log(f"wrote {art.path.name}: {art.path.stat().st_size:,} bytes in {time.perf_counter() - t0:.1f} s")

    entries = _verify(artifacts, ev, reference, gate)
    for e in entries:  # an int8 TFLite over budget is not shipped either
        if not e["passed"] and e["precision"] != "fp32":
            _reject(Path(e["path"]), out)
            e["path"] = str(out / "rejected" / Path(e["path"]).name)
    _bench(entries, ev.x, opts)
    cpu_note = _cpu_note()
    for e in entries:
        e["diagnostics"] = diagnose.facts(e["path"], e["format"], ref_ops)
    for e in entries:
        fp32 = next((f for f in entries if f["format"] == e["format"] and f["precision"] == "fp32"), None)
        e["diagnostics"]["verdict"] = diagnose.verdict(e, fp32, cpu_note)
    inc = _inc(src, model_src, calib, ev, gate, opts, stages)

    res = _results(opts, src, out, entries, stages, cpu_note, baseline, candidates, winner, inc, warnings,
                   skipped, calib, ev, time.perf_counter() - t_start)
    from edgekit import report

    report.write(out, res)
    shutil.rmtree(work, ignore_errors=True)
    print(report.table(res))
    for e in entries:
        if e["diagnostics"].get("verdict"):
            print(f"{e['name']}: {e['diagnostics']['verdict']}")
    if not res["passed"]:
        failed = [e["name"] for e in entries if not e["passed"]] + [
            f"{k} (nothing within budget)" for k in ("int8_search", "tflite_int8_search")
            if k in stages and "shipped" in stages[k] and stages[k]["shipped"] is None]
        raise CheckFailed(f"over the accuracy budget: {', '.join(failed)} (see {out / 'report.md'})", run_dir=out)
    log(f"done in {time.perf_counter() - t_start:.0f} s: {out / 'report.md'}")
    return out


def _check_options(opts: Options) -> None:
    for f in opts.formats:
        if f not in FORMATS:
            raise ConfigError(f"--format {f}: expected one or more of {', '.join(FORMATS)}")
    for p in opts.precisions:
        if p not in PRECISIONS:
            raise ConfigError(f"--precision {p}: expected one or more of {', '.join(PRECISIONS)}")
    if not 0.0 <= opts.budget < 1.0:
        raise ConfigError(f"--budget {opts.budget}: expected a fraction, e.g. 0.01 for 1 point")
    if opts.prune is not None and not 0.05 <= opts.prune < 1.0:
        raise ConfigError(f"--prune {opts.prune}: expected the MACs ratio to keep, between 0.05 and 1, e.g. 0.5")


def _fresh_out(out: Path) -> Path:
    """The output folder must be new or empty: stale artifacts of another run must never look like this run's."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: output folder exists and is not empty; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _opset_at_least(path: Path, opset: int, work: Path, stages: dict) -> Path:
    """A copy of the model at ``opset`` or newer: per-channel QDQ (DequantizeLinear's axis) needs opset 13.
    The fp32 artifact is made from this copy, so its parity with the original is verified like any other."""
    import onnx
    from onnx import version_converter

    proto = onnx.load(str(path))
    current = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return path
    try:
        converted = version_converter.convert_version(proto, opset)
        onnx.checker.check_model(converted)
    except Exception as exc:
        stages["opset"] = f"kept opset {current}: converting to {opset} failed ({first_line(exc)})"
        log(stages["opset"])
        return path
    out = work / "original_opset.onnx"
    onnx.save_model(converted, str(out))
    stages["opset"] = f"opset {current} -> {opset} (per-channel int8 needs 13)"
    log(stages["opset"])
    return out


def _open_source(opts: Options) -> source.Source:
    if opts.model.endswith(".onnx"):
        return source.open_onnx(opts.model)
    return source.load_torch(opts.model, weights=opts.weights, args=opts.args)


def _shape_hint(src: source.Source, opts: Options) -> list[int] | None:
    if opts.input_shape:
        shape = [1, *opts.input_shape] if len(opts.input_shape) in (1, 2, 3) else list(opts.input_shape)
        if src.kind == "onnx" and len(shape) != len(src.input_shape):
            raise ConfigError(f"--input-shape {opts.input_shape} does not match {src.spec}'s input {src.input_shape}")
        return shape
    return src.input_shape or None


def _eval_samples(opts: Options, src: source.Source, calib: samples.Samples) -> samples.Samples:
    """The evaluation data; without --eval, a seeded half of DATA held out from calibration."""
    if opts.eval:
        ev = samples.load(opts.eval, input_shape=src.input_shape, pixels=opts.pixels, metadata=src.metadata,
                          split="test", limit=opts.eval_samples)
        if ev.x.shape[1:] != calib.x.shape[1:]:
            raise DataError(f"{opts.eval}: evaluation samples have shape {list(ev.x.shape[1:])}, the calibration "
                            f"samples {list(calib.x.shape[1:])}")
        return ev
    if len(calib.x) < 4:
        raise DataError(f"{opts.calib}: {len(calib.x)} samples cannot be split into calibration and evaluation; "
                        f"give more, or --eval DATA")
    order = np.random.default_rng(0).permutation(len(calib.x))
    half = len(order) // 2
    ev, cal = calib.take(np.sort(order[:half])), calib.take(np.sort(order[half:]))
    calib.x, calib.y = cal.x, cal.y
    ev.note = f"no --eval: a seeded half of {opts.calib} ({half} samples), never used for calibration"
    return ev


def calibration_warnings(calib: np.ndarray, evaluation: np.ndarray) -> list[str]:
    """What makes calibration data unable to represent the inputs: too few samples, constant samples,
    or a range far from the evaluation data's."""
    out = []
    if len(calib) < FEW_CALIB:
        out.append(f"only {len(calib)} calibration samples: int8 ranges from so few are unreliable "
                   f"(a few hundred are typical)")
    flat = calib.reshape(len(calib), -1)
    constant = int((flat.std(axis=1) < 1e-6).sum())
    if constant:
        out.append(f"{constant} of {len(calib)} calibration samples are constant (e.g. all-black images)")
    lo, hi = np.percentile(evaluation, [1, 99])
    clo, chi = np.percentile(flat, [1, 99])
    spread, cspread = hi - lo, chi - clo
    if spread > 0 and cspread < 0.25 * spread:
        out.append(f"calibration inputs span [{clo:.3g}, {chi:.3g}], a fraction of the evaluation inputs' "
                   f"[{lo:.3g}, {hi:.3g}]: activation ranges will be too narrow")
    return out


def _reference_outputs(src: source.Source, x: np.ndarray) -> np.ndarray:
    """The original model's outputs: PyTorch for a PyTorch model, onnxruntime for an ONNX file."""
    if src.kind == "torch":
        import torch

        with torch.no_grad():
            outs = [src.torch_model(torch.from_numpy(x[i:i + 256])).numpy() for i in range(0, len(x), 256)]
        out = np.concatenate(outs)
    else:
        from edgekit.runtime import open_session

        out = open_session(src.onnx_path, runtime="onnxruntime", threads=2).run(x)
    if out.ndim != 2:
        raise DataError(f"{src.spec}: edgekit compress handles classifiers (output (N, classes)); this model "
                        f"outputs {list(out.shape)}")
    return out


def _check_labels(ev: samples.Samples, reference: np.ndarray, labels) -> None:
    if ev.y is not None and ev.y.max(initial=0) >= reference.shape[1]:
        raise DataError(f"{ev.source}: labels go up to {int(ev.y.max())} but the model has {reference.shape[1]} outputs")
    if labels and len(labels) != reference.shape[1]:
        raise DataError(f"{ev.source}: {len(labels)} class names for a model with {reference.shape[1]} outputs")


def _preprocess_of(src: source.Source, calib: samples.Samples) -> dict:
    if src.metadata.get("preprocess"):
        return src.metadata["preprocess"]
    return {"kind": "tensor", "note": calib.note or "inputs given as tensors"}


def _prune(src, calib, ev, gate, opts, work, stages):
    """Prune a PyTorch model to ``--prune`` of its MACs and distil it from the original on the calibration
    inputs (the original's own predictions are the targets, so no labels are needed). Kept only within budget."""
    import copy

    import torch

    from edgekit.compress.prune import prune
    from edgekit.export.onnx import save_onnx, to_onnx_proto
    from edgekit.train.loop import fit

    if src.kind != "torch":
        stages["prune"] = {"skipped": "pruning needs the PyTorch model: give file.py:factory and --weights "
                                      "(an ONNX file has no trainable graph edgekit can prune safely)"}
        log(f"prune skipped: {stages['prune']['skipped']}")
        return None
    teacher = src.torch_model
    student = copy.deepcopy(teacher).eval()
    example = torch.from_numpy(calib.x[:1])
    try:
        res = prune(student, example, macs_ratio=opts.prune)
    except ConfigError as exc:  # a model torch-pruning cannot handle: the rest of the job goes on without it
        stages["prune"] = {"skipped": str(exc)}
        log(f"prune skipped: {exc}")
        return None
    with torch.no_grad():
        soft = np.concatenate([teacher(torch.from_numpy(calib.x[i:i + 256])).numpy()
                               for i in range(0, len(calib.x), 256)])
    pseudo = soft.argmax(1).astype(np.int64)
    n_val = max(1, len(calib.x) // 10)
    fit(student, (calib.x[n_val:], pseudo[n_val:]), (calib.x[:n_val], pseudo[:n_val]), epochs=opts.distill_epochs,
        batch_size=64, lr=0.01, teacher=teacher, temperature=4.0, alpha=0.9, device="cpu", desc="distill")
    student.eval()
    with torch.no_grad():
        out = np.concatenate([student(torch.from_numpy(ev.x[i:i + 256])).numpy() for i in range(0, len(ev.x), 256)])
    ref = _reference_outputs(src, ev.x)
    agree = float((out.argmax(1) == ref.argmax(1)).mean())
    acc = float((out.argmax(1) == ev.y).mean()) if ev.y is not None else None
    ok, reason = gate.check(acc, agree)
    stages["prune"] = {"macs_dense": res.dense_macs, "macs": res.macs, "macs_ratio": res.macs / res.dense_macs,
                       "params_dense": res.dense_params, "params": res.params, "accuracy": acc,
                       "top1_agreement": agree, "kept": ok, "verdict": reason}
    log(f"pruned to {res.macs / res.dense_macs:.2f}x MACs, distilled: {reason} -> {'kept' if ok else 'not kept'}")
    if not ok:
        return None
    path = work / "pruned_fp32.onnx"
    save_onnx(to_onnx_proto(student, calib.x[:1]), path, {"source": f"{src.spec} pruned"})
    pruned = source.Source(spec=src.spec, kind="torch", onnx_path=path, input_name="input",
                           input_shape=src.input_shape, torch_model=student, labels=src.labels)
    return pruned, path


def _export(fmt, precision, model_src, fp32_onnx, path, calib, meta, stages) -> Artifact | None:
    if fmt == "onnx":
        if precision == "fp32":
            return _onnx_fp32(fp32_onnx, path, meta)
        return _onnx_fp16(fp32_onnx, path, meta)
    if model_src.kind == "torch":
        from edgekit.export.tflite import export_tflite

        return export_tflite(model_src.torch_model, calib[:1], path, precision=precision, metadata=meta, calib=calib[:256])
    from edgekit.export.onnx_tflite import onnx_to_tflite

    result = onnx_to_tflite(fp32_onnx, path, precision=precision, calib=calib[:256], metadata=meta)
    art = result.artifact if hasattr(result, "artifact") else result
    route = getattr(result, "route", None) or (art.notes[0] if getattr(art, "notes", ()) else None)
    if route:
        stages.setdefault("onnx_to_tflite", {})[precision] = str(route)
    return art


def _onnx_fp32(fp32_onnx: Path, path: Path, meta: dict) -> Artifact:
    import onnx

    from edgekit.export.onnx import save_onnx

    save_onnx(onnx.load(str(fp32_onnx)), path, {**meta, "precision": "fp32"})
    return Artifact(path, "onnx", "fp32")


def _onnx_fp16(fp32_onnx: Path, path: Path, meta: dict) -> Artifact:
    """float16 weights and compute with float32 inputs and outputs (onnxruntime's own float16 converter)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgekit.export.onnx import save_onnx

    proto = convert_float_to_float16(onnx.load(str(fp32_onnx)), keep_io_types=True, disable_shape_infer=True)
    topological_sort(proto.graph)  # the converter appends its input/output Casts at the end of the node list
    save_onnx(proto, path, {**meta, "precision": "fp16"})
    return Artifact(path, "onnx", "fp16")


def topological_sort(graph) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (ONNX requires it)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progress = [n for n in pending if all(i in ready for i in n.input)]
        if not progress:
            raise DataError("the ONNX graph has a cycle or an input no node produces")
        for n in progress:
            ready.update(n.output)
        ids = {id(n) for n in progress}
        ordered += progress
        pending = [n for n in pending if id(n) not in ids]
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered, strict=True):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def _ship_int8(winner: search.Candidate | None, found: list[search.Candidate], path: Path, out: Path,
               budget: float, stages: dict, fmt: str = "onnx") -> Artifact | None:
    """Copy the winning int8 candidate to ``path``; with no winner keep the best attempt under rejected/."""
    key = "int8_search" if fmt == "onnx" else "tflite_int8_search"
    stages[key] = {"shipped": winner.name if winner else None, "why": search.why(winner, found, budget)}
    log(f"int8 {fmt}: {stages[key]['why']}")
    if winner is None:
        best = max((c for c in found if c.path), key=search.score, default=None)
        if best is not None:
            (out / "rejected").mkdir(exist_ok=True)
            shutil.copyfile(best.path, out / "rejected" / path.name)
        return None
    with rundir.atomic_path(path) as tmp:
        shutil.copyfile(winner.path, tmp)
    return Artifact(path, fmt, "int8")


def _torch_of(model_src: source.Source, fp32_onnx: Path, stages: dict):
    """The PyTorch module TFLite int8 is searched on: the user's own, or onnx2torch's graph of an ONNX file
    (None when that conversion is not possible: the ONNX route then converts int8 in one attempt)."""
    if model_src.kind == "torch":
        return model_src.torch_model
    try:
        from edgekit.export.onnx_tflite import onnx_to_torch

        return onnx_to_torch(fp32_onnx)
    except Exception as exc:
        stages["tflite_int8_search"] = {"skipped": f"onnx2torch could not rebuild the model in PyTorch "
                                                   f"({describe(exc)}); one attempt"}
        log(stages["tflite_int8_search"]["skipped"])
        return None


def _reject(path: Path, out: Path) -> None:
    if path.parent == out and path.exists():
        (out / "rejected").mkdir(exist_ok=True)
        path.replace(out / "rejected" / path.name)


def _verify(artifacts: list[Artifact], ev: samples.Samples, reference: np.ndarray, gate: search.Gate) -> list[dict]:
    """The recipe run's verification loop with compress's gate: agreement when there are no labels, and fp32
    held to the original within 1e-3 of its output range (a foreign model's logits can be large)."""
    from edgekit.verify import check_artifacts

    tolerance = 1e-3 * max(1.0, float(np.abs(reference).max()))

    def judge_one(art: Artifact, rep) -> tuple[bool, str]:
        if art.precision == "fp32" and rep.max_abs_diff > tolerance:
            return False, f"max abs diff {rep.max_abs_diff:.2e} against the original (fp32 must match)"
        return gate.check(rep.accuracy, rep.top1_agreement)

    return check_artifacts(artifacts, ev.x, ev.y, lambda art: reference, judge_one, log=log)


def _bench(entries: list[dict], x: np.ndarray, opts: Options) -> None:
    from edgekit.pipeline import bench_all
    from edgekit.recipe import BenchSpec

    live = [e for e in entries if Path(e["path"]).exists()]
    if live:
        bench_all(SimpleNamespace(bench=BenchSpec(threads=list(opts.threads))), live, x[:1])


def _time_candidates(candidates: list[search.Candidate], fp32_onnx: Path, x: np.ndarray, opts: Options) -> None:
    """Every int8 candidate against the fp32 model, interleaved, so "the fastest within budget" is measured."""
    from edgekit.bench import compare

    live = {c.name: (c.path, "onnxruntime") for c in candidates if c.path and Path(c.path).exists()}
    if not live:
        return
    res = compare({"fp32": (str(fp32_onnx), "onnxruntime"), **live}, threads=opts.threads[0], rounds=4,
                  iterations=50, sample=x[:1])
    for c in candidates:
        if c.name in res:
            c.p50_ms = res[c.name]["p50_ms"]
            c.speed_vs_fp32 = c.p50_ms / res["fp32"]["p50_ms"]


def _cpu_note() -> str:
    from edgekit.pipeline import cpu_int8_note

    return cpu_int8_note()


def _inc(src, model_src, calib, ev, gate, opts, stages) -> dict | None:
    """Intel Neural Compressor's own autotune on the PyTorch model, for the side-by-side in the report."""
    if not opts.inc or src.kind != "torch" or "int8" not in opts.precisions:
        return {"skipped": "Intel Neural Compressor 3.x quantizes PyTorch models only"} if src.kind != "torch" else None
    try:
        from edgekit.compress.inc import inc_autotune
    except ImportError as exc:
        return {"skipped": f"not available: {exc}"}
    import torch

    ref = _reference_outputs(src, ev.x).argmax(1)
    target = ev.y if ev.y is not None else ref

    def eval_fn(model) -> float:
        with torch.no_grad():
            out = np.concatenate([model(torch.from_numpy(ev.x[i:i + 256])).numpy() for i in range(0, len(ev.x), 256)])
        return float((out.argmax(1) == target).mean())

    try:
        res = inc_autotune(model_src.torch_model, calib.x[:1], calib.x[:256], eval_fn, budget=opts.budget)
    except Exception as exc:
        return {"skipped": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    ratio = res.latency_ratio
    data = {"version": res.inc_version, "accuracy": res.accuracy, "baseline_accuracy": res.baseline, "met": res.met,
            "metric": "accuracy" if ev.y is not None else "top-1 agreement with the original",
            "trials": [f"{t.summary}: {t.accuracy:.4f}" for t in res.trials], "best_config": res.best_config,
            "int8_weights": res.int8_weights, "latency": res.latency, "float_p50_ms": res.float_p50_ms,
            "int8_p50_ms": res.int8_p50_ms, "latency_ratio": None if ratio != ratio else ratio,
            "seconds": res.wall_s}
    log(f"Intel Neural Compressor {res.inc_version} autotune: accuracy {res.accuracy:.4f} (float {res.baseline:.4f}), "
        f"budget met: {res.met}, {len(res.trials)} trial(s), int8/float latency in torch "
        + (f"{ratio:.2f}x" if data["latency_ratio"] else "not measured"))
    return data


def _results(opts, src, out, entries, stages, cpu_note, baseline, candidates, winner, inc, warnings, skipped,
             calib, ev, seconds) -> dict:
    from edgekit import __version__, info

    passed = all(e["passed"] for e in entries) and not any(
        stages.get(k, {}).get("shipped", "") is None for k in ("int8_search", "tflite_int8_search"))
    digest = rundir.sha256(src.onnx_path) if src.kind == "onnx" else None
    return {
        "schema": 1, "edgekit_version": __version__, "recipe": f"compress {src.name}", "recipe_digest": digest,
        "recipe_source": src.spec, "run_dir": str(out), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "budget": opts.budget, "passed": passed, "command": "compress",
        "models": {"original": {"spec": src.spec, "kind": src.kind, "input_shape": src.input_shape,
                                "accuracy": baseline}},
        "data": {"calibration": {"source": calib.source, "samples": len(calib.x), "note": calib.note},
                 "evaluation": {"source": ev.source, "samples": len(ev.x), "labelled": ev.y is not None,
                                "note": ev.note}},
        "calibration_warnings": warnings, "stages": stages, "artifacts": entries, "skipped": skipped,
        "int8_candidates": [c.as_dict() for c in candidates], "inc": inc, "cpu_int8_note": cpu_note,
        "seconds": seconds, "environment": {"machine": info.machine(), "versions": info.versions()},
    }


__all__ = ["Options", "calibration_warnings", "compress"]
