"""A synthesized keyword-spotting corpus: the 12-class Speech Commands task spoken by espeak-ng and flite voices.

No keyword corpus can be had offline, so this one is made from two TTS engines that are Debian
packages (``espeak-ng``: accents x voice variants; ``flite``: kal, kal16, awb, rms, slt), each
clip at a random speed and pitch, placed at a random offset in a 1 s window, with a random gain and
coloured (white, pink, brown) noise at 5-30 dB SNR. Most renditions are also resampled by 0.82-1.22x
(played back as 16 kHz), which moves the formants as a longer or shorter vocal tract would: with five flite
voices, this is what makes a held-out flite voice recognizable. Classes: yes no up down left right on off stop go,
``_silence_`` (noise only) and ``_unknown_`` (other words, and keywords cut to a partial fragment so a
streaming window that sees half a word does not fire).

Splits hold out whole voices: validation and test voices are never heard in training, so accuracy
measures how a model generalizes to a new speaker (and, for the held-out flite voice, a new engine
voice). Everything is drawn from ``seed``; the clips are cached as one ``.npz`` per configuration under
``data.root`` (default ``.cache/keywords``), so the second load takes milliseconds.

Host side (generation needs the Debian tools and scipy); the device never imports this module.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgekit.errors import DataError

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
LABELS = (*KEYWORDS, "_silence_", "_unknown_")
# Speech Commands' auxiliary words (never keywords), spoken as _unknown_.
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine", "one",
                 "seven", "sheila", "six", "three", "tree", "two", "wow", "zero", "backward", "forward", "follow",
                 "learn", "visual", "yesterday", "nobody", "upper", "downtown", "lift", "write", "often", "gone")
SAMPLE_RATE = 16000
CLIP = 16000  # 1 s
ESPEAK_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "croak", "klatt",
                   "klatt2", "klatt3", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "Mario", "Michael", "Steph",
                   "Tweaky", "grandma", "grandpa", "john", "max", "norbert", "travis", "victor", "Alicia", "anika")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")


@dataclass(frozen=True)
class Config:
    """What a corpus is made of (its hash names the cache file)."""

    seed: int = 0
    espeak_voices: int = 80  # accent+variant pairs drawn from the grid above
    val_espeak: int = 8  # of them held out for validation
    test_espeak: int = 10  # and for test
    flite_val: tuple = ("awb",)  # flite voices held out for validation
    flite_test: tuple = ("rms",)  # and for test (a male voice unlike the training ones)
    takes: int = 4  # renditions per keyword and espeak voice (random speed, pitch, offset, noise)
    flite_takes: int = 12  # per keyword and flite voice: few voices, so more renditions each
    warp: tuple = (0.82, 1.22)  # resampling factor that shifts formants (a longer or shorter vocal tract)
    warp_fraction: float = 0.7  # renditions warped
    unknown_per_take: int = 2  # other words per voice and take
    partial_per_take: int = 1  # keyword fragments labelled _unknown_
    silence_per_take: int = 1
    clean_fraction: float = 0.2  # clips without added noise
    snr_db: tuple = (5.0, 30.0)
    version: int = 2  # bump when the generator changes
    extra: dict = field(default_factory=dict)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def require_tools() -> None:
    """Raise DataError naming the Debian packages when espeak-ng or flite is missing."""
    missing = [t for t in ("espeak-ng", "flite") if shutil.which(t) is None]
    if missing:
        raise DataError(f"the keywords data set is synthesized with {' and '.join(missing)}, not installed: "
                        f"sudo apt-get install {' '.join(missing)} (or run scripts/setup-system.sh)")


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        rate, n = w.getframerate(), w.getnframes()
        pcm = np.frombuffer(w.readframes(n), "<i2").astype(np.float32) / 32768.0
        if w.getnchannels() > 1:
            pcm = pcm.reshape(-1, w.getnchannels()).mean(1)
    return pcm, rate


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return x
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def speak(engine: str, voice: str, text: str, *, speed: float = 1.0, pitch: float = 1.0) -> np.ndarray:
    """One utterance as float32 16 kHz samples. speed and pitch are factors around the voice's default."""
    if engine == "espeak":
        cmd = ["espeak-ng", "-v", voice, "-s", str(int(165 * speed)), "-p", str(int(np.clip(50 * pitch, 0, 99))),
               "--stdout", text]
        proc = subprocess.run(cmd, capture_output=True, check=False)
        data = proc.stdout
    else:
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={1 / speed:.3f}",
                   "--setf", f"int_f0_target_mean={(100 if voice in ('kal', 'kal16', 'awb', 'rms') else 170) * pitch:.0f}",
                   "-t", text, "-o", f.name]
            proc = subprocess.run(cmd, capture_output=True, check=False)
            data = Path(f.name).read_bytes()
    if proc.returncode != 0 or len(data) < 100:
        raise DataError(f"{' '.join(cmd)} failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
    x, rate = _read_wav(data)
    return _resample(x, rate, SAMPLE_RATE)


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


def add_noise(rng: np.random.Generator, clip: np.ndarray, cfg: Config) -> np.ndarray:
    if rng.random() < cfg.clean_fraction:
        return clip
    noise = coloured_noise(rng, CLIP, str(rng.choice(["white", "pink", "brown"])))
    rms = float(np.sqrt(np.mean(clip ** 2))) or 0.01
    snr = rng.uniform(*cfg.snr_db)
    return np.clip(clip + noise * rms / 10 ** (snr / 20), -1, 1).astype(np.float32)


def silence(rng: np.random.Generator) -> np.ndarray:
    level = 10 ** rng.uniform(-4, -1.3)  # from near-digital silence to a noisy room
    colour = str(rng.choice(["white", "pink", "brown"]))
    return np.clip(coloured_noise(rng, CLIP, colour) * level, -1, 1).astype(np.float32)


def voices(cfg: Config) -> dict[str, list[tuple[str, str]]]:
    """The (engine, voice) pairs of each split; whole voices are held out."""
    rng = np.random.default_rng(cfg.seed)
    grid = [(a, v) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    pick = [grid[i] for i in rng.choice(len(grid), size=min(cfg.espeak_voices, len(grid)), replace=False)]
    names = [("espeak", f"{a}+{v}" if v else a) for a, v in pick]
    nv, nt = cfg.val_espeak, cfg.test_espeak
    held = set(cfg.flite_val) | set(cfg.flite_test)
    return {
        "val": names[:nv] + [("flite", v) for v in cfg.flite_val],
        "test": names[nv: nv + nt] + [("flite", v) for v in cfg.flite_test],
        "train": names[nv + nt:] + [("flite", v) for v in FLITE_VOICES if v not in held],
    }


def _jobs(cfg: Config, split: str, pairs: list[tuple[str, str]]) -> list[dict]:
    rng = np.random.default_rng([cfg.seed, ["train", "val", "test"].index(split)])
    jobs = []
    for engine, voice in pairs:
        rounds = cfg.flite_takes if engine == "flite" else cfg.takes
        for _ in range(rounds):
            items = [(w, i) for i, w in enumerate(KEYWORDS)]
            items += [(str(rng.choice(UNKNOWN_WORDS)), 11) for _ in range(cfg.unknown_per_take)]
            items += [(str(rng.choice(KEYWORDS)), -1) for _ in range(cfg.partial_per_take)]
            items += [("", 10) for _ in range(cfg.silence_per_take)]
            for word, label in items:
                jobs.append({"engine": engine, "voice": voice, "word": word, "label": label,
                             "speed": float(rng.uniform(0.75, 1.35)), "pitch": float(rng.uniform(0.7, 1.4)),
                             "seed": int(rng.integers(2 ** 31))})
    return jobs


def _render(job: dict, cfg: Config) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(job["seed"])
    if job["label"] == 10:
        return silence(rng), 10
    word = trim(speak(job["engine"], job["voice"], job["word"], speed=job["speed"], pitch=job["pitch"]))
    if len(word) == 0:
        raise DataError(f"{job['engine']} voice {job['voice']} produced no sound for {job['word']!r}")
    if rng.random() < cfg.warp_fraction:  # formant shift: flite has few voices, this makes "new" speakers
        from edgekit.audio import resample

        word = resample(word, SAMPLE_RATE, int(SAMPLE_RATE * rng.uniform(*cfg.warp)))
    label = job["label"]
    if label == -1:  # the first or last 25-45 % of a keyword: what a sliding window sees at its edges
        k = int(len(word) * rng.uniform(0.25, 0.45))
        word, label = (word[:k] if rng.random() < 0.5 else word[-k:]), 11
    clip = place(rng, word, gain=float(10 ** rng.uniform(-1.2, -0.05)))
    return add_noise(rng, clip, cfg), label


def synthesize(cfg: Config, *, workers: int = 2) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Render every split: {split: (waves float32 (N, 16000), labels int64 (N,), voice per clip)}.

    Raises:
        DataError: espeak-ng or flite missing or failing.
    """
    require_tools()
    out = {}
    for split, pairs in voices(cfg).items():
        jobs = _jobs(cfg, split, pairs)
        with ThreadPoolExecutor(max_workers=workers) as pool:  # the TTS runs in subprocesses: threads suffice
            rendered = list(pool.map(lambda j: _render(j, cfg), jobs))
        x = np.stack([r[0] for r in rendered]) if rendered else np.zeros((0, CLIP), np.float32)
        y = np.asarray([r[1] for r in rendered], np.int64)
        out[split] = (x, y, [f"{j['engine']}:{j['voice']}" for j in jobs])
    return out


def load_corpus(root: str | Path | None, cfg: Config = Config()) -> dict[str, tuple[np.ndarray, np.ndarray, list]]:
    """The corpus of ``cfg``, synthesized once and cached under ``root`` (default .cache/keywords)."""
    folder = Path(root) if root else Path(".cache") / "keywords"
    path = folder / f"keywords-{cfg.key()}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {s: (z[f"{s}_x"], z[f"{s}_y"], list(z[f"{s}_voice"])) for s in ("train", "val", "test")}
    data = synthesize(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    from edgekit.rundir import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{f"{s}_{k}": v for s, (x, y, vo) in data.items()
                       for k, v in (("x", x), ("y", y), ("voice", np.asarray(vo)))})
    return data


def load(root, spec):
    """The ``keywords`` data set (see the module docstring) as Splits with the MFCC pre-processing."""
    from edgekit.data import Splits
    from edgekit.features import fit_stats, mfcc_spec

    data = load_corpus(root, Config(seed=spec.seed))
    (trx, tr_y, _), (vx, vy, _), (tx, ty, _) = data["train"], data["val"], data["test"]
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(trx))  # the loop shuffles per epoch; this makes limit_train a random subset
    pre = fit_stats(trx[order[:2000]], mfcc_spec())
    return Splits(name="keywords", train_x=trx[order], train_y=tr_y[order], val_x=vx, val_y=vy, test_x=tx,
                  test_y=ty, labels=LABELS, preprocess=pre)


def utterance_stream(words: list[str], voice: tuple[str, str], *, seed: int = 0, gap_s: tuple = (1.0, 1.6),
                     snr_db: float = 20.0) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """A continuous recording for the streaming demo: ``words`` spoken by ``voice`` with noisy gaps between them.

    Args:
        words: the words in order (keywords or others).
        voice: (engine, voice), e.g. ("espeak", "en-us+f3") or ("flite", "rms"); pick held-out ones.
        seed: draws gaps, speed, pitch and noise.
        gap_s: range of the silence (with noise) before each word, seconds.
        snr_db: pink noise under the whole recording, relative to the speech's RMS.

    Returns:
        (float32 16 kHz samples, [(word, onset seconds)]).
    """
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
    noise = coloured_noise(rng, len(audio), "pink") * speech_rms / 10 ** (snr_db / 20)
    return np.clip(audio + noise, -1, 1).astype(np.float32), onsets
