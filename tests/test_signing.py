"""Devices run only bundles that a trusted key signed: the digest proves a bundle whole, the signature who made it."""

from __future__ import annotations

import base64
import json
import shutil
import stat

import pytest

from edgekit import rundir
from edgekit.device import signing
from edgekit.device.bundle import MANIFEST, load_bundle, manifest_digest
from edgekit.errors import ConfigError, DataError
from edgekit.pack import bundle

from .conftest import edgekit


@pytest.fixture(scope="module")
def signed(digits_run, tmp_path_factory):
    """A bundle signed with this machine's default key (what `edgekit bundle` and `edgekit run` make)."""
    return bundle(digits_run, "x86_64_linux", tmp_path_factory.mktemp("signed") / "b")


@pytest.fixture
def copy(signed, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(signed.path, dst)
    return dst


def one_line_refusal(proc, *words):
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr


def test_the_signed_default_bundle_runs(signed):
    default_id = signing.load_public(signing.default_key()).key_id
    assert signed.signature == {"status": "verified", "key_id": default_id, "key_name": "default"}
    proc = edgekit("smoke", str(signed.path), "--json", "--iterations", "5")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["passed"] and rep["signature"]["status"] == "verified" and rep["signature"]["key_id"] == default_id
    text = edgekit("smoke", str(signed.path), "--iterations", "5").stdout
    assert f"signature: verified, key default ({default_id})" in text


def test_a_swapped_file_with_its_digest_recomputed_is_refused(copy):
    """The attack the digest alone cannot stop: the model replaced, its sha256 and the manifest digest redone."""
    victim, other = copy / "artifacts" / "model_int8.onnx", copy / "artifacts" / "model_fp32.onnx"
    victim.write_bytes(other.read_bytes())
    m = json.loads((copy / MANIFEST).read_text())
    m["files"]["artifacts/model_int8.onnx"] = {"sha256": rundir.sha256(victim), "size_bytes": victim.stat().st_size}
    m["digest"] = manifest_digest(m)
    (copy / MANIFEST).write_text(json.dumps(m))
    key_id = json.loads((copy / signing.SIGNATURE).read_text())["key_id"]
    with pytest.raises(DataError, match="signs another manifest"):
        load_bundle(copy)
    one_line_refusal(edgekit("smoke", str(copy), "--json"), str(copy), key_id, "refused")
    # ... and re-signed with the attacker's own key: a key nobody trusted
    _, stranger = signing.new_key("mallory", copy.parent / "keys", trust=False)
    signing.sign(copy, m["digest"], copy.parent / "keys" / "mallory.key")
    one_line_refusal(edgekit("smoke", str(copy), "--json"), str(copy), stranger.key_id, "not trusted")
    one_line_refusal(edgekit("demo", "camera", str(copy), "--source", "nothing.avi", "--headless"), stranger.key_id)


def test_a_bundle_signed_by_an_unknown_key_is_refused_until_trusted(digits_run, tmp_path):
    key, pub = signing.new_key("release", tmp_path / "keys", trust=False)
    proc = edgekit("bundle", str(digits_run), "--device", "x86_64_linux", "--out", str(tmp_path / "b"), "--sign", str(key))
    assert proc.returncode == 0, proc.stderr
    assert f"release ({pub.key_id})" in proc.stdout or pub.key_id in proc.stdout
    one_line_refusal(edgekit("smoke", str(tmp_path / "b")), str(tmp_path / "b"), pub.key_id, "keys trust")
    proc = edgekit("keys", "trust", str(pub.path), "--dir", str(tmp_path / "trusted"))
    assert proc.returncode == 0 and pub.key_id in proc.stdout, proc.stderr
    proc = edgekit("smoke", str(tmp_path / "b"), "--trusted-keys", str(tmp_path / "trusted"), "--json",
                   "--iterations", "5")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["signature"] == {"status": "verified", "key_id": pub.key_id, "key_name": "release"}


def test_a_forged_signature_is_refused(copy):
    sig = json.loads((copy / signing.SIGNATURE).read_text())
    raw = bytearray(base64.b64decode(sig["signature"]))
    raw[7] ^= 1
    sig["signature"] = base64.b64encode(bytes(raw)).decode()
    (copy / signing.SIGNATURE).write_text(json.dumps(sig))
    with pytest.raises(DataError, match="does not verify"):
        load_bundle(copy)
    (copy / signing.SIGNATURE).write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        load_bundle(copy)


def test_unsigned_bundles_run_only_when_allowed_and_the_report_says_so(digits_run, tmp_path):
    b = bundle(digits_run, "x86_64_linux", tmp_path / "b", signed=False)
    assert not (b.path / signing.SIGNATURE).exists() and b.signature["status"] == "unsigned"
    one_line_refusal(edgekit("smoke", str(b.path)), "unsigned", "--allow-unsigned")
    proc = edgekit("smoke", str(b.path), "--allow-unsigned", "--json", "--iterations", "5")
    assert proc.returncode == 0, proc.stderr
    sig = json.loads(proc.stdout)["signature"]
    assert sig["status"] == "unsigned" and sig["allowed"] is True
    assert "signature: NOT verified (unsigned" in edgekit("smoke", str(b.path), "--allow-unsigned",
                                                          "--iterations", "5").stdout
    with pytest.raises(DataError, match="unsigned"):
        load_bundle(b.path)


def test_keys_are_private_to_their_owner_and_never_overwritten(tmp_path):
    key, pub = signing.new_key("ci", tmp_path / "keys", trust=False)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(pub.key_id) == 16
    assert signing.load_public(key).raw == pub.raw == signing.load_public(pub.path).raw
    with pytest.raises(ConfigError, match="exists"):
        signing.new_key("ci", tmp_path / "keys")
    with pytest.raises(ConfigError, match="letters, digits"):
        signing.new_key("../evil", tmp_path / "keys")
    (tmp_path / "junk.key").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(DataError, match="junk.key: not an unencrypted PEM private key"):
        signing.load_private(tmp_path / "junk.key")
    first = signing.trust_key(pub.path, tmp_path / "t")
    assert signing.trust_key(key, tmp_path / "t") == first  # trusting twice adds nothing
    assert list(signing.trusted_keys(tmp_path / "t")) == [pub.key_id]
    proc = edgekit("keys", "show", str(key))
    assert proc.returncode == 0 and pub.key_id in proc.stdout and "BEGIN PUBLIC KEY" in proc.stdout
    one_line_refusal(edgekit("keys", "show", str(tmp_path / "junk.key")), "junk.key")


def test_deploy_installs_the_signers_public_key_on_the_device(signed):
    from edgekit.deploy import plan, transport_for
    from edgekit.devices import load

    dev = load("x86_64_linux")
    steps = plan(signed, dev, transport_for(dev, host="pi@192.0.2.1"))
    names = [s.name for s in steps]
    trust = steps[names.index(f"trust key {signed.signature['key_id']}")]
    assert names.index(trust.name) < names.index("smoke test")
    assert signing.public_pem(signing.load_public(signing.default_key())).decode().strip() in trust.render()
    assert "trusted-keys" in trust.render() and "--allow-unsigned" not in steps[names.index("smoke test")].render()
    assert any("signature.json" in s.render() for s in steps if s.name.startswith("copy bundle"))
