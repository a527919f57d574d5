"""The ``edgekit`` command: each subcommand parses its arguments and calls one API function.

Printing and exit codes live here only: 0 ok, 1 a measured check failed, 2 bad input. Errors
that edgekit raises print as one line without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np

from edgekit import __version__
from edgekit.errors import CheckFailed, ConfigError, EdgekitError


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _count(least: int):
    """An argparse type: an integer of at least ``least``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected at least {least}, got {value}")
        return value
    return parse


def _threads(text: str) -> list[int]:
    values = _ints(text)
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected thread counts of at least 1, e.g. 1,2; got {text!r}")
    return values


def _shape(text: str) -> list[int]:
    """--input-shape: 1 to 4 positive sizes (without the batch) of a sample under 2**28 values."""
    dims = _ints(text)
    if not 1 <= len(dims) <= 4 or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected 1 to 4 positive sizes without the batch, e.g. 3,224,224; "
                                         f"got {text!r}")
    if int(np.prod(dims, dtype=np.float64)) > 2**28:
        raise argparse.ArgumentTypeError(f"{text!r} is {np.prod(dims, dtype=np.float64):.3g} values per sample; "
                                         f"at most 2**28")
    return dims


def cmd_run(args) -> int:
    from edgekit import pipeline, recipe, report

    r = recipe.load(args.recipe, args.set)
    try:
        run_dir = pipeline.run(r, out=args.out, resume=args.resume)
    except CheckFailed as exc:
        if exc.run_dir:
            print(report.summary(report.load(exc.run_dir)))
        raise
    print(report.summary(report.load(run_dir)))
    print(f"\nrun folder: {run_dir}")
    return 0


def cmd_train(args) -> int:
    from edgekit import recipe
    from edgekit.pipeline import train_only
    from edgekit.train.distributed import from_env

    r = recipe.load(args.recipe, args.set)
    run_dir = train_only(r, out=args.out, resume=args.resume)
    world = from_env()
    if world is None or world.main:  # under torchrun, one line from rank 0 rather than one per process
        print(f"run folder: {run_dir}")
    return 0


def cmd_bench(args) -> int:
    from edgekit.device.bench import bench
    from edgekit.device.runtime import runtimes_for

    rows = []
    for path in args.artifacts:
        runtimes = args.runtime or runtimes_for(path)
        if not runtimes:
            raise EdgekitError(f"{path}: no installed runtime runs this format (pip install \"edgekit[onnx]\" "
                               f"or \"edgekit[tflite]\")")
        for rt in runtimes:
            for t in args.threads:
                rows.append(bench(path, runtime=rt, threads=t, warmup=args.warmup, iterations=args.iterations))
    if args.json:
        from dataclasses import asdict

        for row in rows:
            print(json.dumps(asdict(row)))
        return 0
    print(f"{'artifact':40} {'runtime':14} {'threads':>7} {'size KB':>9} {'p50 ms':>9} {'p90 ms':>9}")
    for row in rows:
        print(f"{Path(row.artifact).name:40} {row.runtime:14} {row.threads:>7} {row.size_bytes / 1024:>9.1f} "
              f"{row.p50_ms:>9.3f} {row.p90_ms:>9.3f}")
    return 0


def cmd_verify(args) -> int:
    if args.rules:
        return _verify_rules(args)
    from edgekit.device.verify import verify_artifacts

    arrays = None
    if args.recipe is not None:
        if args.data is not None:
            raise ConfigError("verify needs exactly one of --data FILE.npz or --recipe RECIPE")
        from edgekit import data as datasets
        from edgekit import recipe as recipes

        arrays = datasets.load(recipes.load(args.recipe).data).tensors("test")
    reports = verify_artifacts(args.artifacts, reference=args.reference, data=args.data, arrays=arrays,
                               budget=args.budget, limit=args.limit)
    bad = 0
    for name, rep, verdict in reports:
        acc = f"{rep.accuracy:.4f}" if rep.accuracy is not None else "n/a"
        print(f"{name}: accuracy {acc}, top-1 agreement {rep.top1_agreement:.4f}, max abs diff "
              f"{rep.max_abs_diff:.2e} over {rep.samples} samples -> {verdict}")
        bad += verdict != "ok"
    return 1 if bad else 0


def _verify_rules(args) -> int:
    """Static rules a runtime puts on a file's graph (TensorRT: symmetric int8 Q/DQ where it fuses)."""
    from edgekit.export.onnx_tensorrt import check

    bad = 0
    for path in args.artifacts:
        if not str(path).endswith(".onnx"):
            raise ConfigError(f"{path}: --rules tensorrt checks ONNX files; TensorRT does not read .tflite")
        found = check(path)
        bad += bool(found)
        print(f"{path}: {'follows' if not found else f'{len(found)} nodes break'} TensorRT's explicit-quantization "
              "rules")
        for v in found:
            print(f"  {v}")
    if (args.data or args.recipe) and not bad:
        args.rules = None
        return cmd_verify(args)
    return 1 if bad else 0


def cmd_report(args) -> int:
    from edgekit import report
    from edgekit.deploy.report import section

    res = report.load(args.run)
    if res.get("command") == "compress":
        from edgekit.compress.report import markdown
    else:
        markdown = report.markdown
    print(markdown(res) if args.markdown else report.table(res))
    on_device = section(args.run)  # deploy reports saved in the run folder, beside the host's numbers
    if on_device:
        print("\n" + on_device)
    return 0 if res["passed"] else 1


def cmd_recipes(args) -> int:
    from edgekit import shipped
    from edgekit.recipe import resolve

    if args.name:
        print(resolve(args.name).read_text(encoding="utf-8"), end="")
        return 0
    names = shipped.names("recipes")
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:<{width}}  {shipped.describe_recipe(name)}")
    print(f"\n{len(names)} recipes in {shipped.folder('recipes')}; run one with: edgekit run NAME")
    return 0


def cmd_schema(args) -> int:
    from edgekit import rundir
    from edgekit.recipe import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.out:
        rundir.write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def cmd_info(args) -> int:
    from edgekit import info

    print(f"edgekit {__version__}")
    for k, v in info.machine().items():
        print(f"  {k}: {v}")
    for name, v in info.versions().items():
        print(f"  {name:24} {v or 'not installed'}")
    return 0


def _ssh_options(args) -> tuple[str, ...]:
    opts: list[str] = []
    if getattr(args, "identity", None):
        opts += ["-i", args.identity]
    for o in getattr(args, "ssh_option", None) or []:
        if "=" not in o or o.startswith("-"):
            raise EdgekitError(f"--ssh-option {o!r}: expected KEY=VALUE, e.g. UserKnownHostsFile=~/.ssh/lab_hosts")
        opts += ["-o", o]
    return tuple(opts)


def cmd_bundle(args) -> int:
    from edgekit.device.bundle import summary
    from edgekit.pack import bundle

    b = bundle(args.run, args.device, args.out, artifacts=args.artifact, include_failed=args.include_failed,
               key=args.sign, signed=not args.no_sign)
    print(summary(b))
    return 0


def _policy(args):
    from edgekit.device.signing import Policy

    return Policy(allow_unsigned=args.allow_unsigned, trusted=Path(args.trusted_keys) if args.trusted_keys else None)


def _load_bundle(args):
    """The bundle named on the command line, checked against the signature policy of its flags."""
    from edgekit.device.bundle import load_bundle
    from edgekit.device.signing import describe

    b = load_bundle(args.bundle, policy=_policy(args))
    if b.signature.get("status") != "verified":
        print(f"edgekit: warning: {b.path}: {describe(b.signature)}", file=sys.stderr)
    return b


def cmd_keys(args) -> int:
    from edgekit.device import signing
    if args.action == "new":
        key_path, pub = signing.new_key(args.name or signing.DEFAULT_KEY, args.dir, trust=not args.no_trust,
                                        overwrite=args.force)
        print(f"key {pub.name} ({pub.key_id}): private {key_path} (keep it secret), public {pub.path}")
        print(f"sign with: edgekit bundle RUN --device NAME --out DIR --sign {key_path}")
        print(f"trust it on a device: edgekit keys trust {pub.path} (edgekit deploy installs it for you)")
        return 0
    if args.action == "list":
        for title, folder, pattern in (("keys", signing.keys_dir(), "*.key"),
                                       ("trusted", signing.trusted_dir(), "*.pub")):
            files = sorted(folder.glob(pattern)) if folder.is_dir() else []
            print(f"{title} in {folder}: {len(files)}")
            for f in files:
                try:
                    k = signing.load_public(f)
                    print(f"  {k.key_id}  {f.name}")
                except EdgekitError as exc:
                    print(f"  unreadable  {f.name}: {exc}")
        return 0
    if not args.name:
        raise EdgekitError(f"edgekit keys {args.action} needs a key file (or a key name)")
    path = Path(args.name) if Path(args.name).is_file() else signing.find_key(args.name)
    if args.action == "show":
        k = signing.load_public(path)
        print(f"{k.key_id}  ed25519  {path}")
        print(signing.public_pem(k).decode().strip())
        return 0
    dest = signing.trust_key(path, args.dir)
    print(f"trusted {signing.load_public(dest).key_id}: {dest}")
    return 0


def cmd_deploy(args) -> int:
    from edgekit.deploy import check_result, deploy
    from edgekit.device.smoke import format_report

    if args.emulate:
        return _emulated(args.bundle, args.device or _bundle_device(args.bundle), args.json, _policy(args))
    if args.web:
        return _deploy_web(args)

    result = deploy(args.bundle, args.device, host=args.host, dry_run=args.dry_run, ssh_options=_ssh_options(args),
                    wheelhouse=args.wheelhouse, remote_dir=args.remote_dir, python=args.python,
                    system_site_packages=args.system_site_packages, fresh=args.fresh, camera=args.camera,
                    runtimes=args.runtime, threads=args.threads, iterations=args.iterations,
                    tensorrt=not args.no_tensorrt, benchmark_binary=args.benchmark_binary, policy=_policy(args))
    if result.dry_run:
        print(f"# deploy {args.bundle} to {result.device} via {result.target} (dry run: nothing was run)")
        for step in result.steps:
            print(f"# {step.name}\n{step.render()}")
        return 0
    rep = result.report
    if args.json:
        print(json.dumps(rep))
    else:
        if "smoke" in rep:
            print(format_report(rep["smoke"]))
        for r in rep.get("benchmark", []):
            print(f"{r['artifact']:14} {r['runtime']}: mean {r['mean_ms']} ms" if r["passed"]
                  else f"{r['artifact']:14} FAIL: {r['error']}")
        for r in rep.get("tensorrt", []):
            print(f"{r['artifact']:14} tensorrt {r['mode']}: median {r['latency_ms'].get('median')} ms"
                  if r["passed"] else f"{r['artifact']:14} tensorrt {r['mode']} FAIL: {r['error']}")
        print(f"deployed to {result.device} ({result.target}) in {rep['seconds']:.1f} s; report: {result.report_path}")
    check_result(result)
    return 0


def _deploy_web(args) -> int:
    """deploy --web: the bundle's page in the phone's browser over adb (edgekit.deploy.web)."""
    from edgekit import devices
    from edgekit.deploy.transports import transport_for
    from edgekit.deploy.web import deploy_web

    b = _load_bundle(args)
    dev = devices.load(args.device or b.device)
    if dev.name != b.device:
        raise ConfigError(f"{b.path} was bundled for '{b.device}', not '{dev.name}': "
                          f"make one with edgekit bundle RUN --device {dev.name} --out DIR")
    tr = transport_for(dev, host=args.host, ssh_options=tuple(_ssh_options(args)))
    result = deploy_web(b, dev, tr, port=args.port, artifact=args.artifact, timeout=args.timeout,
                        demo_seconds=args.demo_seconds, dry_run=args.dry_run)
    if result.dry_run:
        print(f"# deploy {args.bundle} to {result.device}'s browser via {result.target} (dry run: nothing was run)")
        print(f"# serve\nedgekit demo web {shlex.quote(str(b.path))} --port {args.port}")
        for step in result.steps:
            print(f"# {step.name}\n{step.render()}")
        return 0
    _print_web_results(result.report)
    print(f"report: {result.report_path}")
    return 0 if result.passed else 1


def _print_web_results(report: dict) -> None:
    for r in report["results"]:
        if r.get("runtime") is None:
            print(f"{r.get('artifact')}: FAILED: {r.get('verdict')}")
        else:
            print(f"{r['artifact']}: {'ok' if r['passed'] else 'FAILED'}: {r['verdict']}; p50 {r['p50_ms']:.3f} ms, "
                  f"p90 {r['p90_ms']:.3f} ms ({r['runtime']} {r['backend']}, {r['threads']} thread(s))")


def _bundle_device(bundle_dir: str) -> str:
    from edgekit.device.bundle import load_bundle
    from edgekit.device.signing import Policy

    return load_bundle(bundle_dir, policy=Policy(allow_unsigned=True)).device  # the name only; checked after


def _emulated(bundle_dir: str, device: str, as_json: bool, policy=None) -> int:
    from edgekit.emulate import emulated_check, format_emulated

    rep = emulated_check(bundle_dir, device, policy=policy)
    print(json.dumps(rep) if as_json else format_emulated(rep))
    return 0 if rep["passed"] else 1


def cmd_devices(args) -> int:
    from edgekit import devices

    if args.action == "list":
        print(f"{'device':18} {'arch':8} {'cpu':28} {'memory':>8}  {'transport':9} runtimes")
        for name in devices.DEVICES.names():
            d = devices.load(name)
            print(f"{d.name:18} {d.arch:8} {f'{d.cpu.cores}x {d.cpu.model}'[:28]:28} {d.memory_mb:>5} MB  "
                  f"{d.transport.kind:9} {', '.join(d.runtimes)}")
        return 0
    if not args.name:
        raise EdgekitError(f"edgekit devices {args.action} needs a device name: {', '.join(devices.DEVICES.names())}")
    if args.action == "show":
        print(devices.describe(devices.load(args.name)))
        return 0
    if args.action == "prepare-emulation":
        from edgekit.emulate import prepare

        prepare(devices.load(args.name), quiet=False)
        return 0
    if args.emulate:
        if not args.bundle:
            raise EdgekitError("edgekit devices check NAME --emulate needs --bundle DIR: the bundle to prove there")
        return _emulated(args.bundle, args.name, False, _policy(args))
    chk = devices.check(args.name, host=args.host, ssh_options=_ssh_options(args), python=args.python)
    print(f"{chk.device} via {chk.target}")
    print(f"{'item':36} {'profile':40} {'found':34} verdict")
    for r in chk.rows:
        print(f"{r.item:36} {r.expected[:40]:40} {r.found[:34]:34} {r.verdict}")
    print("matches the profile" if chk.passed else "does NOT match the profile (FAIL rows above)")
    return 0 if chk.passed else 1


def cmd_smoke(args) -> int:
    from edgekit import rundir
    from edgekit.device.smoke import format_report, smoke

    rep = smoke(args.bundle, runtimes=args.runtime, threads=args.threads, warmup=args.warmup,
                iterations=args.iterations, policy=_policy(args))
    if args.output:
        rundir.write_json(args.output, rep)
    print(json.dumps(rep) if args.json else format_report(rep))
    return 0 if rep["passed"] else 1


def cmd_demo_camera(args) -> int:
    from edgekit.device.demos.camera import run_camera

    stats = run_camera(_load_bundle(args), source=args.source, headless=args.headless, stream=args.stream,
                       frames=args.frames, json_lines=args.json, output=args.output, artifact=args.artifact,
                       runtime=args.runtime, threads=args.threads, loop=args.loop, max_fps=args.max_fps)
    line = (f"{stats.frames} frames in {stats.seconds:.2f} s: {stats.fps:.1f} FPS end to end, inference + "
            f"pre-processing p50 {stats.latency_p50_ms:.3f} ms ({stats.artifact} on {stats.runtime}, "
            f"{stats.threads} thread(s))" + (f"; video: {stats.output}" if stats.output else ""))
    print(line, file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_demo_mic(args) -> int:
    from edgekit.device.demos.mic import listen, print_detection, spot_wav

    opts = dict(artifact=args.artifact, runtime=args.runtime, threads=args.threads, hop_ms=args.hop_ms,
                threshold=args.threshold, smooth=args.smooth)
    b = _load_bundle(args)
    if args.wav:
        detections, stats = spot_wav(b, args.wav, **opts)
        for d in detections:
            print_detection(d, sys.stdout, args.json)
    else:
        stats = listen(b, seconds=args.seconds, device=args.device, json_lines=args.json, **opts)
    print(f"{stats.detections} detection(s) in {stats.audio_s:.1f} s of audio, {stats.windows} windows; "
          f"real-time factor {stats.rtf:.4f} ({stats.artifact} on {stats.runtime}, {stats.threads} thread(s))",
          file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_demo_web(args) -> int:
    from edgekit.device.web.server import WebDemo

    demo = WebDemo(_load_bundle(args), host=args.host, port=args.port, artifact=args.artifact, https=args.https)
    names = ", ".join(f"{a.name} in {'onnxruntime-web' if a.format == 'onnx' else 'LiteRT.js'}" for a in demo.artifacts)
    print(f"serving {demo.url} ({names}); open it in a browser"
          + (f" on this machine, or on a phone after `adb reverse tcp:{args.port} tcp:{args.port}`"
             if args.host in ("127.0.0.1", "localhost") else ""), flush=True)
    if demo.fingerprint:
        print(f"self-signed certificate, SHA-256 {demo.fingerprint}: the browser warns once; check that it shows "
              "this fingerprint before you accept", flush=True)
    report = demo.serve(once=args.once, timeout=args.timeout)
    if report is None:
        return 0
    _print_web_results(report)
    print(f"report: {demo.report_path}")
    return 0 if json.loads(demo.report_path.read_text())["passed"] else 1


def _floats(text: str) -> list[float]:
    try:
        return [float(eval_fraction(t)) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def eval_fraction(text: str) -> float:
    """A number, or a fraction written a/b (``--scale 1/255``)."""
    if "/" in text:
        num, _, den = text.partition("/")
        return float(num) / float(den)
    return float(text)


def _kv(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--arg {item!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def cmd_compress(args) -> int:
    from edgekit.compress.job import Options, compress
    from edgekit.compress.samples import Pixels

    opts = Options(
        model=args.model, calib=args.calib, out=Path(args.out), eval=args.eval, weights=args.weights,
        args=_kv(args.arg), input_shape=args.input_shape, formats=tuple(args.format), precisions=tuple(args.precision),
        prune=args.prune, budget=args.budget, labels=args.labels,
        pixels=Pixels(scale=eval_fraction(args.scale), mean=tuple(args.mean), std=tuple(args.std)),
        calib_samples=args.calib_samples, eval_samples=args.eval_samples, threads=tuple(args.threads),
        inc=not args.no_inc, time_limit=args.time_limit,
    )
    out = compress(opts)
    print(f"\noutput folder: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="edgekit",
        description="Train, compress, export, verify and benchmark neural networks for small devices.",
        epilog="Exit codes: 0 ok, 1 a measured check failed (e.g. accuracy budget), 2 bad input. "
               "Start with: edgekit recipes, then edgekit run fashion_mnist_resnet8",
    )
    p.add_argument("--version", action="version", version=f"edgekit {__version__}")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print the informational lines of TensorFlow Lite, absl, oneDNN and torchao, which "
                        "edgekit hides (edgekit.quiet lists them); EDGEKIT_VERBOSE=1 does the same")
    p.add_argument("--debug", action="store_true", help="on an error, also print the Python traceback")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def recipe_args(sp):
        sp.add_argument("recipe", help="a recipe YAML file, or the name of one that comes with edgekit "
                                        "(e.g. fashion_mnist_resnet8; `edgekit recipes` lists them)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set train.epochs=2 (repeatable; values parsed as YAML)")
        sp.add_argument("--out", default="runs", help="root folder of run folders (default: runs)")
        sp.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder instead of starting anew")

    sp = sub.add_parser("run", help="the whole pipeline: train, prune, distill, export, verify, bench, report",
                        description="Run every stage of a recipe and print the report table and the run folder. "
                                    "Exits 1 when an artifact misses the accuracy budget (the report is kept).")
    recipe_args(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("train", help="train the recipe's full model only (checkpoint each epoch, resumable)",
                        description="Train the recipe's full model into a run folder: checkpoints/teacher.pt, a "
                                    "resume state after every epoch, metrics.csv. Several GPUs or processes: "
                                    "torchrun --nproc_per_node N -m edgekit train RECIPE (train.batch_size is the "
                                    "global batch; rank 0 writes). Then `edgekit run RECIPE --resume RUN` finishes "
                                    "the pipeline in one process.")
    recipe_args(sp)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser(
        "compress", help="compress your own model (ONNX, file.py:factory, registry name) within an accuracy budget",
        description="Write fp32/fp16/int8 ONNX and TFLite artifacts of MODEL, verify each against the original on "
                    "evaluation data, benchmark them, and write report.md and results.json in --out. int8 searches "
                    "remedies in order of cost (per-tensor, percentile/entropy calibration, the slow operators left "
                    "in float, more samples, the most sensitive layers in float, QAT) and ships the fastest within "
                    "--budget; nothing over budget ships (exit 1). Pruning and every converter run in child "
                    "processes within --time-limit: a crash or hang there costs that step, not the command. Run "
                    "the same command again after a failure or a kill: it resumes from what was finished.",
        epilog="Examples: edgekit compress model.onnx --calib images/ --eval test_images/ --out out/ ; "
               "edgekit compress net.py:build --weights net.pt --calib data.npz --prune 0.5 --out out/")
    sp.add_argument("model", help="an .onnx file, path/to/file.py:factory (with --weights), or a model registry name")
    sp.add_argument("--calib", required=True, metavar="DATA",
                    help="calibration data: a folder of images or WAVs (class sub-folders = labels), an .npy of "
                         "inputs, an .npz with x (and y), a recipe .yaml or dataset:NAME")
    sp.add_argument("--eval", metavar="DATA", help="evaluation data, same kinds (default: a held-out half of --calib)")
    sp.add_argument("--out", required=True, help="output folder: new, empty, or this same command's earlier output "
                                                 "(resumed when unfinished, replaced when finished)")
    sp.add_argument("--weights", help="state_dict file for a PyTorch model (read with weights_only=True)")
    sp.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                    help="keyword argument of the model factory (repeatable; values parsed as YAML)")
    sp.add_argument("--input-shape", type=_shape, metavar="C,H,W",
                    help="model input without the batch, when the data cannot tell it (images for a PyTorch model)")
    sp.add_argument("--format", type=_csv, default=["onnx", "tflite"], help="onnx,tflite (default: both)")
    sp.add_argument("--precision", type=_csv, default=["fp32", "fp16", "int8"], help="fp32,fp16,int8 (default: all)")
    sp.add_argument("--prune", type=float, metavar="RATIO",
                    help="PyTorch models: prune channels to this fraction of the MACs and distil from the original")
    sp.add_argument("--budget", type=float, default=0.01,
                    help="max accuracy drop (fraction, 0.01 = 1 point); without labels, max top-1 disagreement")
    sp.add_argument("--labels", type=_csv, help="class names, comma-separated (default: from the data or model)")
    sp.add_argument("--scale", default="1/255", help="images: pixel multiplier before mean/std (default 1/255)")
    sp.add_argument("--mean", type=_floats, default=[0.0], help="images: per-channel mean subtracted (default 0)")
    sp.add_argument("--std", type=_floats, default=[1.0], help="images: per-channel std divided by (default 1)")
    sp.add_argument("--calib-samples", type=_count(1), default=2048, help="calibration samples read at most (default 2048)")
    sp.add_argument("--eval-samples", type=_count(1), default=2000, help="evaluation samples read at most (default 2000)")
    sp.add_argument("--threads", type=_threads, default=[1], help="benchmark thread counts (default 1)")
    sp.add_argument("--no-inc", action="store_true", help="skip Intel Neural Compressor's autotune comparison")
    sp.add_argument("--time-limit", type=float, default=540.0, metavar="SECONDS",
                    help="the whole command's time budget (default 540); each stage gets a share, and searches "
                         "stop trying remedies when theirs is used")
    sp.set_defaults(func=cmd_compress)

    sp = sub.add_parser("bench", help="latency and size of artifacts on every installed runtime (no torch needed)",
                        description="Batch-1 latency after a warm-up: median and p90 over --iterations runs.")
    sp.add_argument("artifacts", nargs="+", help=".onnx or .tflite files")
    sp.add_argument("--runtime", type=_csv, help="comma-separated: onnxruntime, litert, tflite-runtime, "
                                                 "tensorrt (default: every installed one for the format)")
    sp.add_argument("--threads", type=_threads, default=[1], help="comma-separated thread counts (default: 1)")
    sp.add_argument("--warmup", type=_count(0), default=20, help="untimed runs first (default: 20)")
    sp.add_argument("--iterations", type=_count(1), default=200, help="timed runs (default: 200)")
    sp.add_argument("--json", action="store_true", help="one JSON line per measurement")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("verify", help="compare artifacts with a reference artifact on labelled data",
                        description="Accuracy, top-1 agreement and max abs diff of each artifact on held-out data: "
                                    "the test split of --recipe's data set, or an .npz with arrays x (pre-processed "
                                    "inputs) and optionally y (labels).")
    sp.add_argument("artifacts", nargs="+", help=".onnx or .tflite files")
    sp.add_argument("--reference", help="artifact whose outputs are the reference (default: none, accuracy only)")
    sp.add_argument("--recipe", help="use the held-out test split of this recipe's data set")
    sp.add_argument("--data", help=".npz file with x and optionally y")
    sp.add_argument("--budget", type=float, default=0.01,
                    help="allowed accuracy drop against the reference (default: 0.01 = 1 point)")
    sp.add_argument("--limit", type=_count(1), help="use at most this many samples")
    sp.add_argument("--rules", choices=["tensorrt"],
                    help="check each ONNX file's graph against a runtime's rules and name every node that breaks "
                         "them (tensorrt: int8 zero points 0, per-channel weight scales on the output-channel axis, "
                         "Q/DQ on Conv/Gemm/MatMul inputs and both inputs of a residual Add, none before operators "
                         "TensorRT cannot fuse); with --data or --recipe, the accuracy check follows")
    sp.set_defaults(func=cmd_verify)

    sp = sub.add_parser("report", help="print the report table of a finished run folder")
    sp.add_argument("run", help="a run folder (holding results.json)")
    sp.add_argument("--markdown", action="store_true", help="print the whole report.md")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("bundle", help="pack what one device runs from a run folder into a checksummed bundle",
                        description="Copy the run's artifacts that the device profile supports (format, precision, "
                                    "runtime) with manifest.json (sha256 of every file, input spec, pre-processing, "
                                    "labels, expected accuracy) and golden.npz (held-out inputs, outputs of each "
                                    "artifact on this host's runtime). Built beside --out and renamed into place.")
    sp.add_argument("run", help="a finished run folder (results.json, golden.npz, artifacts/)")
    sp.add_argument("--device", required=True, help="device profile name (edgekit devices list) or a YAML file")
    sp.add_argument("--out", required=True, help="the bundle folder to write (an existing bundle there is replaced)")
    sp.add_argument("--artifact", type=_csv, help="comma-separated artifact names to restrict to, e.g. tflite_int8")
    sp.add_argument("--include-failed", action="store_true", help="also pack artifacts that missed the accuracy budget")
    sp.add_argument("--sign", metavar="KEY", help="private key that signs the bundle: a file or a name from `edgekit "
                                                  "keys list` (default: this machine's default key, made on first use)")
    sp.add_argument("--no-sign", action="store_true", help="make an unsigned bundle (devices refuse it unless given "
                                                           "--allow-unsigned)")
    sp.set_defaults(func=cmd_bundle)

    sp = sub.add_parser("keys", help="signing keys: make one, show it, trust a public key, list them",
                        description="Bundles are signed with Ed25519 (the manifest digest, which covers every file); "
                                    "devices run only bundles a trusted key signed. new [NAME]: a key pair in "
                                    "~/.config/edgekit/keys (EDGEKIT_HOME), trusted on this machine. show KEY: its id "
                                    "and public key. trust FILE.pub: accept bundles it signs here (deploy does this "
                                    "on the device). list: keys and trusted keys.")
    sp.add_argument("action", choices=("new", "show", "trust", "list"))
    sp.add_argument("name", nargs="?", help="new: the key's name (default: default); show/trust: a key file or name")
    sp.add_argument("--dir", help="new: where to write the key pair; trust: the trusted-keys folder to add to")
    sp.add_argument("--no-trust", action="store_true", help="new: do not trust the new key on this machine")
    sp.add_argument("--force", action="store_true", help="new: replace an existing key of that name")
    sp.set_defaults(func=cmd_keys)

    def trust_args(sp):
        sp.add_argument("--allow-unsigned", action="store_true",
                        help="run a bundle that no trusted key signed (the checksums are still checked; the report "
                             "says it was not verified)")
        sp.add_argument("--trusted-keys", metavar="DIR", help="folder of trusted public keys (default: "
                                                              "$EDGEKIT_TRUSTED_KEYS or ~/.config/edgekit/trusted-keys)")

    def ssh_args(sp):
        sp.add_argument("--host", help="user@host[:port] to reach the device over ssh (adb: the device serial)")
        sp.add_argument("--identity", metavar="KEY", help="ssh private key file (ssh -i)")
        sp.add_argument("--ssh-option", action="append", metavar="KEY=VALUE",
                        help="extra ssh -o option, e.g. UserKnownHostsFile=FILE (repeatable; host keys are always "
                             "checked: StrictHostKeyChecking=yes cannot be overridden)")
        sp.add_argument("--python", help="the device's Python (default: the profile's transport.python)")

    sp = sub.add_parser("deploy", help="copy a bundle to a device, install edgekit + runtime there, smoke-test it",
                        description="Over ssh (or locally): copy the bundle and edgekit's wheel, create a virtual "
                                    "environment, pip install edgekit and the profile's runtime, run `edgekit smoke` "
                                    "there (checksums, golden pairs, a short benchmark) and save the report as "
                                    "deploy-report-DEVICE.json next to the bundle (and in the run folder, where "
                                    "`edgekit report` shows it). Jetson: also trtexec engines. Android (adb): push, "
                                    "sha256sum, benchmark_model, pull. Exits 1 when the smoke test fails.")
    sp.add_argument("bundle", help="a bundle folder (edgekit bundle)")
    sp.add_argument("--device", help="device profile (default: the one the bundle was made for)")
    ssh_args(sp)
    sp.add_argument("--dry-run", action="store_true", help="print every command of the plan and run none")
    sp.add_argument("--emulate", action="store_true",
                    help="no device: run the smoke test in an arm64 sysroot matching the profile under qemu-user "
                         "(needs `edgekit devices prepare-emulation NAME` once; latency there is not the device's)")
    sp.add_argument("--wheelhouse", metavar="DIR",
                    help="offline install: copy these wheels (for the device's platform and Python) to the device and "
                         "pip install with --no-index --find-links; nothing is downloaded there")
    sp.add_argument("--system-site-packages", action="store_true",
                    help="create the device's environment with --system-site-packages (reuse the OS's packages)")
    sp.add_argument("--fresh", action="store_true", help="delete the device's environment first")
    sp.add_argument("--camera", action="store_true", help="also install OpenCV for `edgekit demo camera` there")
    sp.add_argument("--runtime", type=_csv, help="comma-separated runtimes to install and test (default: one per "
                                                 "artifact, the profile's first)")
    sp.add_argument("--remote-dir", help="device folder for bundles, wheels and the environment (default: profile's)")
    sp.add_argument("--threads", type=_count(1), default=1, help="runtime threads in the smoke benchmark (default: 1)")
    sp.add_argument("--iterations", type=_count(1), default=50, help="timed runs per artifact on the device (default: 50)")
    sp.add_argument("--benchmark-binary", metavar="FILE", help="adb: TFLite benchmark_model binary to push first")
    sp.add_argument("--no-tensorrt", action="store_true", help="Jetson: skip building TensorRT engines")
    sp.add_argument("--web", action="store_true",
                    help="Android: prove the bundle in the phone's browser instead (adb reverse tcp:PORT, open "
                         "http://localhost:PORT/ there: golden pairs and latency in onnxruntime-web and LiteRT.js, "
                         "report deploy-report-DEVICE-web.json), then the camera or microphone demo on the phone")
    sp.add_argument("--port", type=_count(1), default=8080, help="--web: port served here and forwarded (default: 8080)")
    sp.add_argument("--artifact", help="--web: this artifact only (default: every ONNX and TFLite artifact)")
    sp.add_argument("--timeout", type=float, default=600, help="--web: seconds to wait for the page's report "
                                                                "(default: 600)")
    sp.add_argument("--demo-seconds", type=float, help="--web: keep serving the phone's demo this long after the "
                                                       "report (default: until Ctrl-C; 0: no demo)")
    sp.add_argument("--json", action="store_true", help="print the whole report as JSON")
    trust_args(sp)
    sp.set_defaults(func=cmd_deploy)

    sp = sub.add_parser("devices", help="device profiles: list, show one, or check a real device against one",
                        description="list: every profile in devices/. show NAME: the whole profile. prepare-emulation NAME: "
                                    "download the arm64 packages and wheels emulated checks need (once). check NAME: "
                                    "connect (locally, --host over ssh) and compare the Python, glibc, architecture "
                                    "and runtime versions found with the profile; exits 1 on a mismatch.")
    sp.add_argument("action", choices=("list", "show", "check", "prepare-emulation"))
    sp.add_argument("name", nargs="?", help="device profile name or YAML file (show, check, prepare-emulation)")
    sp.add_argument("--emulate", action="store_true",
                    help="check: run --bundle on the profile's arm64 CPU under qemu instead of a real device")
    sp.add_argument("--bundle", help="check --emulate: the bundle to prove on the emulated device")
    ssh_args(sp)
    trust_args(sp)
    sp.set_defaults(func=cmd_devices)

    sp = sub.add_parser("smoke", help="on the device: verify a bundle, run its golden pairs and a short benchmark",
                        description="Checksums first (a tampered bundle exits 2 before anything runs), then each "
                                    "artifact on each installed runtime: max abs diff and top-1 agreement against "
                                    "the host outputs in the bundle, p50/p90 latency. Exits 1 when a check fails.")
    sp.add_argument("bundle", help="a bundle folder")
    sp.add_argument("--runtime", type=_csv, help="comma-separated runtimes to test (default: every installed one)")
    sp.add_argument("--threads", type=_count(1), default=1, help="runtime threads (default: 1)")
    sp.add_argument("--warmup", type=_count(0), default=10, help="untimed runs first (default: 10)")
    sp.add_argument("--iterations", type=_count(1), default=50, help="timed runs (default: 50)")
    sp.add_argument("--output", metavar="FILE", help="also write the JSON report to FILE")
    sp.add_argument("--json", action="store_true", help="print the report as one JSON line")
    trust_args(sp)
    sp.set_defaults(func=cmd_smoke)

    sp = sub.add_parser("demo", help="device demos on a bundle: camera, mic")
    demos = sp.add_subparsers(dest="demo", required=True, metavar="DEMO")
    dp = demos.add_parser("camera", help="classify camera frames live: window, MJPEG stream, video file or JSON",
                          description="Frames from OpenCV (camera index, video file or URL) -> the bundle's "
                                      "pre-processing (grayscale for 1-channel models, resize to the model input) -> "
                                      "inference -> label, confidence and FPS drawn on the frame. Shows a window "
                                      "when there is a display, otherwise serves an MJPEG stream "
                                      f"(default {'127.0.0.1:8080'}); --output writes a video.")
    dp.add_argument("bundle", help="a bundle folder")
    dp.add_argument("--source", default="0", help="camera index, video file or URL (default: 0)")
    dp.add_argument("--headless", action="store_true", help="never open a window")
    dp.add_argument("--stream", metavar="HOST:PORT", help="serve an MJPEG stream there (127.0.0.1 = this machine "
                                                          "only; 0.0.0.0 = every interface)")
    dp.add_argument("--frames", type=int, help="stop after N frames")
    dp.add_argument("--json", action="store_true", help="one JSON line per frame: frame, label, class_index, "
                                                        "confidence, latency_ms, fps")
    dp.add_argument("--output", metavar="FILE.mp4", help="write the annotated frames to a video file (.mp4 or .avi)")
    dp.add_argument("--artifact", help="artifact name in the bundle (default: the fastest runnable one)")
    dp.add_argument("--runtime", help="runtime name (default: the first installed one for the artifact)")
    dp.add_argument("--threads", type=_count(1), default=1, help="runtime and OpenCV threads (default: 1)")
    dp.add_argument("--loop", action="store_true", help="restart a video file at its end")
    dp.add_argument("--max-fps", type=float, help="pace the loop to at most this many frames per second")
    trust_args(dp)
    dp.set_defaults(func=cmd_demo_camera)

    dp = demos.add_parser("mic", help="spot keywords live from the microphone, or in a WAV file (--wav)",
                          description="A sliding 1 s window every --hop-ms -> the bundle's MFCC pre-processing -> "
                                      "inference -> smoothed posteriors -> one line per detected keyword (time, "
                                      "keyword, confidence). --wav feeds a file through the same streaming path "
                                      "(other sample rates are resampled, stereo is averaged to mono). Live input "
                                      "needs sounddevice: pip install \"edgekit[mic]\" (and Debian libportaudio2).")
    dp.add_argument("bundle", help="a keyword-spotting bundle folder")
    dp.add_argument("--wav", metavar="FILE", help="read this WAV file instead of the microphone")
    dp.add_argument("--json", action="store_true", help="one JSON line per detection: keyword, confidence, time_s")
    dp.add_argument("--hop-ms", type=float, default=200.0, help="window step in ms, 100-500 (default: 200)")
    dp.add_argument("--threshold", type=float, default=0.7,
                    help="smoothed keyword posterior that counts as a detection (default: 0.7; lower finds more "
                         "keywords and more false ones)")
    dp.add_argument("--smooth", type=_count(1), default=4,
                    help="posteriors of this many consecutive windows are averaged per decision (default: 4)")
    dp.add_argument("--threads", type=_count(1), default=1, help="runtime threads (default: 1)")
    dp.add_argument("--artifact", help="artifact name in the bundle (default: the fastest runnable one)")
    dp.add_argument("--runtime", help="runtime name (default: the first installed one for the artifact)")
    dp.add_argument("--device", help="sounddevice input device (name or index; default: the system default)")
    dp.add_argument("--seconds", type=float, help="live: stop after this many seconds (default: until Ctrl-C)")
    trust_args(dp)
    dp.set_defaults(func=cmd_demo_mic)

    dp = demos.add_parser("web", help="the bundle in a browser (a phone's too): golden pairs, latency, camera or "
                                      "microphone demo",
                          description="Serve one page, the bundle's ONNX and TFLite artifacts and the browser runtimes "
                                      "(onnxruntime-web, LiteRT.js; installed at set-up by `make web-deps`, nothing "
                                      "from a CDN). The page runs the golden pairs through each artifact in the "
                                      "browser's WebAssembly runtime with the smoke test's criteria, times each, "
                                      "posts the result back (deploy-report-<device>-web.json beside the bundle, "
                                      "shown by `edgekit report`), then starts the camera demo (image bundles) or "
                                      "the microphone demo (keyword bundles) on the fastest artifact that passed. "
                                      "Page options: ?artifact=NAME (demo on this one), ?threads=N, ?demo=0. On a "
                                      "phone over USB: `edgekit deploy BUNDLE --device android_arm64 --web` (adb "
                                      "reverse, opens the page); on a LAN: --host 0.0.0.0 --https.")
    dp.add_argument("bundle", help="a bundle folder with at least one ONNX or TFLite artifact")
    dp.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    dp.add_argument("--port", type=_count(1), default=8080, help="port (default: 8080)")
    dp.add_argument("--artifact", help="serve this artifact only (default: every ONNX and TFLite artifact)")
    dp.add_argument("--https", action="store_true", help="serve over HTTPS with edgekit's self-signed certificate "
                                                         "(kept in $EDGEKIT_HOME/web-tls; its SHA-256 fingerprint "
                                                         "is printed): the camera and microphone on a LAN phone")
    dp.add_argument("--once", action="store_true", help="stop after the first report the page posts (exit 1 when "
                                                        "it failed)")
    dp.add_argument("--timeout", type=float, help="with --once: give up after this many seconds (exit 2)")
    trust_args(dp)
    dp.set_defaults(func=cmd_demo_web)

    sp = sub.add_parser("schema", help="the recipe format as a JSON Schema, for editors that complete and check YAML",
                        description="Print (or write) the JSON Schema of recipe files: every key, its type, range "
                                    "and choices. Point your editor's YAML support at it (e.g. a "
                                    "'# yaml-language-server: $schema=recipe.schema.json' first line).")
    sp.add_argument("what", choices=["recipe"], help="which format (recipe)")
    sp.add_argument("--out", help="write the schema to this file instead of printing it")
    sp.set_defaults(func=cmd_schema)

    sp = sub.add_parser("recipes", help="the recipes that come with edgekit, by name, with their descriptions",
                        description="List the recipes shipped inside edgekit (run one by name: edgekit run NAME), or "
                                    "print one (edgekit recipes NAME > mine.yaml, to start your own).")
    sp.add_argument("name", nargs="?", help="print this recipe's YAML")
    sp.set_defaults(func=cmd_recipes)

    sp = sub.add_parser("info", help="versions of every dependency and runtime found")
    sp.set_defaults(func=cmd_info)
    return p


# The optional dependencies by import name, and the extra (pyproject.toml) that installs each.
EXTRA_OF = {"torch": "train", "torch_pruning": "train", "onnx": "train", "onnxscript": "train", "sklearn": "train",
            "matplotlib": "train", "scipy": "train", "pyroomacoustics": "train", "pydantic": "train",
            "onnxruntime": "onnx", "ai_edge_litert": "tflite", "tflite_runtime": "tflite-legacy", "cv2": "camera",
            "sounddevice": "mic", "litert_torch": "convert", "torchao": "convert", "neural_compressor": "inc"}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the problem, where to read more), not the whole usage text."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _subject(args) -> str:
    """The file or folder a command works on, to name in an unexpected error."""
    for attr in ("bundle", "model", "recipe", "run", "artifacts", "name"):
        value = getattr(args, attr, None)
        if value:
            return ", ".join(value) if isinstance(value, list) else str(value)
    return f"edgekit {args.command}"


def _unexpected(args, exc: BaseException) -> int:
    """The last line of defence: one line naming the file and the problem; the traceback with --debug."""
    from edgekit.errors import describe

    if isinstance(exc, OSError) and exc.filename:
        what = f"{exc.filename}: {exc.strerror or describe(exc)}"
    elif isinstance(exc, MemoryError):
        what = f"{_subject(args)}: out of memory"
    else:
        what = f"{_subject(args)}: {describe(exc)}"
    print(f"edgekit: error: {what} (unexpected; --debug shows the traceback)", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    # The TFLite converter and interpreter log every step at INFO through absl/glog; keep warnings and errors.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(torch|litert_torch|torchao|copyreg).*")
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ["EDGEKIT_VERBOSE"] = "1"  # children too
    elif argv is None:  # the command line itself, not a caller's own process
        from edgekit.quiet import filter_stderr

        filter_stderr()
    from edgekit.log import setup

    setup()
    try:
        return args.func(args)
    except EdgekitError as exc:
        if args.debug:
            raise
        print(f"edgekit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgekit: interrupted; finished stages are kept, continue with --resume RUN", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:  # an optional dependency this command needs: name the extra that brings it
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_OF or args.debug:
            if args.debug:
                raise
            return _unexpected(args, exc)
        print(f"edgekit: error: `edgekit {args.command}` needs {top}, which is not installed here: "
              f'pip install "edgekit[{EXTRA_OF[top]}]"', file=sys.stderr)
        return 2
    except BrokenPipeError:  # `edgekit devices list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - whatever input no check above foresaw: still one line, exit 2
        if args.debug or os.environ.get("EDGEKIT_DEBUG") == "1":
            raise
        return _unexpected(args, exc)


if __name__ == "__main__":
    raise SystemExit(main())
