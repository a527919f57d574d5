"""Deploy: a real sshd on loopback, a fresh environment, the smoke test there, the report back; and the exact
commands of the transports that cannot run here (adb, trtexec), with --dry-run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from edgekit import devices
from edgekit.deploy import DeployError, deploy, plan, requirements, transport_for
from edgekit.deploy.android import check_sums, parse_benchmark
from edgekit.deploy.jetson import parse_trtexec, trtexec_argv
from edgekit.deploy.transports import SSH_FIXED, AdbTransport, SshTransport, parse_host, remote_path
from edgekit.device.bundle import load_bundle
from edgekit.devices import load as load_device
from edgekit.errors import ConfigError, DataError
from edgekit.pack import bundle

from .conftest import ROOT, edgekit, free_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"  # gitignored; filled once with `pip download`, reused afterwards


@pytest.fixture(scope="module")
def bundles(digits_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {name: bundle(digits_run, name, root / name) for name in ("x86_64_linux", "android_arm64",
                                                                     "jetson_orin_nano")}


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """OpenSSH's sshd on 127.0.0.1 with a throwaway host key and user key, logging in as the current (root) user."""
    if not Path(SSHD).exists() or not shutil.which("ssh"):
        pytest.skip("needs openssh-server and openssh-client (scripts/setup-system.sh installs them)")
    if os.geteuid() != 0:
        pytest.skip("sshd's privilege separation needs root")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
SetEnv EDGEKIT_HOME={d / 'device-home'}
""")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation folder sshd insists on
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=open(d / "sshd.log", "w"))
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text()}")
            time.sleep(0.05)
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    user = os.environ.get("USER") or "root"
    options = ("-F", "none", "-i", str(d / "user_key"), "-o", "IdentitiesOnly=yes",
               "-o", f"UserKnownHostsFile={d / 'known_hosts'}", "-o", "GlobalKnownHostsFile=/dev/null")
    yield {"host": f"{user}@127.0.0.1:{port}", "options": options, "dir": d, "port": port, "home": d / "device-home"}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def wheelhouse():
    """Wheels of the device side's dependencies, filled by `make test` (scripts/wheelhouse.py) before the tests."""
    if not (WHEELHOUSE / ".pins").is_file():
        if os.environ.get("CI"):
            pytest.fail("CI must fill the wheelhouse first: make test runs scripts/wheelhouse.py")
        pytest.skip("no wheelhouse: run `.venv/bin/python scripts/wheelhouse.py` (make test does)")
    return WHEELHOUSE


def _ssh(sshd, command: str) -> subprocess.CompletedProcess:
    user, host, port = parse_host(sshd["host"])
    argv = SshTransport(host=host, user=user, port=port, options=sshd["options"]).shell(command)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def deployed(bundles, sshd, wheelhouse, tmp_path_factory):
    remote = tmp_path_factory.mktemp("device") / "edgekit home"  # a space: every remote path must be quoted
    t0 = time.perf_counter()
    res = deploy(bundles["x86_64_linux"], "x86_64_linux", host=sshd["host"], ssh_options=sshd["options"],
                 wheelhouse=wheelhouse, remote_dir=str(remote), fresh=True, iterations=20, log=lambda m: None)
    return res, remote, time.perf_counter() - t0


@pytest.mark.slow
def test_deploy_over_ssh_installs_into_a_fresh_environment_and_the_smoke_test_passes(deployed, bundles, sshd):
    res, remote, seconds = deployed
    assert res.passed, json.dumps(res.report.get("smoke", {}).get("problems"))
    rep = res.report
    assert rep["install"]["runtimes"] == ["onnxruntime", "litert"] and rep["transport"] == "ssh"
    venv_py = remote / "venv" / "bin" / "python"
    assert venv_py.is_file()
    found = subprocess.run([str(venv_py), "-c", "import importlib.util as u, edgekit; "
                            "print(edgekit.__file__, u.find_spec('torch') is None)"], capture_output=True, text=True,
                           cwd=remote)  # not the checkout: python -c puts the working folder first on sys.path
    assert str(remote) in found.stdout and found.stdout.split()[-1] == "True"  # its own copy, without torch
    smoke = rep["smoke"]
    assert smoke["checksums"].startswith("ok") and smoke["environment"]["python"]
    # the device checked the signature against the public key deploy installed in its own trusted-keys folder
    assert smoke["signature"]["status"] == "verified" == rep["signature"]["status"]
    assert list((sshd["home"] / "trusted-keys").glob(f"*{smoke['signature']['key_id']}.pub"))
    assert {(r["artifact"], r["runtime"]) for r in smoke["results"]} == {
        ("onnx_fp32", "onnxruntime"), ("onnx_int8", "onnxruntime"), ("tflite_int8", "litert")}
    for r in smoke["results"]:
        assert r["passed"] and r["top1_agreement"] == 1.0 and r["p50_ms"] > 0, r
    assert "torch" not in smoke["environment"]["versions"]
    print(f"deploy over loopback ssh: {seconds:.1f} s; steps {rep['timings_s']}")


@pytest.mark.slow
def test_the_report_comes_back_next_to_the_bundle_and_into_the_run(deployed, bundles, digits_run):
    res, _, _ = deployed
    assert res.report_path == bundles["x86_64_linux"].path.parent / "deploy-report-x86_64_linux.json"
    saved = json.loads(res.report_path.read_text())
    assert saved["passed"] and saved["smoke"]["results"] == res.report["smoke"]["results"]
    assert json.loads((digits_run / "deploy" / "x86_64_linux.json").read_text())["created"] == saved["created"]
    proc = edgekit("report", str(digits_run))
    assert proc.returncode == 0, proc.stderr
    assert "## On the device" in proc.stdout and "x86_64_linux" in proc.stdout
    assert "| tflite_int8 | litert 1T | 1.0000 |" in proc.stdout


@pytest.mark.slow
def test_a_flipped_byte_on_the_device_is_refused_there_before_anything_runs(deployed, sshd):
    _, remote, _ = deployed
    bdir = remote / "bundles" / "x86_64_linux"
    target = bdir / "artifacts" / "model_int8.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    py = remote_path(str(remote / "venv" / "bin" / "python"))
    proc = _ssh(sshd, f"{py} -m edgekit smoke {remote_path(str(bdir))} --json")
    assert proc.returncode == 2 and proc.stdout == ""  # no report: nothing ran
    assert "bundle refused" in proc.stderr and "artifacts/model_int8.tflite: sha256 differs" in proc.stderr


@pytest.mark.slow
def test_devices_check_over_ssh_sees_the_deployed_environment(deployed, sshd):
    _, remote, _ = deployed
    prof = (devices.shipped_dir() / "x86_64_linux.yaml").read_text().replace("~/.cache/edgekit/device", str(remote))
    path = sshd["dir"] / "x86_64_linux.yaml"
    path.write_text(prof)
    opts = ["--identity", sshd["options"][3], "--ssh-option", sshd["options"][7]]
    proc = edgekit("devices", "check", str(path), "--host", sshd["host"], *opts)
    assert "onnxruntime [edgekit environment]" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout


def test_a_flipped_byte_is_refused_locally_before_any_command(bundles, tmp_path):
    copy = tmp_path / "x86"
    shutil.copytree(bundles["x86_64_linux"].path, copy)
    onnx = copy / "artifacts" / "model_int8.onnx"
    data = bytearray(onnx.read_bytes())
    data[100] ^= 0x01
    onnx.write_bytes(bytes(data))
    ran = []
    with pytest.raises(DataError, match=r"artifacts/model_int8.onnx: sha256 differs"):
        deploy(copy, "x86_64_linux", host="root@127.0.0.1:1", log=ran.append)
    assert ran == []
    proc = edgekit("deploy", str(copy), "--host", "root@127.0.0.1:1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "model_int8.onnx" in proc.stderr


def test_host_keys_are_checked(bundles, sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    opts = [o if not o.startswith("UserKnownHostsFile=") else f"UserKnownHostsFile={empty}" for o in sshd["options"]]
    opts += ["-o", "StrictHostKeyChecking=no"]  # ignored: edgekit's own setting comes first and ssh keeps the first
    with pytest.raises(DeployError, match="Host key verification failed"):
        deploy(bundles["x86_64_linux"], host=sshd["host"], ssh_options=opts, log=lambda m: None)


def test_ssh_commands_are_argument_lists_with_quoted_remote_paths(bundles):
    b, dev = bundles["x86_64_linux"], load_device("x86_64_linux")
    tr = transport_for(dev, host="pi@example.org:2222", ssh_options=("-i", "k"))
    steps = plan(b, dev, tr, remote_dir="~/my dir; rm -rf /", wheelhouse=None)
    head = ["ssh", *SSH_FIXED, "-i", "k", "-p", "2222", "--", "pi@example.org"]
    for s in steps:
        assert list(s.argv[: len(head)]) == head and len(s.argv) == len(head) + 1  # one command string each
    by = {s.name: s.argv[-1] for s in steps}
    assert by["create environment"] == ("if [ ! -x \"$HOME\"/'my dir; rm -rf /venv/bin/python' ]; then python3 -m "
                                        "venv \"$HOME\"/'my dir; rm -rf /venv'; fi")
    assert by["smoke test"].endswith("--json --threads 1 --iterations 50 --runtime onnxruntime,litert")
    assert "'onnxruntime>=1.18' 'ai-edge-litert>=1.2'" in by["install"]
    assert [s.name for s in steps] == ["check the device", "copy bundle", "copy wheels",
                                       f"trust key {b.signature['key_id']}", "create environment", "install",
                                       "smoke test"]
    assert {a for _, a in steps[1].upload} == {"manifest.json", "signature.json", *b.manifest["files"]}


def test_host_strings_cannot_smuggle_options():
    assert parse_host("pi@raspberrypi.local") == ("pi", "raspberrypi.local", None)
    assert parse_host("root@[::1]:2222") == ("root", "[::1]", 2222)
    for bad in ("-oProxyCommand=sh", "pi@host:port", "a b@host", ""):
        with pytest.raises(ConfigError):
            parse_host(bad)
    with pytest.raises(ConfigError):
        SshTransport(host="-oProxyCommand=x")
    with pytest.raises(ConfigError, match="pass --host"):
        transport_for(load_device("aarch64_linux"))  # its profile names no host


def test_wheelhouse_and_system_site_packages_options(bundles):
    b, dev = bundles["x86_64_linux"], load_device("x86_64_linux")
    tr = transport_for(dev)
    steps = {s.name: s for s in plan(b, dev, tr, wheelhouse=ROOT / "tests", system_site_packages=True, fresh=True,
                                     camera=True, runtimes=["onnxruntime"])}
    assert steps["install"].argv[:2] == ("sh", "-c")
    assert "--no-index --find-links" in steps["install"].argv[-1]
    assert "'opencv-python-headless>=4.8'" in steps["install"].argv[-1]
    assert "ai-edge-litert" not in steps["install"].argv[-1]
    assert steps["create environment"].argv[-1].startswith("rm -rf ")
    assert "-m venv --system-site-packages " in steps["create environment"].argv[-1]
    with pytest.raises(ConfigError, match="Did you mean 'litert'"):
        requirements(b, dev, runtimes=["litrt"])


def test_jetson_builds_fp32_and_fp16_engines_with_trtexec(bundles):
    b, dev = bundles["jetson_orin_nano"], load_device("jetson_orin_nano")
    assert trtexec_argv("/usr/src/tensorrt/bin/trtexec", "/b/artifacts/model_fp32.onnx", "/e/m.fp16.engine",
                        input_name="input", shape=[1, 1, 8, 8], mode="fp16", iterations=200) == [
        "/usr/src/tensorrt/bin/trtexec", "--onnx=/b/artifacts/model_fp32.onnx", "--saveEngine=/e/m.fp16.engine",
        "--shapes=input:1x1x8x8", "--warmUp=500", "--iterations=200", "--duration=0", "--fp16"]
    steps = plan(b, dev, transport_for(dev, host="nvidia@jetson.local"), remote_dir="/opt/ek")
    trt = [s for s in steps if s.name.startswith("tensorrt")]
    assert [s.name for s in trt] == ["tensorrt onnx_fp32 fp32", "tensorrt onnx_fp32 fp16",  # not the uint8 QDQ int8
                                     "tensorrt golden pairs"]
    assert trt[1].argv[-1] == (
        "mkdir -p /opt/ek/bundles/jetson_orin_nano.engines && /usr/src/tensorrt/bin/trtexec "
        "--onnx=/opt/ek/bundles/jetson_orin_nano/artifacts/model_fp32.onnx "
        "--saveEngine=/opt/ek/bundles/jetson_orin_nano.engines/model_fp32.fp16.engine --shapes=input:1x1x8x8 "
        "--warmUp=500 --iterations=100 --duration=0 --fp16")
    assert "'onnxruntime>=1.18,<1.24'" in next(s for s in steps if s.name == "install").argv[-1]
    assert not [s for s in plan(b, dev, transport_for(dev, host="j"), tensorrt=False) if "tensorrt" in s.name]


TRTEXEC_OUT = """\
[11/25/2026-10:00:00] [I] === Performance summary ===
[11/25/2026-10:00:00] [I] Throughput: 4215.32 qps
[11/25/2026-10:00:00] [I] Latency: min = 0.213867 ms, max = 0.443359 ms, mean = 0.231224 ms, median = 0.228516 ms, \
percentile(90%) = 0.240723 ms, percentile(95%) = 0.248047 ms, percentile(99%) = 0.291016 ms
[11/25/2026-10:00:00] [I] H2D Latency: min = 0.01 ms, max = 0.02 ms, mean = 0.011 ms, median = 0.011 ms, \
percentile(90%) = 0.012 ms, percentile(95%) = 0.013 ms, percentile(99%) = 0.019 ms
[11/25/2026-10:00:00] [I] GPU Compute Time: min = 0.0957031 ms, max = 0.30957 ms, mean = 0.104561 ms, \
median = 0.102539 ms, percentile(90%) = 0.111328 ms, percentile(95%) = 0.115723 ms, percentile(99%) = 0.145508 ms
&&&& PASSED TensorRT.trtexec [TensorRT v100300] # /usr/src/tensorrt/bin/trtexec --onnx=m.onnx
"""


def test_trtexec_output_is_parsed():
    r = parse_trtexec(TRTEXEC_OUT, 0)
    assert r["passed"] and r["qps"] == 4215.32
    assert r["latency_ms"]["median"] == 0.228516 and r["latency_ms"]["p90"] == 0.240723  # not H2D's
    assert r["gpu_compute_ms"]["p99"] == 0.145508
    bad = parse_trtexec("[E] Error[4]: [network.cpp::validate::3100] Error Code 4: Internal Error\n"
                        "&&&& FAILED TensorRT.trtexec\n", 1)
    assert not bad["passed"] and "FAILED" in bad["error"]


def test_android_commands_push_verify_benchmark_pull(bundles, tmp_path):
    b, dev = bundles["android_arm64"], load_device("android_arm64")
    tr = transport_for(dev, host="R58M123ABC")
    steps = plan(b, dev, tr, benchmark_binary=Path("bm"), results_dir=tmp_path / "res", threads=2, iterations=30)
    argv = {s.name: list(s.argv) for s in steps}
    base, bd = ["adb", "-s", "R58M123ABC"], "/data/local/tmp/edgekit/bundles/android_arm64"
    assert argv["check the device"] == [*base, "shell", "getprop ro.product.cpu.abi"]
    assert argv["copy bundle: push"] == [*base, "push", str(b.path), f"{bd}.partial"]
    assert argv["copy benchmark binary"] == [*base, "push", "bm", "/data/local/tmp/edgekit/benchmark_model"]
    assert argv["verify checksums on the device"] == [*base, "shell", f"cd {bd} && sha256sum manifest.json "
                                                      "signature.json artifacts/model_int8.tflite golden.npz"]
    assert argv["benchmark tflite_int8"] == [*base, "shell", (
        f"/data/local/tmp/edgekit/benchmark_model --graph={bd}/artifacts/model_int8.tflite --num_threads=2 "
        f"--warmup_runs=10 --num_runs=30 --use_xnnpack=true --report_peak_memory_footprint=true "
        f"> {bd}.results/tflite_int8.txt 2>&1")]
    assert argv["pull results"] == [*base, "pull", f"{bd}.results", str(tmp_path / "res")]
    with pytest.raises(ConfigError, match="ssh options do not apply"):
        transport_for(dev, ssh_options=("-i", "k"))
    with pytest.raises(ConfigError):
        AdbTransport(serial="-s x")


def test_benchmark_model_output_and_device_checksums_are_parsed(bundles):
    text = ("INFO: Inference timings in us: Init: 4570, First inference: 1466, Warmup (avg): 187.5, "
            "Inference (avg): 185.25\nINFO: Memory footprint delta from the start of the tool (MB): init=2.1 "
            "overall=3.2\nINFO: Peak memory footprint (MB): init=2.9 overall=3.5\n")
    r = parse_benchmark(text)
    assert r["passed"] and r["mean_ms"] == pytest.approx(0.18525) and r["init_ms"] == pytest.approx(4.57)
    assert r["peak_memory_mb"] == 3.5
    assert not parse_benchmark("sh: /data/local/tmp/edgekit/benchmark_model: not found")["passed"]
    b = bundles["android_arm64"]
    from edgekit import rundir

    good = "\n".join(f"{v['sha256']}  {k}" for k, v in b.manifest["files"].items())
    good += f"\n{rundir.sha256(b.path / 'manifest.json')}  manifest.json"
    assert check_sums(b, good) == ["signature.json: missing on the device"]  # the signature is pushed and checked too
    good += f"\n{rundir.sha256(b.path / 'signature.json')}  signature.json"
    assert check_sums(b, good) == []
    bad = good.replace(b.manifest["files"]["golden.npz"]["sha256"], "0" * 64)
    assert check_sums(b, bad) == ["golden.npz: sha256 on the device differs from the manifest"]


FAKE_ADB = """#!/bin/sh
# adb stand-in: "device" paths are paths on this machine.
[ "$1" = "-s" ] && shift 2
cmd=$1; shift
case "$cmd" in
  shell) exec sh -c "$1" ;;
  push) cp -r "$1" "$2" ;;
  pull) cp -r "$1" "$2" ;;
  *) echo "fake adb: $cmd" >&2; exit 1 ;;
esac
"""
FAKE_BENCHMARK = """#!/bin/sh
echo "INFO: Graph: [$1]"
echo "INFO: Inference timings in us: Init: 3000, First inference: 900, Warmup (avg): 120.5, Inference (avg): 118.25"
echo "INFO: Peak memory footprint (MB): init=2.5 overall=3.0"
"""


def test_adb_deploy_runs_end_to_end_against_a_stand_in_adb(bundles, tmp_path, monkeypatch):
    """push, sha256sum, benchmark_model and pull, with adb and benchmark_model replaced by scripts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("adb", FAKE_ADB), ("benchmark_model", FAKE_BENCHMARK),
                       ("getprop", "#!/bin/sh\necho arm64-v8a\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    device = tmp_path / "phone"
    text = (devices.shipped_dir() / "android_arm64.yaml").read_text().replace("/data/local/tmp/edgekit", str(device))
    (tmp_path / "android_arm64.yaml").write_text(text)
    dev = load_device(tmp_path / "android_arm64.yaml")
    b = load_bundle(bundles["android_arm64"].path)
    res = deploy(b, dev, benchmark_binary=bin_dir / "benchmark_model", log=lambda m: None)
    assert res.report["probe"]["abi"] == "arm64-v8a"
    assert res.passed and res.report["checksums"].startswith("ok on the device")
    (row,) = res.report["benchmark"]
    assert row["artifact"] == "tflite_int8" and row["mean_ms"] == pytest.approx(0.11825)
    assert "not checked" in res.report["golden"]
    # Tampered on the "phone": refused by the checksum step.
    target = device / "bundles" / "android_arm64" / "golden.npz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    from edgekit.deploy.android import collect

    sums = subprocess.run(["sh", "-c", f"cd '{device}/bundles/android_arm64' && sha256sum manifest.json golden.npz "
                           "artifacts/model_int8.tflite"], capture_output=True, text=True).stdout
    with pytest.raises(DeployError, match="golden.npz: sha256 on the device differs"):
        collect(b, {"sha256": {"stdout": sums}}, tmp_path)


@pytest.mark.parametrize("device, host, expect", [
    ("x86_64_linux", None, "sh -c"),
    ("x86_64_linux", "me@10.0.0.2", "ssh -o StrictHostKeyChecking=yes"),
    ("jetson_orin_nano", "nvidia@10.0.0.3", "/usr/src/tensorrt/bin/trtexec"),
    ("android_arm64", None, "adb shell"),
])
def test_cli_dry_run_prints_every_command_and_runs_none(bundles, device, host, expect, tmp_path):
    args = ["deploy", str(bundles[device].path), "--dry-run"] + (["--host", host] if host else [])
    proc = edgekit(*args, "--remote-dir", str(tmp_path / "never") if device != "android_arm64" else "/data/x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# deploy ") and "dry run" in proc.stdout and expect in proc.stdout
    assert "# smoke test" in proc.stdout or "# benchmark tflite_int8" in proc.stdout
    assert not (tmp_path / "never").exists()


def test_deploy_refuses_a_bundle_made_for_another_device(bundles):
    with pytest.raises(ConfigError, match="bundled for 'android_arm64', not 'rpi5'"):
        deploy(bundles["android_arm64"], "rpi5", dry_run=True)


def test_a_failed_smoke_test_is_a_failed_check_after_the_report_is_saved(tmp_path):
    from edgekit.deploy import DeployResult, check_result
    from edgekit.errors import CheckFailed

    report = {"passed": False, "smoke": {"problems": ["onnx_int8 on onnxruntime: top-1 agreement 0.5"]}}
    with pytest.raises(CheckFailed, match="onnx_int8 on onnxruntime") as err:
        check_result(DeployResult("rpi5", "pi@h:22", (), False, report, tmp_path / "r.json"))
    assert err.value.exit_code == 1
    check_result(DeployResult("rpi5", "pi@h:22", (), False, {**report, "passed": True}, tmp_path / "r.json"))
