"""``edgekit compress``: a user's own model in, verified and benchmarked compact artifacts out.

Follow :func:`compress` from top to bottom:

1. read the model (:mod:`edgekit.compress.source`) and the data (:mod:`edgekit.compress.samples`), check
   they fit, take the original's outputs on the evaluation data (the reference of the budget), and warn about
   calibration data that cannot represent the model's inputs — all before anything is written;
2. open the output folder (:mod:`edgekit.compress.workspace`): a rerun of the same command resumes from its
   finished stages after a failure or ``kill -9``;
3. prune and distil (PyTorch models, ``--prune``) in a child process with a time limit; the student is kept
   only when within the budget;
4. write fp32, fp16 and int8 ONNX/TFLite, each target made in its own child process
   (:mod:`edgekit.compress.target_jobs`) so a converter that crashes or hangs costs only that target; int8
   goes through the budget search (:mod:`.search`), which also tries the variants that keep the operators int8
   slows down in float, and ships the fastest candidate within the budget;
5. verify every artifact: elementwise against the model it was exported from (the pruned student, when it was
   kept), and by the task metric against the original within the budget; time them side by side and say
   which one to use on each runtime (never one slower than fp32);
6. write results.json, report.md and pareto.png as a recipe run does, plus the search and diagnostics.

Everything runs within ``--time-limit``: each stage gets a share of what is left, and a search that reaches
its share stops trying further remedies (they are listed as not tried). Nothing that misses the budget
ships: it is kept under ``rejected/`` and the command exits 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit import isolate, rundir
from edgekit.compress import diagnose, samples, search, source, verify_artifacts
from edgekit.compress.clock import TIME_LIMIT, Clock
from edgekit.compress.onnx_files import (
    onnx_fp16,
    onnx_fp32,
    opset_at_least,
    reject,
    ship,
    ship_stopped,
)
from edgekit.compress.recommend import recommend, recommendation_lines
from edgekit.compress.workspace import Workspace, fingerprint, open_workspace
from edgekit.device.artifact import Artifact, model_metadata
from edgekit.errors import CheckFailed, ConfigError, DataError
from edgekit.log import get

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
    distill_epochs: int = 3  # kept for callers; distillation is bounded by time (see prune_job.distill)
    time_limit: float = TIME_LIMIT


log = get("compress").info  # printed as "[edgekit compress] ..." (edgekit.log)


def compress(opts: Options) -> Path:
    """Run the whole job; returns the output folder. Raises CheckFailed (exit 1) when a gate fails."""
    _check_options(opts)
    t_start, started = time.perf_counter(), time.monotonic()

    # 1. everything that can be wrong with the input, before anything is written
    src = _open_source(opts)
    if src.kind == "onnx" and src.several_io:
        from edgekit.compress.several_io import compress_several

        return compress_several(opts, src, log=log, started=started)
    calib = samples.load(opts.calib, input_shape=_shape_hint(src, opts), pixels=opts.pixels, metadata=src.metadata,
                         split="train", limit=opts.calib_samples)
    source.fix_input_shape(src, calib.x.shape[1:])
    ev = _eval_samples(opts, src, calib)
    warnings = calibration_warnings(calib.x, ev.x)
    labels = opts.labels or src.labels or ev.labels or calib.labels
    reference = _reference_outputs(src, ev.x)
    _check_labels(ev, reference, labels)
    baseline = float((reference.argmax(1) == ev.y).mean()) if ev.y is not None else None
    gate = search.Gate(opts.budget, baseline)

    # 2. the output folder: new, or this command's own leftovers to resume from
    ws = open_workspace(opts.out, fingerprint(opts))
    out, work = ws.out, ws.work
    stages: dict = {}
    if ws.resumed:
        log(f"resuming in {out}: finished stages are reused ({', '.join(rundir.finished_stages(work)) or 'none'})")
    for w in warnings:
        log(f"WARNING: {w}")
    log(f"{src.spec}: input {src.input_shape}, {len(calib.x)} calibration and {len(ev.x)} evaluation samples"
        + (f", original accuracy {baseline:.4f}" if baseline is not None else ", no labels: agreement is the metric")
        + f"; time limit {opts.time_limit:.0f} s")
    targets = [f"{f}:{p}" for f in opts.formats for p in opts.precisions]
    # Intel Neural Compressor's autotune is a comparison, not an artifact: it gets what the searches leave.
    clock = Clock(opts.time_limit, (["prune"] if opts.prune else []) + targets, start=started)
    data = work / "data.npz"
    if not data.is_file():
        with rundir.atomic_path(data) as tmp, open(tmp, "wb") as f:
            np.savez(f, calib=calib.x, x=ev.x, reference=reference, **({"y": ev.y} if ev.y is not None else {}))
    _reference_onnx(src, ws, stages)
    clock.after = _seconds_after_searches(src.onnx_path, ev.x, targets)
    clock.lap("load, reference outputs, ONNX export")

    meta = model_metadata(labels=list(labels) if labels else [str(i) for i in range(reference.shape[1])],
                          input_shape=list(src.input_shape), preprocess=_preprocess_of(src, calib), precision="fp32",
                          source=src.spec, input_name=src.input_name)
    if len(src.input_shape) == 4 and samples.image_layout(src.input_shape) == "NHWC":
        meta["input"]["layout"] = "NHWC"
    if src.dynamic_dims:
        stages["shapes"] = (f"the model's input {source.shape_text(src.declared_shape)} has dynamic dimensions: "
                            f"verified at {list(src.input_shape)} (the data's shape); ONNX artifacts keep the "
                            f"dynamic dimensions, TFLite ones are fixed to {list(src.input_shape)}")
        log(stages["shapes"])

    # 3. pruning and distillation, in a child process
    model_src, fp32_onnx = src, opset_at_least(src.onnx_path, 13, work, stages)
    student_out = None
    if opts.prune:
        pruned = _prune(src, calib, ev, reference, gate, opts, ws, clock, stages, data)
        if pruned is not None:
            model_src, fp32_onnx, student_out = pruned
        clock.lap("prune and distill")

    # 4. every target, each in its own child process
    artifacts, candidates, skipped, winners = [], [], [], {}
    ref_ops = diagnose.onnx_ops(src.onnx_path)
    for target in targets:
        fmt, precision = target.split(":")
        path = out / f"model_{precision}.{fmt}"
        t0 = time.perf_counter()
        done = ws.done(f"target_{fmt}_{precision}")
        if done is None:
            done = ws.mark(f"target_{fmt}_{precision}",
                           _make_target(fmt, precision, path, model_src, fp32_onnx, src, meta, calib, gate, opts,
                                        ws, clock, data))
        else:
            clock.share(target)
        clock.lap(target)
        candidates += done.get("candidates", [])
        stages.update(done.get("stages", {}))
        if done.get("skipped"):
            skipped.append({"target": target, "name": f"{fmt}_{precision}", "skipped": done["skipped"]})
            log(f"{target} not exported: {done['skipped']}")
            continue
        if done.get("winner"):
            winners[fmt] = done["winner"]
        if done.get("path") and Path(done["path"]).is_file():
            artifacts.append(Artifact(Path(done["path"]), fmt, precision))
            if not done.get("reported"):
                log(f"wrote {path.name}: {path.stat().st_size:,} bytes in {time.perf_counter() - t0:.1f} s")

    # 5. verify, time, diagnose, recommend
    own_reference = student_out if student_out is not None else reference
    entries = verify_artifacts.verify(artifacts, ev, reference, own_reference, gate,
                                      pruned=student_out is not None, rerun=verify_artifacts.rerun_of(model_src))
    for e in entries:  # an int8 TFLite over budget is not shipped either
        if not e["passed"] and e["precision"] != "fp32":
            reject(Path(e["path"]), out)
            e["path"] = str(out / "rejected" / Path(e["path"]).name)
    clock.lap("verify")
    _bench(entries, ev.x, opts, clock)
    clock.lap("benchmark")
    clock.after = 0.0  # what it was kept for is done: the comparison below may use the rest
    from edgekit.audit import audit_all

    audit_all(entries, ev.x[:1], reference_ops=ref_ops, log=log)  # ref_ops: counted once, above
    clock.lap("per-operator audit")
    cpu_note = _cpu_note()
    for e in entries:
        e["diagnostics"] = diagnose.facts(e["path"], e["format"], ref_ops)
    for e in entries:
        fp32 = next((f for f in entries if f["format"] == e["format"] and f["precision"] == "fp32"), None)
        e["diagnostics"]["verdict"] = diagnose.verdict(e, fp32, cpu_note)
    recommended = recommend(entries)
    inc = _inc(src, model_src, opts, ws, clock, data)
    clock.lap("Intel Neural Compressor")

    # 6. the report
    stages["seconds"] = clock.spent
    res = _results(opts, src, out, entries, stages, cpu_note, baseline, candidates, winners, inc, warnings,
                   skipped, calib, ev, recommended, time.perf_counter() - t_start, ws)
    from edgekit import report
    from edgekit.compress import report as compress_report

    report.write(out, res, render=compress_report.markdown)
    ws.finish()
    print(report.table(res))
    for e in entries:
        if e["diagnostics"].get("verdict"):
            print(f"{e['name']}: {e['diagnostics']['verdict']}")
    for line in recommendation_lines(recommended):
        print(line)
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
    if not opts.time_limit > 0:
        raise ConfigError(f"--time-limit {opts.time_limit}: expected seconds, e.g. 600")


def _open_source(opts: Options) -> source.Source:
    if opts.model.endswith(".onnx"):
        return source.open_onnx(opts.model)
    return source.load_torch(opts.model, weights=opts.weights, args=opts.args)


def _shape_hint(src: source.Source, opts: Options) -> list[int] | None:
    if opts.input_shape:
        shape = [1, *opts.input_shape] if len(opts.input_shape) in (1, 2, 3) else list(opts.input_shape)
        if src.kind == "onnx":
            if len(shape) != len(src.input_shape) or any(d is not None and d != s for d, s in
                                                         zip(src.input_shape[1:], shape[1:], strict=True)):
                raise ConfigError(f"--input-shape {opts.input_shape} does not match {src.spec}'s input "
                                  f"{source.shape_text(src.input_shape)}")
        return shape
    return src.input_shape or None


def _eval_samples(opts: Options, src: source.Source, calib: samples.Samples) -> samples.Samples:
    """The evaluation data; without --eval, a seeded half of DATA held out from calibration."""
    if opts.eval:
        ev = samples.load(opts.eval, input_shape=[1, *calib.x.shape[1:]], pixels=opts.pixels, metadata=src.metadata,
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
        out = verify_artifacts.torch_outputs(src.torch_model, x)
    else:
        from edgekit.device.runtime import open_session

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


def _seconds_after_searches(onnx_path: Path, x: np.ndarray, targets: list[str]) -> float:
    """The seconds to keep back for verifying every artifact on all of ``x``, benchmarking and the report,
    from the float model's time per sample on onnxruntime (a few samples, timed here): a fixed reserve let
    xception41's verification (48 s) run the command 37 s past its limit. ONNX artifacts are verified in
    batches (0.7x the one-sample time), TFLite ones one sample at a time (1.2x); int8 ones are counted at the
    float time (a slow int8 can be slower than float)."""
    from edgekit.device.bench import bench

    try:
        per_sample = bench(onnx_path, runtime="onnxruntime", threads=2, warmup=1, iterations=4, sample=x).p50_ms / 1e3
    except Exception:  # noqa: BLE001 - an estimate; verification itself reports a model that cannot run
        return 0.0
    runs = sum(1.2 if t.startswith("tflite") else 0.7 for t in targets)
    return 30.0 + per_sample * len(x) * runs


def _reference_onnx(src: source.Source, ws: Workspace, stages: dict) -> None:
    """A PyTorch model's float ONNX file (torch.export in a child process); an ONNX source keeps its own file."""
    if src.onnx_path is not None:
        return
    path = ws.work / "reference_fp32.onnx"
    if not (ws.done("onnx_export") and path.is_file()):
        try:
            isolate.call("edgekit.compress.target_jobs:export_onnx",
                         {"ref": src.ref.as_dict(), "shape": list(src.input_shape), "out": str(path),
                          "source": src.spec}, what="ONNX export", timeout=max(120.0, 0.2 * TIME_LIMIT),
                         log=ws.work / "logs" / "onnx_export.log")
        except isolate.JobFailed as exc:
            raise DataError(f"{src.spec}: torch.export to ONNX {exc.kind}: {exc.detail}") from None
        ws.mark("onnx_export", {"path": str(path)})
    src.onnx_path = path


def _prune(src, calib, ev, reference, gate, opts, ws: Workspace, clock: Clock, stages: dict, data: Path):
    """Prune a PyTorch model to ``--prune`` of its MACs and distil it from the original on the calibration
    inputs (the original's own outputs are the targets, so no labels are needed), in a child process with a time
    limit. Kept only within budget (judged against ``reference``, the original's outputs on the evaluation
    data); only a kept student is exported to ONNX. Returns (source, fp32 ONNX, outputs on the evaluation data)
    or None."""
    if src.kind != "torch":
        stages["prune"] = {"skipped": "pruning needs the PyTorch model: give file.py:factory and --weights "
                                      "(an ONNX file has no trainable graph edgekit can prune safely)"}
        log(f"prune skipped: {stages['prune']['skipped']}")
        clock.share("prune")
        return None
    done = ws.done("prune")
    state, onnx_path = ws.work / "pruned.pt", ws.work / "pruned_fp32.onnx"
    if done is None:
        seconds = clock.share("prune")
        try:
            out = isolate.call("edgekit.compress.prune_job:run",
                               {"ref": src.ref.as_dict(), "data": str(data), "macs_ratio": opts.prune,
                                "seconds": 0.6 * seconds, "distill_seconds": 0.4 * seconds, "out": str(state),
                                "mirror_axis": calib.mirror_axis},
                               what="pruning", timeout=clock.kill_after(seconds), log=ws.work / "logs" / "prune.log").result
        except isolate.JobFailed as exc:
            out = {"pruned": False, "failed": f"{exc.kind}: {exc.detail}"}
        done = ws.mark("prune", {"job": out})
    else:
        clock.share("prune")
    out = done["job"]
    if not out.get("pruned"):
        reasons = out.get("failed") or "; ".join(f"{a['strategy']}: {a['detail']}" for a in out.get("attempts", []))
        stages["prune"] = {"skipped": f"pruning did not reach {opts.prune}x of the MACs ({reasons}); the rest of the "
                                      f"command uses the unpruned model", "attempts": out.get("attempts", [])}
        log(f"prune: {stages['prune']['skipped']}")
        return None
    ref = source.ModelRef(**{**src.ref.as_dict(), "pruned": str(state)})
    student = ref.load()
    student_out = verify_artifacts.torch_outputs(student, ev.x)
    agree = float((student_out.argmax(1) == reference.argmax(1)).mean())
    acc = float((student_out.argmax(1) == ev.y).mean()) if ev.y is not None else None
    ok, reason = gate.check(acc, agree)
    r = out["result"]
    stages["prune"] = {"macs_dense": r["dense_macs"], "macs": r["macs"], "macs_ratio": r["macs_ratio"],
                       "params_dense": r["dense_params"], "params": r["params"], "strategy": r["strategy"],
                       "left_alone": r["left_alone"], "distill": out.get("distill"), "accuracy": acc,
                       "top1_agreement": agree, "kept": ok, "verdict": reason, "attempts": out.get("attempts", [])}
    log(f"pruned to {r['macs_ratio']:.2f}x MACs ({r['strategy']}), distilled: {reason} -> "
        f"{'kept' if ok else 'not kept'}")
    if not ok:
        return None
    if not onnx_path.is_file():
        try:
            isolate.call("edgekit.compress.target_jobs:export_onnx",
                         {"ref": ref.as_dict(), "shape": list(src.input_shape), "out": str(onnx_path),
                          "source": f"{src.spec} pruned"}, what="ONNX export of the pruned model",
                         timeout=max(120.0, 0.2 * TIME_LIMIT), log=ws.work / "logs" / "onnx_export.log")
        except isolate.JobFailed as exc:
            stages["prune"]["kept"] = False
            stages["prune"]["verdict"] += (f"; the pruned model could not be exported to ONNX ({exc.kind}: "
                                           f"{exc.detail}), so the artifacts come from the original")
            log(f"prune: {stages['prune']['verdict']}")
            return None
    pruned = source.Source(spec=src.spec, kind="torch", onnx_path=onnx_path, input_name=src.input_name,
                           input_shape=src.input_shape, torch_model=student, labels=src.labels, ref=ref)
    return pruned, onnx_path, student_out


def _make_target(fmt, precision, path: Path, model_src, fp32_onnx: Path, src, meta, calib, gate, opts,
                 ws: Workspace, clock: Clock, data: Path) -> dict:
    """Make one target; returns its stage record: the shipped path, or why it was skipped, and the candidates."""
    target = f"{fmt}:{precision}"
    seconds = clock.share(target)
    logs = ws.work / "logs" / f"{fmt}_{precision}.log"
    gate_d = {"budget": gate.budget, "baseline": gate.baseline_accuracy}
    ref = model_src.ref.as_dict() if model_src.kind == "torch" and model_src.ref is not None else None
    # The ONNX routes convert it for an ONNX source, and for a PyTorch model litert-torch cannot convert.
    tflite_onnx = str(_static_onnx_for_tflite(fp32_onnx, model_src, ws))
    try:
        if fmt == "onnx" and precision == "fp32":
            return {"path": str(onnx_fp32(fp32_onnx, path, meta).path)}
        if fmt == "onnx" and precision == "fp16":
            return {"path": str(onnx_fp16(fp32_onnx, path, meta).path)}
        if fmt == "onnx":
            job = isolate.call("edgekit.compress.target_jobs:onnx_int8",
                               {"onnx": str(fp32_onnx), "data": str(data), "work": str(ws.work / "candidates"),
                                "gate": gate_d, "metadata": meta, "threads": opts.threads[0],
                                "deadline": time.monotonic() + seconds}, what="ONNX int8 search",
                               timeout=clock.kill_after(seconds), log=logs).result
            return ship(job["candidates"], path, ws.out, opts.budget, "onnx", job.get("noise_floor"),
                        job.get("weight_floor"))
        if precision in ("fp32", "fp16"):
            job = isolate.call("edgekit.compress.target_jobs:tflite_float",
                               {"precision": precision, "ref": ref, "onnx": tflite_onnx, "data": str(data),
                                "out": str(path), "metadata": meta}, what=f"TFLite {precision} conversion",
                               timeout=clock.kill_after(seconds), log=logs).result
            stage = {"onnx_to_tflite": {precision: {"route": job["route"], "routes": job.get("routes"),
                                                    "notes": job.get("notes")}}} if job.get("route") else {}
            return {"path": job["path"], "stages": stage}
        fp32_tflite = ws.out / "model_fp32.tflite"
        fp32_record = ws.done("target_tflite_fp32") or {}
        litert_torch = litert_torch_took(ref, fp32_record) if fp32_tflite.is_file() else None
        job = isolate.call("edgekit.compress.target_jobs:tflite_int8",
                           {"ref": ref, "onnx": tflite_onnx, "data": str(data),
                            "work": str(ws.work / "tflite_candidates"), "gate": gate_d, "metadata": meta,
                            "fp32_tflite": str(fp32_tflite) if fp32_tflite.is_file() else None,
                            "mirror_axis": calib.mirror_axis, "threads": opts.threads[0], "fp32_onnx": str(fp32_onnx),
                            "order": str(ws.work / "candidates" / search.ORDER), "litert_torch": litert_torch,
                            "deadline": time.monotonic() + seconds}, what="TFLite int8 search",
                           timeout=clock.kill_after(seconds), log=logs).result
        rec = ship(job["candidates"], path, ws.out, opts.budget, "tflite", job.get("noise_floor"),
                   job.get("weight_floor"))
        if job.get("note"):
            rec.setdefault("stages", {}).setdefault("tflite_int8_search", {})["note"] = job["note"]
        return rec
    except isolate.JobFailed as exc:
        stopped = None
        if fmt in ("onnx", "tflite") and precision == "int8":  # what the search measured before it was stopped
            stopped = ship_stopped(ws.work / ("candidates" if fmt == "onnx" else "tflite_candidates"), path,
                                   ws.out, opts.budget, fmt, f"{exc.kind} ({exc.detail})")
        return stopped or {"skipped": f"{exc.what} {exc.kind}: {exc.detail}"}
    except (DataError, ConfigError) as exc:  # one target that cannot be made is reported, the others still are
        return {"skipped": str(exc)}


def litert_torch_took(ref: dict | None, fp32_record: dict) -> bool | None:
    """Whether litert-torch converted the model the TFLite int8 search quantizes with PT2E, read off how the fp32
    TFLite target was made: the user's PyTorch model (``ref``) when no ONNX route was needed; for an ONNX source,
    onnx2torch's rebuild when the onnx2torch route (rebuild, then litert-torch) converted it. False saves every
    PT2E candidate a failure; None: not known (the job finds out)."""
    made = (fp32_record.get("stages") or {}).get("onnx_to_tflite", {}).get("fp32") or {}
    if ref is not None:
        return not made.get("route")
    routes = made.get("routes")
    return None if not routes else "onnx2torch" in routes


def _static_onnx_for_tflite(fp32_onnx: Path, model_src, ws: Workspace) -> Path:
    """The ONNX file the TFLite routes convert: dynamic dimensions other than the batch fixed to the data's."""
    if not getattr(model_src, "dynamic_dims", None):
        return fp32_onnx
    out = ws.work / "fixed_shape.onnx"
    if not out.is_file():
        source.fix_onnx_dims(fp32_onnx, out, model_src.input_shape)
    return out


def _bench(entries: list[dict], x: np.ndarray, opts: Options, clock: Clock) -> None:
    """Latency of every artifact, timed side by side per format and runtime; iterations sized to the time left."""
    from edgekit.device.runtime import open_session
    from edgekit.recipe import BenchSpec
    from edgekit.stages import bench_all

    live = [e for e in entries if Path(e["path"]).exists()]
    if not live:
        return
    slowest = 1e-4
    for e in live:
        with open_session(e["path"], threads=1) as s:
            s.run(x[:1])
            t0 = time.perf_counter()
            s.run(x[:1])
            slowest = max(slowest, time.perf_counter() - t0)
    seconds = max(10.0, min(60.0, clock.left() - 15.0))
    per_artifact = seconds / (len(live) * 2 * len(opts.threads))  # two runtimes may run a format
    iterations = int(max(10, min(200, per_artifact / slowest)))
    spec = BenchSpec(threads=list(opts.threads), warmup=min(20, iterations), iterations=iterations)
    from types import SimpleNamespace

    bench_all(SimpleNamespace(bench=spec), live, x[:1])


def _cpu_note() -> str:
    from edgekit.stages import cpu_int8_note

    return cpu_int8_note()


def _inc(src, model_src, opts: Options, ws: Workspace, clock: Clock, data: Path) -> dict | None:
    """Intel Neural Compressor's own autotune on the PyTorch model, for the side-by-side in the report."""
    if src.kind != "torch":
        return {"skipped": "Intel Neural Compressor 3.x quantizes PyTorch models only"}
    if not opts.inc or "int8" not in opts.precisions:
        return None
    done = ws.done("inc")
    if done is not None:
        return done
    seconds = clock.share("inc")
    if clock.left() < 60:
        return {"skipped": f"not run: {clock.left():.0f} s of the time limit left"}
    try:
        res = isolate.call("edgekit.compress.target_jobs:inc",
                           {"ref": model_src.ref.as_dict(), "data": str(data), "budget": opts.budget,
                            "deadline": time.monotonic() + seconds}, what="Intel Neural Compressor autotune",
                           timeout=clock.kill_after(seconds), log=ws.work / "logs" / "inc.log").result
    except isolate.JobFailed as exc:
        res = {"skipped": f"{exc.kind}: {exc.detail}"}
    if "skipped" not in res:
        ratio = res.get("latency_ratio")
        log(f"Intel Neural Compressor {res['version']} autotune: accuracy {res['accuracy']:.4f} (float "
            f"{res['baseline_accuracy']:.4f}), budget met: {res['met']}, {len(res['trials'])} trial(s), int8/float "
            "latency in torch " + (f"{ratio:.2f}x" if ratio else "not measured"))
    return ws.mark("inc", res)


def _results(opts, src, out, entries, stages, cpu_note, baseline, candidates, winners, inc, warnings, skipped,
             calib, ev, recommended, seconds, ws: Workspace) -> dict:
    from edgekit import __version__, info

    passed = all(e["passed"] for e in entries) and not any(
        stages.get(k, {}).get("shipped", "") is None for k in ("int8_search", "tflite_int8_search"))
    digest_ = rundir.sha256(src.onnx_path) if src.kind == "onnx" else None
    return {
        "schema": 1, "edgekit_version": __version__, "recipe": f"compress {src.name}", "recipe_digest": digest_,
        "recipe_source": src.spec, "run_dir": str(out), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "budget": opts.budget, "passed": passed, "command": "compress", "resumed": ws.resumed,
        "time_limit": opts.time_limit,
        "models": {"original": {"spec": src.spec, "kind": src.kind, "input_shape": src.input_shape,
                                "declared_input_shape": src.declared_shape, "accuracy": baseline}},
        "data": {"calibration": {"source": calib.source, "samples": len(calib.x), "note": calib.note},
                 "evaluation": {"source": ev.source, "samples": len(ev.x), "labelled": ev.y is not None,
                                "note": ev.note}},
        "calibration_warnings": warnings, "stages": stages, "artifacts": entries, "skipped": skipped,
        "int8_candidates": candidates, "recommended": recommended, "inc": inc, "cpu_int8_note": cpu_note,
        "seconds": seconds, "environment": {"machine": info.machine(), "versions": info.versions()},
    }


__all__ = ["Options", "calibration_warnings", "compress", "recommend"]
