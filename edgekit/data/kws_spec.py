"""What the synthesized keyword corpus is (edgekit.data.keywords): its labels, its voices' grid, and the two
settings that make it, Config (who speaks what; it names the cache) and Mix (how a word becomes a clip)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

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
