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

This module draws the voices of each split, caches the spoken words and mixes the splits; the pieces are
:mod:`~edgekit.data.kws_spec` (labels, Config, Mix), :mod:`~edgekit.data.kws_speech` (the TTS engines),
:mod:`~edgekit.data.kws_mixing` (rooms, noise, clips) and :mod:`~edgekit.data.kws_streams` (continuous
recordings), whose public names are importable from here too.

Host side (synthesis needs the Debian tools, reverb needs pyroomacoustics); the device never imports this module.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The corpus's pieces live in modules of their own; their public names are edgekit.data.keywords' too.
from edgekit.data.kws_mixing import ambience, coloured_noise, mix_clip, place, rooms, tilt  # noqa: F401
from edgekit.data.kws_spec import (  # noqa: F401
    AMBIENCE_DIR,
    CLIP,
    ENGINE_PACKAGES,
    ESPEAK_ACCENTS,
    ESPEAK_VARIANTS,
    FESTIVAL_VOICES,
    FLITE_VOICES,
    KEYWORDS,
    LABELS,
    PARTIAL,
    SAMPLE_RATE,
    SILENCE,
    SPLITS,
    UNKNOWN,
    UNKNOWN_WORDS,
    Config,
    Mix,
)
from edgekit.data.kws_speech import (  # noqa: F401
    ENGINES,
    MADE,
    _decode,
    made_variant,
    missing_requirements,
    require_tools,
    speak,
    trim,
)
from edgekit.data.kws_streams import STREAM_NOISE, STREAM_WORDS, in_order, utterance_stream  # noqa: F401
from edgekit.errors import DataError

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
    from edgekit.device.features import fit_stats, mfcc_spec

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
