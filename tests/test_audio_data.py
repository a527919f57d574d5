"""Audio data: WAV reading with its documented conversions and one-line errors, Speech Commands v2 in its
published layout, and the synthesized keywords corpus (deterministic, voices held out)."""

from __future__ import annotations

import shutil
import wave

import numpy as np
import pytest

from edgekit import data
from edgekit.audio import read_wav, read_wav_rate, resample, write_wav
from edgekit.data.keywords import KEYWORDS, LABELS
from edgekit.errors import DataError
from edgekit.recipe import DataSpec


def tone(seconds: float, rate: int = 16000, freq: float = 440.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def test_read_wav_downmixes_stereo_and_resamples(tmp_path):
    x = tone(0.5, 44100)
    write_wav(tmp_path / "s.wav", np.stack([x, x * 0.0], axis=1), 44100)
    y, rate = read_wav_rate(tmp_path / "s.wav")
    assert rate == 44100 and np.allclose(y, x * 0.5, atol=1e-4)  # stereo -> mean of the channels
    z = read_wav(tmp_path / "s.wav", sample_rate=16000)
    assert len(z) == 8000
    spectrum = np.abs(np.fft.rfft(z))
    assert abs(int(np.argmax(spectrum)) * 16000 / len(z) - 440) < 3  # the tone survives resampling


def test_resampling_removes_what_the_new_rate_cannot_hold():
    hiss = tone(1.0, 48000, freq=12000)  # above the 8 kHz Nyquist frequency of 16 kHz
    assert np.abs(resample(hiss, 48000, 16000)[50:-50]).max() < 0.02  # (the ends see the filter's zero padding)


@pytest.mark.parametrize("case, message", [
    ("missing", "no such WAV file"), ("empty", "no audio samples"), ("truncated", "truncated"),
    ("not_wav", "not a PCM WAV file"),
])
def test_bad_wav_files_get_one_line_errors(tmp_path, case, message):
    path = tmp_path / f"{case}.wav"
    if case == "empty":
        write_wav(path, np.zeros(0, np.float32))
    elif case == "truncated":
        write_wav(path, tone(1.0))
        path.write_bytes(path.read_bytes()[:5000])
    elif case == "not_wav":
        path.write_bytes(b"ID3 this is an mp3, say")
    with pytest.raises(DataError, match=message) as err:
        read_wav(path)
    assert "\n" not in str(err.value) and path.name in str(err.value)


def write_speech_commands(root, rng) -> None:
    """A miniature Speech Commands v2: 3 keywords, 2 other words, background noise and the two lists."""
    val, test = [], []
    for word in ("yes", "no", "stop", "bed", "wow"):
        (root / word).mkdir(parents=True)
        for i in range(6):
            name = f"{word}/{i:08x}_nohash_0.wav"
            n = 16000 if i % 2 else 12000  # some clips shorter than 1 s, as in the corpus
            with wave.open(str(root / name), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(16000)
                w.writeframes((rng.standard_normal(n) * 3000).astype("<i2").tobytes())
            (val if i == 4 else test if i == 5 else []).append(name)
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "white.wav", rng.standard_normal(48000).astype(np.float32) * 0.1)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")


def test_speech_commands_reads_its_published_layout(tmp_path):
    write_speech_commands(tmp_path, np.random.default_rng(0))
    s = data.load(DataSpec(name="speech_commands", root=str(tmp_path)))
    assert s.labels == LABELS and s.preprocess["kind"] == "mfcc"
    assert s.test_x.shape[1] == 16000 and s.train_x.dtype == np.float32
    counts = np.bincount(s.train_y, minlength=12)
    assert counts[KEYWORDS.index("yes")] == counts[KEYWORDS.index("stop")] == 4
    assert counts[LABELS.index("_unknown_")] == 4  # 8 other-word clips cut to the largest keyword class
    assert counts[LABELS.index("_silence_")] == 4
    assert np.bincount(s.test_y, minlength=12)[KEYWORDS.index("no")] == 1  # from testing_list.txt
    x, y = s.tensors("val")
    assert x.shape == (len(y), 1, 49, 10)
    assert s.input_shape == [1, 1, 49, 10]


def test_speech_commands_names_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="validation_list.txt"):
        data.load(DataSpec(name="speech_commands", root=str(tmp_path)))


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("flite")),
                    reason="needs Debian espeak-ng and flite (scripts/setup-system.sh)")
def test_keywords_corpus_is_deterministic_and_holds_out_whole_voices():
    from edgekit.data import keywords

    cfg = keywords.Config(seed=3, espeak_voices=4, val_espeak=1, test_espeak=1, takes=1, flite_takes=1)
    a, b = keywords.synthesize(cfg), keywords.synthesize(cfg)
    np.testing.assert_array_equal(a["test"][0], b["test"][0])
    voices = {s: set(v) for s, (_, _, v) in a.items()}
    assert not voices["train"] & voices["test"] and not voices["train"] & voices["val"]
    assert "flite:rms" in voices["test"] and "flite:awb" in voices["val"]
    x, y, _ = a["train"]
    assert x.shape[1] == 16000 and set(np.unique(y)) == set(range(12)) and np.abs(x).max() <= 1.0
