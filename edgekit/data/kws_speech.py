"""Words spoken by the Debian TTS engines (espeak-ng, flite, festival), at a speed and pitch, trimmed, as
float32 at 16 kHz; espeak-ng voices edgekit makes up. Host side: needs the Debian tools."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgekit.data.kws_spec import AMBIENCE_DIR, ENGINE_PACKAGES, SAMPLE_RATE
from edgekit.errors import DataError


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

    Sharper than :func:`edgekit.device.audio.resample`, whose numpy-only filter exists for the device; the corpus
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
    from edgekit.device.audio import parse_wav

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
