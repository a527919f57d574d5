"""Jetson: TensorRT engines built and timed on the device with NVIDIA's ``trtexec``, then the golden pairs.

Engines are tied to the GPU and the TensorRT version, so they are built where they run: from the bundle's
ONNX fp32 file an fp32 engine and an fp16 engine (``--fp16``), and from its TensorRT-ready int8 file
(``onnx_int8_tensorrt``: symmetric int8 Q/DQ, edgekit.export.onnx_tensorrt) an int8 engine (``--int8
--fp16``: the Q/DQ nodes carry the scales, the layers they do not cover may run in fp16). edgekit's
onnxruntime int8 file is not used: its activations are uint8 with zero points, which TensorRT refuses.
The timings (``Latency`` and ``GPU Compute Time`` lines) are parsed from trtexec's output; then
``edgekit smoke --runtime tensorrt`` runs the bundle's golden pairs through TensorRT's Python API on the
device (edgekit.device.runtime.tensorrt), which builds and caches its own engines the same way.
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath

from edgekit.deploy.transports import Step, Transport, flag_path, remote_path

MODES = ("fp32", "fp16")  # engine precisions built from the fp32 ONNX file
INT8_MODES = ("int8",)  # and from the TensorRT-ready int8 file
WARMUP_MS = 500  # trtexec --warmUp is in milliseconds


def trtexec_argv(binary: str, onnx: str, engine: str, *, input_name: str, shape: list[int], mode: str,
                 iterations: int = 200) -> list[str]:
    """trtexec's arguments to build ``engine`` from ``onnx`` at ``mode`` and time it (batch from ``shape``).

    Example:
        >>> trtexec_argv("/usr/src/tensorrt/bin/trtexec", "m.onnx", "m.fp16.engine", input_name="input",
        ...              shape=[1, 1, 28, 28], mode="fp16")[-1]
        '--fp16'
    """
    dims = "x".join(str(d if isinstance(d, int) and d > 0 else 1) for d in shape)
    argv = [binary, f"--onnx={onnx}", f"--saveEngine={engine}", f"--shapes={input_name}:{dims}",
            f"--warmUp={WARMUP_MS}", f"--iterations={int(iterations)}", "--duration=0"]
    if mode == "fp16":
        argv.append("--fp16")
    elif mode == "int8":
        argv += ["--int8", "--fp16"]
    return argv


def trtexec_steps(b, dev, tr: Transport, bdir: str, *, iterations: int = 200) -> list[Step]:
    """One step per ONNX artifact TensorRT takes and engine precision: build the engine, then time it."""
    rt = dev.runtimes["tensorrt"]
    binary = rt.binary or "trtexec"
    edir = f"{bdir}.engines"
    steps = []
    for art in b.artifacts:
        if "tensorrt" not in art.runtimes:
            continue
        rel = art.path.relative_to(b.path).as_posix()
        onnx = f"{bdir}/{rel}"
        for mode in INT8_MODES if art.precision == "int8_tensorrt" else MODES:
            engine = f"{edir}/{PurePosixPath(rel).stem}.{mode}.engine"
            argv = trtexec_argv(binary, onnx, engine, input_name=b.input.get("name", "input"),
                                shape=b.input["shape"], mode=mode, iterations=iterations)
            # Paths go through remote_path (a leading ~ must expand on the device); the rest are plain words.
            words = [remote_path(binary), flag_path("--onnx", onnx), flag_path("--saveEngine", engine),
                     *(shlex.quote(a) for a in argv[3:])]
            cmd = f"mkdir -p {remote_path(edir)} && {' '.join(words)}"
            # A failed build is a result to report (e.g. an operator TensorRT lacks), not a reason to stop.
            steps.append(Step(f"tensorrt {art.name} {mode}", tuple(tr.shell(cmd)),
                              capture=f"trtexec:{art.name}:{mode}", ok_codes=(), timeout=3600))
    return steps


def golden_step(b, tr: Transport, vpy: str, bdir: str, *, iterations: int, allow_unsigned: bool) -> Step | None:
    """The bundle's golden pairs through TensorRT on the device (needs JetPack's tensorrt in the venv)."""
    if not any("tensorrt" in a.runtimes for a in b.artifacts):
        return None
    cmd = (f"{remote_path(vpy)} -m edgekit smoke {remote_path(bdir)} --json --runtime tensorrt "
           f"--iterations {int(iterations)}" + (" --allow-unsigned" if allow_unsigned else ""))
    # A failure (no GPU, a layer TensorRT lacks) is a result for the report, like a failed trtexec build.
    return Step("tensorrt golden pairs", tuple(tr.shell(cmd)), capture="tensorrt-smoke", ok_codes=(), timeout=3600)


# "[I] Latency: ..." but not "[I] H2D Latency: ...": the name must follow the log prefix directly.
_LINE = re.compile(r"(?:^|\]\s)(Latency|GPU Compute Time|Throughput): (.*)$")
_PAIR = re.compile(r"(min|max|mean|median|percentile\(\d+(?:\.\d+)?%\)) = ([\d.eE+-]+) ms")


def parse_trtexec(stdout: str, returncode: int = 0) -> dict:
    """Numbers from trtexec's performance summary.

    Returns:
        ``{"passed", "latency_ms": {min, max, mean, median, p90...}, "gpu_compute_ms": {...}, "qps", "error"}``;
        ``passed`` is True when trtexec printed ``&&&& PASSED`` and exited 0.
    """
    out: dict = {"passed": returncode == 0 and "&&&& PASSED" in stdout, "latency_ms": {}, "gpu_compute_ms": {},
                 "qps": None, "error": None}
    for line in stdout.splitlines():
        m = _LINE.search(line)
        if not m:
            continue
        if m.group(1) == "Throughput":
            q = re.match(r"([\d.]+) qps", m.group(2))
            out["qps"] = float(q.group(1)) if q else None
            continue
        key = "latency_ms" if m.group(1) == "Latency" else "gpu_compute_ms"
        for name, value in _PAIR.findall(m.group(2)):
            name = re.sub(r"percentile\(([\d.]+)%\)", lambda p: f"p{float(p.group(1)):g}", name)  # p90, p99.9
            out[key][name] = float(value)
    if not out["passed"]:
        errors = [ln.strip() for ln in stdout.splitlines() if "[E]" in ln or "FAILED" in ln]
        out["error"] = errors[-1] if errors else f"trtexec exited {returncode}"
    return out
