"""Audio data: WAV reading with its documented conversions and one-line errors, Speech Commands v2 in its
published layout, and the synthesized keywords corpus (deterministic, voices held out)."""

from __future__ import annotations

import shutil
import wave

import numpy as np
import pytest

from edgekit import data
from edgekit.data import keywords
from edgekit.data.keywords import KEYWORDS, LABELS
from edgekit.device.audio import parse_wav, read_wav, read_wav_rate, resample, write_wav
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


def test_a_wav_from_a_pipe_is_the_samples_that_arrived_while_a_short_file_is_truncated(tmp_path):
    """espeak-ng --stdout claims 0x7fffff00 frames: it cannot seek back to write the length."""
    path = write_wav(tmp_path / "t.wav", tone(0.5))
    data = bytearray(path.read_bytes())
    data[40:44] = (0x7FFFFF00 * 2).to_bytes(4, "little")  # the data chunk's size field, as a pipe writer leaves it
    x, rate = parse_wav(bytes(data), "espeak-ng saying 'yes'")
    assert rate == 16000 and np.array_equal(x, read_wav(path))
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="truncated"):
        read_wav(path)


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


KEYWORDS_MISSING = keywords.missing_requirements()
needs_keywords_tools = pytest.mark.skipif(bool(KEYWORDS_MISSING), reason=f"the keywords corpus needs "
                                          f"{', '.join(KEYWORDS_MISSING)} (scripts/setup-system.sh)")


@needs_keywords_tools
def test_keywords_corpus_is_deterministic_and_holds_out_whole_voices(tmp_path):
    cfg = keywords.Config(seed=3, espeak_voices=4, val_espeak=1, test_espeak=1, takes=1, other_takes=1,
                          other_takes_train=1, extra_train_espeak=2, made_espeak=2)
    mix = keywords.Mix(rooms=4)
    a = keywords.synthesize(cfg, mix=mix, copies=2)
    keywords.load_words(tmp_path, cfg)  # speaks the words and caches them
    words = keywords.load_words(tmp_path, cfg)  # reads the cache
    assert len(list(tmp_path.glob("words-*.npz"))) == 1
    for split in keywords.SPLITS:  # speaking, caching and mixing are the same every time for a seed
        again = keywords.mix_split(words[split], split, seed=3, mix=mix, copies=2 if split == "train" else 1)
        np.testing.assert_array_equal(a[split][0], again[0])
    pick = np.array([5, len(words["train"]) + 5, 0])  # copy 1 of word 5 alone is the same clip as in the whole
    np.testing.assert_array_equal(keywords.mix_split(words["train"], "train", seed=3, mix=mix, pick=pick)[0],
                                  a["train"][0][pick])
    voices = {s: set(v) for s, (_, _, v) in a.items()}
    assert not voices["train"] & voices["test"] and not voices["train"] & voices["val"]
    assert "flite:rms" in voices["test"] and "festival:ked_diphone" in voices["val"]
    assert {v.split(":")[0] for v in voices["train"]} == {"espeak", "flite", "festival"}
    extra = {f"{e}:{v}" for e, v in keywords.extra_espeak(cfg)}  # training-only voices, never a held-out one
    assert len(extra) == 2 and extra <= voices["train"]
    made = {f"{e}:{v}" for e, v in keywords.made_espeak(cfg)}  # made-up voices: training only, and they speak
    assert len(made) == 2 and made <= voices["train"]
    x, y, _ = a["train"]
    n = len(y) // 2
    assert x.shape[1] == 16000 and set(np.unique(y)) == set(range(12)) and np.abs(x).max() <= 1.0
    assert np.array_equal(y[:n], y[n:])  # two clips of every word...
    assert np.mean([np.allclose(x[i], x[n + i]) for i in range(n)]) == 0  # ...mixed differently


@needs_keywords_tools
def test_a_made_up_espeak_voice_is_its_own_speaker_and_the_same_in_every_process():
    """Made-up variants are drawn from their names: every process (and machine) remakes the same voice."""
    (_, a), (_, b) = keywords.made_espeak(keywords.Config(made_espeak=2))
    assert keywords.made_variant(a.split("+")[1]) == keywords.made_variant(a.split("+")[1])
    assert keywords.made_variant(a.split("+")[1]) != keywords.made_variant(b.split("+")[1])
    accent = a.split("+")[0]
    made, again, plain = (keywords.speak("espeak", v, "stop") for v in (a, a, accent))
    np.testing.assert_array_equal(made, again)
    assert made.shape != plain.shape or not np.allclose(made, plain)  # not the accent's default speaker


@needs_keywords_tools
def test_keywords_splits_hear_different_rooms_and_recordings():
    mix = keywords.Mix(rooms=3)
    sounds = keywords.ambience(0, mix)
    digests = {s: {hash(x.tobytes()) for x in xs} for s, xs in sounds.items()}
    assert all(digests.values())
    assert not digests["train"] & digests["val"] and not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]
    rirs = {s: keywords.rooms(0, s, mix) for s in keywords.SPLITS}
    assert all(len(r) == 3 and np.abs(r[0]).max() == 1.0 for r in rirs.values())
    assert not np.array_equal(rirs["train"][0][:100], rirs["test"][0][:100])


def test_room_impulse_responses_decay_over_the_whole_reverberation_time_they_were_drawn_for():
    """pyroomacoustics' measure_rt60 on the rooms of one split: every impulse response lasts at least its
    measured RT60 (the image sources do not stop early, as they did with the image order capped at 30: a
    0.64 s room then ended after 0.63 s), and the measured RT60s cover the stated 0.2-0.8 s. Image-method rooms
    ring a little longer than Sabine's formula, which inverse_sabine inverts, says: measured here 0.18-1.21 s,
    median 0.47-0.68 s per split (seed 0, 40 rooms)."""
    measure_rt60 = pytest.importorskip("pyroomacoustics.experimental").measure_rt60
    mix = keywords.Mix(rooms=12)
    rirs = keywords.rooms(0, "test", mix)
    rt60 = np.array([measure_rt60(h, fs=keywords.SAMPLE_RATE, decay_db=30) for h in rirs])
    lengths = np.array([len(h) / keywords.SAMPLE_RATE for h in rirs])
    assert np.all(lengths >= rt60), (lengths.round(2), rt60.round(2))
    assert rt60.min() < 0.35 and rt60.max() > 0.6, rt60.round(2)
    assert np.all((rt60 > 0.1) & (rt60 < 1.5)), rt60.round(2)


def test_a_missing_tts_engine_names_its_debian_packages(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "festival" else f"/usr/bin/{tool}")
    with pytest.raises(DataError, match="festvox-kdlpc16k") as err:
        keywords.require_tools()
    assert "setup-system.sh" in str(err.value) and "espeak" not in str(err.value)
    assert any("festival" in m for m in keywords.missing_requirements())


def test_some_noisy_clips_hear_the_noise_stop_while_the_word_is_spoken():
    """As in a quiet room with noise between commands (the issue's stream): the word clean, the noise around it."""
    from dataclasses import replace

    word = tone(0.4) + 0.01  # no zero samples: the word's sound is exactly its extent
    mix = keywords.Mix(warp_fraction=0.0, tilt_fraction=0.0, reverb_fraction=0.0, clean_fraction=0.0,
                       gapped_fraction=1.0)
    gapped, label = keywords.mix_clip(np.random.default_rng(1), word, 3, mix=mix, rirs=[], sounds=[])
    under, _ = keywords.mix_clip(np.random.default_rng(1), word, 3, mix=replace(mix, gapped_fraction=1e-12),
                                 rirs=[], sounds=[])  # the same draws, the noise under the word as well
    assert label == 3
    start = int(np.flatnonzero(np.abs(gapped - under) > 0)[0]) + 320  # the fade in ends where the word starts
    gain = gapped[start] / word[0]
    np.testing.assert_allclose(gapped[start: start + len(word)], word * gain, atol=1e-6)  # clean
    assert np.abs(under[start: start + len(word)] - word * gain).max() > 1e-3  # there the noise was under it
    outside = np.r_[0:start - 320, start + len(word) + 320:len(gapped)]
    np.testing.assert_array_equal(gapped[outside], under[outside])  # the noise between words is untouched
    assert np.abs(gapped[outside]).max() > 0


def test_a_partial_keyword_is_mixed_as_unknown_and_silence_stays_quiet():
    rng = np.random.default_rng(0)
    word = tone(0.6)
    mix = keywords.Mix(warp_fraction=0.0, reverb_fraction=0.0, clean_fraction=1.0)
    clip, label = keywords.mix_clip(rng, word, keywords.PARTIAL, mix=mix, rirs=[], sounds=[])
    assert label == LABELS.index("_unknown_")
    assert 0.25 * len(word) <= np.count_nonzero(clip) <= 0.45 * len(word) + 1  # a fragment of the word
    quiet, label = keywords.mix_clip(rng, word, keywords.SILENCE, mix=mix, rirs=[], sounds=[])
    assert label == LABELS.index("_silence_") and np.sqrt(np.mean(quiet ** 2)) < 0.06


@needs_keywords_tools
def test_a_stream_puts_its_noise_under_everything_between_the_words_or_nowhere():
    """The three noise modes of one seed hold the same speech at the same onsets; only the noise moves."""
    voice = keywords.voices(keywords.Config())["test"][0]
    takes = {mode: keywords.utterance_stream(["yes", "off"], voice, seed=3, noise=mode) for mode in keywords.STREAM_NOISE}
    (bed, onsets), (gaps, onsets_g), (none, onsets_n) = takes["bed"], takes["gaps"], takes["none"]
    assert onsets == onsets_g == onsets_n and len(bed) == len(gaps) == len(none)
    for _, t in onsets:
        word, before = slice(int(t * 16000), int(t * 16000) + 1600), slice(int(t * 16000) - 8000, int(t * 16000) - 400)
        np.testing.assert_array_equal(gaps[word], none[word])  # the words stay clean...
        assert not np.allclose(bed[word], none[word])  # ...except under the bed
        assert np.abs(none[before]).max() == 0 and np.std(gaps[before]) > 1e-3  # silence, or noise, before each
    with pytest.raises(ValueError, match="bed, gaps, none"):
        keywords.utterance_stream(["yes"], voice, noise="loud")
