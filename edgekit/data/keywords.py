"""A synthesized keyword-spotting corpus: the 12-class Speech Commands task spoken by three TTS engines.

No keyword corpus can be had offline, so this one is made in two steps.

1. **Words** (slow, cached): every word is spoken by a Debian TTS engine at a random speed and pitch:
   ``espeak-ng`` (accents x voice variants), ``flite`` (kal, kal16, awb, rms, slt) and ``festival``
   (kal and ked diphone voices, the slt HTS voice), trimmed of silence and stored as int16 in one
   ``.npz`` per configuration under ``data.root`` (default ``.cache/keywords``). Many voices beat many
   renditions: besides the drawn espeak-ng voices (4 takes each), every other accent x variant pair of the
   grid speaks once for training (``Config.extra_train_espeak``). Measured on one DS-CNN, seed 0: held-out
   validation accuracy 0.795 -> 0.842, and on the test voices' continuous recordings 301 -> 314 of 330
   keywords in order at 0.96 -> 0.26 false detections per minute.
2. **Clips** (fast, every load): each word becomes a 1 s clip recorded in a random way: room reverb
   (half the clips; image-method rooms from ``pyroomacoustics`` at the image order its ``inverse_sabine``
   gives, RT60 0.2-0.8 s by Sabine, 0.2-1.2 s measured, talker 0.5-3 m away),
   a random offset and gain, and background noise at 5-30 dB SNR (most clips): generated white, pink or
   brown noise, or a CC0 recording from Debian ``sonic-pi-samples`` (ambiences, loops, percussion). In 30 % of
   the noisy clips the noise stops while the word is spoken (``Mix.gapped_fraction``), as between commands in
   a quiet room: a model trained on steady noise alone missed more clean words after noise than after silence.
   Training clips also get new voices made from the training voices: most are resampled by 0.82-1.22x
   and played back at 16 kHz (formants shift as with a longer or shorter vocal tract) and spectrally
   tilted by up to 6 dB/octave (a brighter or duller voice). Training gets ``Mix.copies`` differently
   mixed clips of every word; validation and test one each, their voices as the engine speaks them.

Classes: yes no up down left right on off stop go, ``_silence_`` (background only) and ``_unknown_``
(other words, and the first or last 25-45 % of a keyword, so that a streaming window that sees part of
a word does not fire).

Splits hold out whole speakers: validation and test voices are never heard in training, so accuracy
measures how a model generalizes to a new voice. Test holds out espeak-ng voices and the flite voice
``rms``; validation holds out espeak-ng voices and the festival voice ``ked``. The rooms and the
sonic-pi recordings of each split are disjoint as well. Everything is drawn from ``seed``.

Host side (synthesis needs the Debian tools, reverb needs pyroomacoustics); the device never imports this module.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgekit.errors import DataError

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
LABELS = (*KEYWORDS, "_silence_", "_unknown_")
SILENCE, UNKNOWN, PARTIAL = 10, 11, -1  # PARTIAL: a keyword rendition cut to a fragment when mixed, then _unknown_
# Speech Commands' auxiliary words (never keywords), spoken as _unknown_.
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine", "one",
                 "seven", "sheila", "six", "three", "tree", "two", "wow", "zero", "backward", "forward", "follow",
                 "learn", "visual", "yesterday", "nobody", "upper", "downtown", "lift", "write", "often", "gone")
SAMPLE_RATE = 16000
CLIP = 16000  # 1 s
SPLITS = ("train", "val", "test")
ESPEAK_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "croak", "klatt",
                   "klatt2", "klatt3", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "Mario", "Michael", "Steph",
                   "Tweaky", "grandma", "grandpa", "john", "max", "norbert", "travis", "victor", "Alicia", "anika")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")  # awb_time, also listed by flite -lv, speaks only clock times
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
# Debian packages per engine (what require_tools names when one is missing).
ENGINE_PACKAGES = {"espeak": ("espeak-ng", "espeak-ng"), "flite": ("flite", "flite"),
                   "festival": ("festival", "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts")}
AMBIENCE_DIR = Path("/usr/share/sonic-pi/samples")  # Debian sonic-pi-samples: 165 CC0 recordings, 0.1-11 s


@dataclass(frozen=True)
class Config:
    """Which words are spoken by which voices (its hash names the cache file of spoken words)."""

    seed: int = 0
    espeak_voices: int = 80  # accent+variant pairs drawn from the grid above (held-out voices come from these)
    extra_train_espeak: int = 208  # more grid pairs, none of the drawn ones, that speak for training only
    extra_takes: int = 1  # renditions per keyword and extra voice
    made_espeak: int = 0  # espeak-ng voices made up for training only (made_variant); 300 measured: no stream gain
    val_espeak: int = 8  # of them held out for validation
    test_espeak: int = 10  # and for test
    flite_val: tuple = ()  # flite voices held out for validation
    flite_test: tuple = ("rms",)  # and for test (a male voice unlike the training ones)
    festival_val: tuple = ("ked_diphone",)  # festival voices held out for validation (a male speaker no other has)
    festival_test: tuple = ()
    takes: int = 4  # renditions per keyword and espeak voice (random speed and pitch)
    other_takes: int = 12  # per keyword and held-out flite or festival voice (validation, test)
    other_takes_train: int = 24  # per keyword and training flite or festival voice: few voices, so many renditions
    unknown_per_take: int = 2  # other words per voice and take
    partial_per_take: int = 1  # keyword renditions cut to a fragment labelled _unknown_
    silence_per_take: int = 1
    version: int = 3  # bump when the generator changes

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Mix:
    """How a spoken word becomes a 1 s clip; drawn per clip from the seed, computed at every load (not cached)."""

    copies: int = 4  # differently mixed training clips of every word (validation and test: one)
    # New voices out of the training voices (training clips only: held-out voices are heard as spoken)
    warp: tuple = (0.82, 1.22)  # resampling factor that shifts formants (a longer or shorter vocal tract)
    warp_fraction: float = 0.7  # training clips warped
    tilt_db: tuple = (-6.0, 6.0)  # spectral tilt, dB/octave around 1 kHz: a brighter or duller voice (or microphone)
    tilt_fraction: float = 0.8  # training clips tilted
    # The recording: every split
    reverb_fraction: float = 0.5  # clips spoken in a room (the rest: a close microphone)
    rt60_s: tuple = (0.2, 0.8)  # reverberation time of the rooms, seconds
    distance_m: tuple = (0.5, 3.0)  # talker to microphone
    rooms: int = 40  # rooms per split (disjoint between splits)
    clean_fraction: float = 0.2  # clips without added noise
    ambience_fraction: float = 0.5  # of the noisy clips: a sonic-pi recording instead of generated noise
    snr_db: tuple = (5.0, 30.0)
    gapped_fraction: float = 0.3  # of the noisy clips: the noise stops (20 ms fades) where the word is
    held_out_ambience: float = 0.15  # of the sonic-pi recordings, for validation and again for test


def missing_requirements() -> list[str]:
    """What making the corpus needs and this machine lacks: Debian packages, or the pip extra (empty when complete)."""
    import importlib.util

    out = [packages for tool, packages in ENGINE_PACKAGES.values() if shutil.which(tool) is None]
    out += [p for p, ok in (("sox", shutil.which("sox")), ("sonic-pi-samples", AMBIENCE_DIR.is_dir())) if not ok]
    if importlib.util.find_spec("pyroomacoustics") is None:
        out.append('pyroomacoustics (pip install "edgekit[train]")')
    return out


def require_tools(engines=tuple(ENGINE_PACKAGES)) -> None:
    """Raise DataError naming the Debian packages when one of ``engines`` is missing."""
    missing = [ENGINE_PACKAGES[e] for e in engines if shutil.which(ENGINE_PACKAGES[e][0]) is None]
    if missing:
        tools = " and ".join(t for t, _ in missing)
        raise DataError(f"the keywords data set is synthesized with {tools}, not installed: sudo apt-get install "
                        f"{' '.join(p for _, p in missing)} (or run scripts/setup-system.sh)")


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Host-side polyphase resampling (scipy) of what the engines speak at 22.05/32/48 kHz.

    Sharper than :func:`edgekit.audio.resample`, whose numpy-only filter exists for the device; the corpus
    cache is keyed on the configuration, not on this code, so changing it would make caches disagree.
    """
    if rate == target:
        return x
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise DataError(f"{' '.join(cmd)[:300]} failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
    return proc


def _espeak(voice: str, items: list[tuple[str, float, float]]) -> list[bytes]:
    variant = voice.partition("+")[2]
    if variant.startswith(MADE):  # a made-up voice speaks from a private data folder holding its variant file
        with tempfile.TemporaryDirectory() as tmp:
            return _espeak_say([f"--path={_espeak_data(Path(tmp), variant)}"], voice, items)
    return _espeak_say([], voice, items)


def _espeak_say(options: list[str], voice: str, items: list[tuple[str, float, float]]) -> list[bytes]:
    return [_run(["espeak-ng", *options, "-v", voice, "-s", str(int(165 * speed)),
                  "-p", str(int(np.clip(50 * pitch, 0, 99))), "--stdout", text]).stdout
            for text, speed, pitch in items]


MADE = "ek"  # name prefix of the espeak-ng variants edgekit makes up: "en-us+ek0-017" is made voice 17 of seed 0


def made_variant(name: str) -> str:
    """The espeak-ng variant file of a made-up voice, drawn from its name (so any process remakes it alike).

    A variant sets the formant synthesizer's speaker: the frequency, strength and width of formants 0-8 as
    percentages of the language's, pitch base and range, and optionally flutter, roughness, breath, tone,
    echo and the Klatt source. Drawing F1-F3 independently gives vocal tracts that no scaling of an existing
    voice gives (what the mixer's resampling warp does), the strengths and widths new timbres.

    Measured, not adopted (single DS-CNNs with 300 made voices added to the training voices, streams at the
    mic defaults 0.7 / 3 windows): held-out validation clips 0.842 -> 0.857 (seed 0) and 0.846 -> 0.856
    (seed 1), but validation streams 220 -> 229 of 270 keywords in order at 0.75 -> 0.86 false/min (seed 0)
    and 216 -> 224 at 0.53 -> 1.28 false/min (seed 1): at a matched false-detection rate seed 1 finds fewer
    keywords. Wider F1-F3 ranges (70-145 %, strengths 30-150 %) gave 0.838 and 224 on seed 0.
    """
    seed, index = (int(v) for v in name.removeprefix(MADE).split("-"))
    rng = np.random.default_rng([seed, 7, index])
    female = rng.random() < 0.4
    base = rng.uniform(140, 230) if female else rng.uniform(70, 130)
    lines = ["language variant", f"name {name}", f"gender {'female' if female else 'male'}",
             f"pitch {base:.0f} {base + rng.uniform(20, 110):.0f}"]
    for k in range(9):  # (frequency, strength) ranges in % of the language's formant k; width 70-150 %
        freq = (95, 108) if k == 0 else ((100, 135) if female else (85, 115)) if k <= 3 else (60, 125) if k <= 5 \
            else (80, 120)
        strength = (60, 150) if k == 0 else (60, 130) if k <= 3 else (40, 130) if k <= 5 else (10, 100)
        lines.append(f"formant {k} {rng.uniform(*freq):.0f} {rng.uniform(*strength):.0f} {rng.uniform(70, 150):.0f}")
    if rng.random() < 0.5:
        lines.append(f"flutter {rng.uniform(0, 30):.0f}")
    if rng.random() < 0.3:
        lines.append(f"roughness {rng.integers(0, 7)}")
    if rng.random() < 0.25:
        lines.append("breath 0 " + " ".join(str(rng.integers(0, 9)) for _ in range(7)))
    lines += [f"voicing {rng.uniform(60, 120):.0f}", f"consonants {rng.uniform(70, 150):.0f}"]
    if rng.random() < 0.5:
        lines.append(f"tone 600 {rng.integers(100, 256)} 1200 {rng.integers(100, 256)} 2000 {rng.integers(100, 256)}")
    if rng.random() < 0.25:
        lines.append(f"klatt {rng.integers(1, 4)}")
    if rng.random() < 0.2:
        lines.append(f"echo {rng.integers(50, 150)} {rng.integers(5, 20)}")
    return "\n".join(lines) + "\n"


def _espeak_data(tmp: Path, variant: str) -> Path:
    """A data folder for ``espeak-ng --path``: the installed data linked in, and one made-up variant.

    espeak-ng reads variants only from its data folder's voices/!v (and lists at most 349 of them there).
    """
    data = tmp / "espeak-ng-data"
    (data / "voices" / "!v").mkdir(parents=True)
    for entry in _installed_espeak_data().iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry)
    (data / "voices" / "!v" / variant).write_text(made_variant(variant))
    return tmp


@lru_cache(maxsize=1)
def _installed_espeak_data() -> Path:
    out = _run(["espeak-ng", "--version"]).stdout.decode()  # "eSpeak NG text-to-speech: 1.51  Data at: /usr/..."
    if "Data at:" not in out:
        raise DataError(f"espeak-ng --version does not say where its data is: {out.strip()[:200]}")
    return Path(out.split("Data at:", 1)[1].strip())


def _flite(voice: str, items: list[tuple[str, float, float]]) -> list[bytes]:
    f0 = 100 if voice in ("kal", "kal16", "awb", "rms") else 170  # the voice's own mean pitch, Hz
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for text, speed, pitch in items:
            path = Path(tmp) / "w.wav"
            _run(["flite", "-voice", voice, "--setf", f"duration_stretch={1 / speed:.3f}",
                  "--setf", f"int_f0_target_mean={f0 * pitch:.0f}", "-t", text, "-o", str(path)])
            out.append(path.read_bytes())
    return out


def _festival(voice: str, items: list[tuple[str, float, float]]) -> list[bytes]:
    """One festival process speaks all items: starting it takes 0.3 s, a word a few milliseconds."""
    with tempfile.TemporaryDirectory() as tmp:
        lines = [f"(voice_{voice})"]
        for i, (text, speed, pitch) in enumerate(items):
            if voice.endswith("_hts"):  # HTS ignores Duration_Stretch; its engine's -r is the speed, pitch is fixed
                base = f"{voice.removesuffix('_hts')}_hts::hts_engine_params"
                lines.append(f'(set! hts_engine_params (append {base} (list (list "-r" {speed:.3f}))))')
            else:  # diphone voices: duration stretch and the target mean pitch of the F0 model (theirs is ~105 Hz)
                lines.append(f"(Parameter.set 'Duration_Stretch {1 / speed:.3f})")
                lines.append(f"(set! int_lr_params '((target_f0_mean {105 * pitch:.0f}) (target_f0_std "
                             f"{15 * pitch:.0f}) (model_f0_mean 170) (model_f0_std 34)))")
            safe = text.replace("\\", " ").replace('"', " ")
            lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{safe}")) "{tmp}/{i}.wav" \'riff)')
        script = Path(tmp) / "say.scm"
        script.write_text("\n".join(lines) + "\n")
        _run(["festival", "-b", str(script)])
        missing = [i for i in range(len(items)) if not (Path(tmp) / f"{i}.wav").is_file()]
        if missing:
            raise DataError(f"festival voice {voice} wrote no audio for {items[missing[0]][0]!r}")
        return [(Path(tmp) / f"{i}.wav").read_bytes() for i in range(len(items))]


ENGINES: dict[str, Callable[[str, list[tuple[str, float, float]]], list[bytes]]] = {
    "espeak": _espeak, "flite": _flite, "festival": _festival}


def _decode(data: bytes, what: str) -> np.ndarray:
    if len(data) < 100:
        raise DataError(f"{what} produced no audio")
    from edgekit.audio import parse_wav

    x, rate = parse_wav(data, what)
    return _resample(x, rate, SAMPLE_RATE)


def speak(engine: str, voice: str, text: str, *, speed: float = 1.0, pitch: float = 1.0) -> np.ndarray:
    """One utterance as float32 16 kHz samples. speed and pitch are factors around the voice's default.

    Raises:
        DataError: the engine is missing or fails.
    """
    if engine not in ENGINES:
        raise DataError(f"unknown TTS engine {engine!r}; choices: {', '.join(ENGINES)}")
    require_tools((engine,))
    (data,) = ENGINES[engine](voice, [(text, speed, pitch)])
    return _decode(data, f"{engine} voice {voice} saying {text!r}")


def trim(x: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Cut leading and trailing silence (samples below ``threshold`` of the peak)."""
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak == 0:
        return x[:0]
    loud = np.flatnonzero(np.abs(x) > threshold * peak)
    return x[max(0, loud[0] - 160): loud[-1] + 160]


def coloured_noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    """Unit-RMS white, pink (1/f) or brown (1/f^2) noise of ``n`` samples."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    spec *= {"white": 1.0, "pink": f ** -0.5, "brown": f ** -1.0}[colour]
    x = np.fft.irfft(spec, n)
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def place(rng: np.random.Generator, word: np.ndarray, *, gain: float) -> np.ndarray:
    """The word at a random offset inside a 1 s clip (cut to 1 s if longer), peak scaled to ``gain``."""
    clip = np.zeros(CLIP, np.float32)
    w = word[:CLIP]
    start = int(rng.integers(0, CLIP - len(w) + 1))
    clip[start: start + len(w)] = w * (gain / (np.abs(w).max() + 1e-9))
    return clip


# --- which voice speaks what ---------------------------------------------------------------------------------------


def _espeak_grid() -> list[tuple[str, str]]:
    return [("espeak", f"{a}+{v}" if v else a) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]


def _drawn_espeak(cfg: Config) -> list[tuple[str, str]]:
    grid = _espeak_grid()
    rng = np.random.default_rng(cfg.seed)
    return [grid[i] for i in rng.choice(len(grid), size=min(cfg.espeak_voices, len(grid)), replace=False)]


def extra_espeak(cfg: Config) -> list[tuple[str, str]]:
    """The training-only espeak-ng voices: grid pairs that were not drawn (so never a held-out voice)."""
    drawn = set(_drawn_espeak(cfg))
    rest = [p for p in _espeak_grid() if p not in drawn]
    order = np.random.default_rng([cfg.seed, 1]).permutation(len(rest))
    return [rest[i] for i in order[: cfg.extra_train_espeak]]


def made_espeak(cfg: Config) -> list[tuple[str, str]]:
    """The made-up training-only espeak-ng voices (``Config.made_espeak``), each with a drawn accent."""
    rng = np.random.default_rng([cfg.seed, 2])
    return [("espeak", f"{ESPEAK_ACCENTS[rng.integers(len(ESPEAK_ACCENTS))]}+{MADE}{cfg.seed}-{i:03d}")
            for i in range(cfg.made_espeak)]


def voices(cfg: Config) -> dict[str, list[tuple[str, str]]]:
    """The (engine, voice) pairs of each split; whole voices are held out, espeak-ng voices first, the
    training-only extra and made-up voices last (so adding them leaves every other word's draws as they were)."""
    names = _drawn_espeak(cfg)
    nv, nt = cfg.val_espeak, cfg.test_espeak
    held = {("flite", v) for v in (*cfg.flite_val, *cfg.flite_test)}
    held |= {("festival", v) for v in (*cfg.festival_val, *cfg.festival_test)}
    others = [("flite", v) for v in FLITE_VOICES] + [("festival", v) for v in FESTIVAL_VOICES]
    return {
        "train": names[nv + nt:] + [p for p in others if p not in held] + extra_espeak(cfg) + made_espeak(cfg),
        "val": names[:nv] + [("flite", v) for v in cfg.flite_val] + [("festival", v) for v in cfg.festival_val],
        "test": names[nv: nv + nt] + [("flite", v) for v in cfg.flite_test]
        + [("festival", v) for v in cfg.festival_test],
    }


def _jobs(cfg: Config, split: str, pairs: list[tuple[str, str]]) -> list[dict]:
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split)])
    jobs = []
    extra = set(extra_espeak(cfg) + made_espeak(cfg)) if split == "train" else set()
    for engine, voice in pairs:
        if engine == "espeak":
            rounds = cfg.extra_takes if (engine, voice) in extra else cfg.takes
        else:
            rounds = cfg.other_takes_train if split == "train" else cfg.other_takes
        for _ in range(rounds):
            items = [(w, i) for i, w in enumerate(KEYWORDS)]
            items += [(str(rng.choice(UNKNOWN_WORDS)), UNKNOWN) for _ in range(cfg.unknown_per_take)]
            items += [(str(rng.choice(KEYWORDS)), PARTIAL) for _ in range(cfg.partial_per_take)]
            items += [("", SILENCE) for _ in range(cfg.silence_per_take)]
            for word, label in items:
                jobs.append({"engine": engine, "voice": voice, "word": word, "label": label,
                             "speed": float(rng.uniform(0.75, 1.35)), "pitch": float(rng.uniform(0.7, 1.4))})
    return jobs


@dataclass(frozen=True)
class Words:
    """The spoken words of one split: trimmed int16 audio, concatenated; word i is ``pcm[start[i]:start[i + 1]]``
    (empty for ``_silence_``). ``label`` is the class, or PARTIAL for a keyword to be cut to a fragment."""

    pcm: np.ndarray  # int16, peak-normalized per word
    start: np.ndarray  # int64 (n + 1,)
    label: np.ndarray  # int64 (n,)
    voice: list  # "engine:voice" per word

    def __len__(self) -> int:
        return len(self.label)

    def word(self, i: int) -> np.ndarray:
        return self.pcm[self.start[i]: self.start[i + 1]].astype(np.float32) / 32767.0


def _speak_all(jobs: list[dict], workers: int) -> list[np.ndarray]:
    """Audio of every job, in order: each voice's words in chunks, the chunks spread over ``workers`` threads."""
    chunk = 48  # words per festival process (its start-up is amortized; two chunks keep both cores busy)
    tasks = []
    for engine in ENGINES:
        by_voice: dict[str, list[int]] = {}
        for i, j in enumerate(jobs):
            if j["engine"] == engine and j["label"] != SILENCE:
                by_voice.setdefault(j["voice"], []).append(i)
        for voice, idx in by_voice.items():
            tasks += [(engine, voice, idx[k: k + chunk]) for k in range(0, len(idx), chunk)]

    def run(task):
        engine, voice, idx = task
        datas = ENGINES[engine](voice, [(jobs[i]["word"], jobs[i]["speed"], jobs[i]["pitch"]) for i in idx])
        return [(i, trim(_decode(d, f"{engine} voice {voice} saying {jobs[i]['word']!r}")))
                for i, d in zip(idx, datas, strict=True)]

    out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(jobs)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # the TTS runs in subprocesses: threads suffice
        for done in pool.map(run, tasks):
            for i, x in done:
                if len(x) == 0:
                    raise DataError(f"{jobs[i]['engine']} voice {jobs[i]['voice']} produced no sound for "
                                    f"{jobs[i]['word']!r}")
                out[i] = x
    return out


def speak_words(cfg: Config, *, workers: int = 2) -> dict[str, Words]:
    """Speak every word of every split (the slow, cached step).

    Raises:
        DataError: a TTS engine missing or failing.
    """
    require_tools()
    out = {}
    for split, pairs in voices(cfg).items():
        jobs = _jobs(cfg, split, pairs)
        audio = _speak_all(jobs, workers)
        pcm = [np.round(x / (np.abs(x).max() + 1e-9) * 32767).astype(np.int16) if len(x) else x.astype(np.int16)
               for x in audio]
        start = np.concatenate([[0], np.cumsum([len(x) for x in pcm])]).astype(np.int64)
        out[split] = Words(pcm=np.concatenate(pcm) if pcm else np.zeros(0, np.int16), start=start,
                           label=np.asarray([j["label"] for j in jobs], np.int64),
                           voice=[f"{j['engine']}:{j['voice']}" for j in jobs])
    return out


def load_words(root: str | Path | None, cfg: Config = Config()) -> dict[str, Words]:
    """The spoken words of ``cfg``, synthesized once and cached under ``root`` (default .cache/keywords)."""
    folder = Path(root) if root else Path(".cache") / "keywords"
    path = folder / f"words-{cfg.key()}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {s: Words(pcm=z[f"{s}_pcm"], start=z[f"{s}_start"], label=z[f"{s}_label"],
                             voice=[str(v) for v in z[f"{s}_voice"]]) for s in SPLITS}
    words = speak_words(cfg)
    from edgekit.rundir import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{f"{s}_{k}": v for s, w in words.items()
                       for k, v in (("pcm", w.pcm), ("start", w.start), ("label", w.label),
                                    ("voice", np.asarray(w.voice)))})
    return words


# --- from words to clips: rooms, noises, mixing --------------------------------------------------------------------


@lru_cache(maxsize=1)
def _recordings() -> tuple[np.ndarray, ...]:
    """Every sonic-pi recording as 16 kHz mono float32, sorted by file name (decoded once per process)."""
    files = sorted(AMBIENCE_DIR.glob("*.flac")) if AMBIENCE_DIR.is_dir() else []
    if not files or shutil.which("sox") is None:
        raise DataError(f"the keywords data set mixes in recordings from {AMBIENCE_DIR} with sox: sudo apt-get "
                        "install sonic-pi-samples sox (or run scripts/setup-system.sh)")

    def read(path: Path) -> np.ndarray:
        # float output: sox dithers integer output with random noise, and the corpus would differ every time
        raw = _run(["sox", "-R", str(path), "-t", "raw", "-e", "floating-point", "-b", "32", "-L", "-c", "1",
                    "-r", str(SAMPLE_RATE), "-"]).stdout
        return np.frombuffer(raw, "<f4").astype(np.float32)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return tuple(pool.map(read, files))


def ambience(seed: int, mix: Mix) -> dict[str, list[np.ndarray]]:
    """The sonic-pi recordings (16 kHz mono float32) of each split: disjoint sets of files drawn by ``seed``.

    Raises:
        DataError: Debian sonic-pi-samples or sox missing.
    """
    sounds = _recordings()
    order = np.random.default_rng([seed, 7]).permutation(len(sounds))
    n = max(1, int(round(len(sounds) * mix.held_out_ambience)))
    return {"val": [sounds[i] for i in order[:n]], "test": [sounds[i] for i in order[n: 2 * n]],
            "train": [sounds[i] for i in order[2 * n:]]}


def rooms(seed: int, split: str, mix: Mix) -> list[np.ndarray]:
    """Room impulse responses of one split (image method, pyroomacoustics), from the direct path on, peak 1.

    At the full image order a split's 40 rooms take ~12 s on a 2-core x86, so a process computes them once.

    Raises:
        MissingDependency: pyroomacoustics not installed.
    """
    return list(_rooms(seed, split, mix))


@lru_cache(maxsize=6)
def _rooms(seed: int, split: str, mix: Mix) -> tuple[np.ndarray, ...]:
    from edgekit.errors import require

    pra = require("pyroomacoustics", extra="train", why="room reverb for the keywords data set")
    rng = np.random.default_rng([seed, SPLITS.index(split), 11])
    out = []
    while len(out) < mix.rooms:
        dims = rng.uniform([3.0, 3.0, 2.4], [8.0, 6.0, 3.2])
        try:
            absorption, max_order = pra.inverse_sabine(float(rng.uniform(*mix.rt60_s)), dims)
        except ValueError:  # a reverberation time this room cannot have (too short for its size): draw again
            continue
        mic = rng.uniform(0.4, dims - 0.4)
        d, angle = rng.uniform(*mix.distance_m), rng.uniform(0, 2 * np.pi)
        src = mic + np.array([d * np.cos(angle), d * np.sin(angle), rng.uniform(-0.3, 0.5)])
        if np.any(src < 0.3) or np.any(src > dims - 0.3):
            continue
        # The image order inverse_sabine asks for (median 75 over these draws), as pyroomacoustics documents it: a cap
        # (30 here once) stops the image sources after ~0.2 s, short of the RT60 drawn.
        room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=max_order)
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        h = np.asarray(room.rir[0][0], np.float32)
        h = h[max(0, int(np.argmax(np.abs(h))) - 40):]  # the propagation delay would only shift the word
        h = h / np.abs(h).max()
        h.setflags(write=False)  # shared by every caller of this process
        out.append(h)
    return tuple(out)


def tilt(x: np.ndarray, db_per_octave: float) -> np.ndarray:
    """``x`` with its spectrum tilted by ``db_per_octave`` around 1 kHz (flat below 100 Hz)."""
    n = len(x)
    f = np.fft.rfftfreq(2 * n, 1 / SAMPLE_RATE)  # zero-padded: no circular wrap-around
    gain = 10 ** (db_per_octave * np.log2(np.maximum(f, 100.0) / 1000.0) / 20)
    return np.fft.irfft(np.fft.rfft(x, 2 * n) * gain, 2 * n)[:n].astype(np.float32)


def background(rng: np.random.Generator, sounds: list[np.ndarray], mix: Mix) -> np.ndarray:
    """1 s of unit-RMS background: generated coloured noise, or a sonic-pi recording (a random second of it)."""
    if sounds and rng.random() < mix.ambience_fraction:
        s = sounds[int(rng.integers(len(sounds)))]
        if len(s) >= CLIP:
            k = int(rng.integers(0, len(s) - CLIP + 1))
            x = s[k: k + CLIP].copy()
        else:  # a short sound (a drum hit, a click) somewhere in the second
            x = np.zeros(CLIP, np.float32)
            k = int(rng.integers(0, CLIP - len(s) + 1))
            x[k: k + len(s)] = s
        rms = float(np.sqrt(np.mean(x ** 2)))
        if rms > 1e-5:
            return x / rms
    return coloured_noise(rng, CLIP, str(rng.choice(["white", "pink", "brown"])))


def mix_clip(rng: np.random.Generator, word: np.ndarray, label: int, *, mix: Mix, rirs: list[np.ndarray],
             sounds: list[np.ndarray], new_voice: bool = True) -> tuple[np.ndarray, int]:
    """One 1 s clip of a spoken word (see the module docstring): (float32 samples in [-1, 1], class).

    ``new_voice``: shift formants and tilt the spectrum (training); otherwise the voice stays as spoken.
    """
    if label == SILENCE:
        level = 10 ** rng.uniform(-4, -1.3)  # from near-digital silence to a noisy room
        return np.clip(background(rng, sounds, mix) * level, -1, 1).astype(np.float32), SILENCE
    if new_voice and rng.random() < mix.warp_fraction:  # formant shift: a longer or shorter vocal tract
        from edgekit.audio import resample

        word = resample(word, SAMPLE_RATE, int(SAMPLE_RATE * rng.uniform(*mix.warp)))
    if new_voice and rng.random() < mix.tilt_fraction:
        word = tilt(word, float(rng.uniform(*mix.tilt_db)))
    if label == PARTIAL:  # the first or last 25-45 % of a keyword: what a sliding window sees at its edges
        k = max(1, int(len(word) * rng.uniform(0.25, 0.45)))
        word, label = (word[:k] if rng.random() < 0.5 else word[-k:]), UNKNOWN
    if rirs and rng.random() < mix.reverb_fraction:
        from scipy.signal import fftconvolve

        word = fftconvolve(word, rirs[int(rng.integers(len(rirs)))])[: CLIP].astype(np.float32)
    clip = place(rng, word, gain=float(10 ** rng.uniform(-1.2, -0.05)))
    if rng.random() < mix.clean_fraction:
        return clip, label
    rms = float(np.sqrt(np.mean(clip ** 2))) or 0.01
    noise = background(rng, sounds, mix) * rms / 10 ** (rng.uniform(*mix.snr_db) / 20)
    if mix.gapped_fraction and rng.random() < mix.gapped_fraction:  # noise between words, clean words
        noise *= around(clip)
    return np.clip(clip + noise, -1, 1).astype(np.float32), label


def around(clip: np.ndarray, ramp: int = 320) -> np.ndarray:
    """1 outside the sound of ``clip`` (its first to last non-zero sample), 0 on it, with ``ramp``-sample fades."""
    on = np.flatnonzero(clip)
    if len(on) == 0:
        return np.ones(len(clip), np.float32)
    t = np.arange(len(clip))
    outside = np.maximum(on[0] - t, t - on[-1])  # samples to the sound, <= 0 on it
    return np.clip(outside / (ramp + 1), 0, 1).astype(np.float32)


def mix_split(words: Words, split: str, *, seed: int, mix: Mix = Mix(), copies: int = 1,
              rirs: list[np.ndarray] | None = None, sounds: list[np.ndarray] | None = None,
              pick: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Clips of one split: ``copies`` differently mixed clips of every word, or the clips ``pick`` selects
    (indices into the ``len(words) * copies`` clips, clip ``k`` being copy ``k // len(words)`` of word
    ``k % len(words)``). Each clip is drawn from (seed, split, word, copy) alone, so any subset is the same clips.

    Returns:
        (float32 (N, 16000), int64 labels (N,), "engine:voice" per clip).
    """
    n = len(words)
    pick = np.arange(n * copies) if pick is None else np.asarray(pick)
    rirs = rooms(seed, split, mix) if rirs is None else rirs
    sounds = ambience(seed, mix)[split] if sounds is None else sounds
    x = np.empty((len(pick), CLIP), np.float32)
    y = np.empty(len(pick), np.int64)

    def one(k: int) -> None:
        i, c = int(pick[k] % n), int(pick[k] // n)
        rng = np.random.default_rng([seed, SPLITS.index(split), i, c])
        x[k], y[k] = mix_clip(rng, words.word(i), int(words.label[i]), mix=mix, rirs=rirs, sounds=sounds,
                              new_voice=split == "train")

    with ThreadPoolExecutor(max_workers=2) as pool:  # numpy's FFTs release the GIL
        list(pool.map(one, range(len(pick))))
    return x, y, [words.voice[int(k % n)] for k in pick]


def synthesize(cfg: Config, *, mix: Mix = Mix(), copies: int = 1, workers: int = 2
               ) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Speak and mix every split, without caching: {split: (waves float32 (N, 16000), labels int64, voices)}.

    Raises:
        DataError: a TTS engine, sox or sonic-pi-samples missing or failing.
    """
    return _mix_splits(speak_words(cfg, workers=workers), cfg, mix, copies)


def load_corpus(root: str | Path | None, cfg: Config = Config(), *, mix: Mix = Mix(), copies: int = 1
                ) -> dict[str, tuple[np.ndarray, np.ndarray, list]]:
    """The mixed clips of every split, {split: (waves, labels, voices)}; the spoken words are cached under ``root``."""
    return _mix_splits(load_words(root, cfg), cfg, mix, copies)


def _mix_splits(words: dict[str, Words], cfg: Config, mix: Mix, copies: int
                ) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Every split mixed: ``copies`` clips of each training word, one of each validation and test word."""
    sounds = ambience(cfg.seed, mix)
    return {s: mix_split(words[s], s, seed=cfg.seed, mix=mix, copies=copies if s == "train" else 1,
                         sounds=sounds[s]) for s in SPLITS}


def load(root, spec):
    """The ``keywords`` data set (see the module docstring) as Splits with the MFCC pre-processing.

    Training holds ``Mix.copies`` mixed clips of every word in a random order; with ``data.limit_train``
    only that many are mixed.
    """
    from edgekit.data import Splits
    from edgekit.features import fit_stats, mfcc_spec

    cfg, mix = Config(seed=spec.seed), Mix()
    words = load_words(root, cfg)
    sounds = ambience(cfg.seed, mix)
    order = np.random.default_rng(spec.seed).permutation(len(words["train"]) * mix.copies)
    if spec.limit_train:
        order = order[: spec.limit_train]
    trx, tr_y, _ = mix_split(words["train"], "train", seed=cfg.seed, mix=mix, sounds=sounds["train"], pick=order)
    vx, vy, _ = mix_split(words["val"], "val", seed=cfg.seed, mix=mix, sounds=sounds["val"])
    tx, ty, _ = mix_split(words["test"], "test", seed=cfg.seed, mix=mix, sounds=sounds["test"])
    pre = fit_stats(trx[:2000], mfcc_spec())
    return Splits(name="keywords", train_x=trx, train_y=tr_y, val_x=vx, val_y=vy, test_x=tx, test_y=ty,
                  labels=LABELS, preprocess=pre)


STREAM_WORDS = ("yes", "stop", "house", "go", "left", "right", "seven", "up", "down", "off", "on", "no")
"""The streaming checks' script: every keyword once, and two other words that must not fire."""


def in_order(expected: list[str], found: list[str]) -> int:
    """How many expected keywords the detections contain in order (their longest common subsequence).

    A stream's false detections are ``len(found) - in_order(expected, found)``: a keyword heard as another counts
    as one miss and one false detection.
    """
    t = [[0] * (len(found) + 1) for _ in range(len(expected) + 1)]
    for i, a in enumerate(expected):
        for j, b in enumerate(found):
            t[i + 1][j + 1] = t[i][j] + 1 if a == b else max(t[i][j + 1], t[i + 1][j])
    return t[-1][-1]


STREAM_NOISE = ("bed", "gaps", "none")  # where utterance_stream puts its pink noise


def utterance_stream(words: list[str], voice: tuple[str, str], *, seed: int = 0, gap_s: tuple = (1.0, 1.6),
                     snr_db: float = 20.0, noise: str = "bed") -> tuple[np.ndarray, list[tuple[str, float]]]:
    """A continuous recording for the streaming demo: ``words`` spoken by ``voice`` with gaps between them.

    Each word gets its own level (peak 0.16-0.63), so with a noise bed the quiet words hear more noise than
    ``snr_db`` says: the bed is the harder test. The words, gaps and levels drawn depend on ``seed`` only, so
    the three noise modes of one seed hold the same speech.

    Args:
        words: the words in order (keywords or others).
        voice: (engine, voice), e.g. ("espeak", "en-us+f3") or ("flite", "rms"); pick held-out ones.
        seed: draws gaps, speed, pitch and noise.
        gap_s: range of the gap before each word, seconds.
        snr_db: pink noise level relative to the speech's RMS.
        noise: "bed": pink noise under the whole recording; "gaps": only between the words (each stretch
            faded in and out over 20 ms; the words stay clean); "none": digital silence between the words.

    Returns:
        (float32 16 kHz samples, [(word, onset seconds)]).
    """
    if noise not in STREAM_NOISE:
        raise ValueError(f"noise must be one of {', '.join(STREAM_NOISE)}, not {noise!r}")
    rng = np.random.default_rng(seed)
    parts, onsets, t = [], [], 0
    for w in words:
        gap = np.zeros(int(rng.uniform(*gap_s) * SAMPLE_RATE), np.float32)
        x = trim(speak(voice[0], voice[1], w, speed=float(rng.uniform(0.9, 1.1)), pitch=float(rng.uniform(0.9, 1.1))))
        x = x * (float(10 ** rng.uniform(-0.8, -0.2)) / (np.abs(x).max() + 1e-9))
        t += len(gap)
        onsets.append((w, t / SAMPLE_RATE))
        parts += [gap, x.astype(np.float32)]
        t += len(x)
    parts.append(np.zeros(SAMPLE_RATE, np.float32))
    audio = np.concatenate(parts)
    speech_rms = float(np.sqrt(np.mean(np.concatenate(parts[1::2]) ** 2)))
    bed = coloured_noise(rng, len(audio), "pink") * speech_rms / 10 ** (snr_db / 20)
    if noise != "bed":  # keep the gaps' noise (faded in and out over 20 ms) or none of it; the words stay clean
        ramp = int(0.02 * SAMPLE_RATE)

        def kept(i: int, n: int) -> np.ndarray:  # the share of the bed kept over parts[i] (n samples)
            if i % 2 or noise == "none" or n <= 2 * ramp:  # odd parts are the words
                return np.zeros(n, np.float32)
            return np.concatenate([np.linspace(0, 1, ramp), np.ones(n - 2 * ramp), np.linspace(1, 0, ramp)])

        bed = bed * np.concatenate([kept(i, len(part)) for i, part in enumerate(parts)]).astype(np.float32)
    return np.clip(audio + bed, -1, 1).astype(np.float32), onsets
