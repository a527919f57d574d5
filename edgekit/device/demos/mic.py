"""The microphone demo: keyword spotting on a sliding 1 s window, from a live input or a WAV file.

Streaming path (the same for ``--wav FILE`` and the live microphone; only the source of samples differs):

1. samples arrive in blocks of any size and go into a 1 s ring buffer (zeros before the first second);
2. every ``hop_ms`` (default 200 ms) the last second is turned into the bundle's MFCC input
   (:func:`edgekit.device.preprocess.apply` with the manifest's spec) and run through one artifact;
3. posteriors are smoothed by averaging the last ``smooth`` windows (default 4, with ``threshold`` 0.7: chosen
   on validation voices, see KeywordSpotter; more smoothing lets a short word's peak sink below the threshold);
4. peak picking: while the smoothed posterior of one keyword stays at or above ``threshold``, the
   windows form one event; when it ends, the event's peak is reported once (keyword, confidence,
   time of the peak window's end). A second event within ``refractory_ms`` of the last detection is dropped.

A file is followed by 0.6 s of silence so that a word at its very end leaves the window and its event
closes, as it would live. A file at another sample rate is resampled and a stereo file is averaged to
mono (:mod:`edgekit.device.audio`); a missing, empty, truncated or non-PCM file is a one-line error (exit 2).

Live input needs ``sounddevice`` (``pip install "edgekit[mic]"``) and PortAudio (Debian ``libportaudio2``).

Device side: numpy, the runtime and (live) sounddevice. Never torch.
"""

from __future__ import annotations

import json
import queue
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgekit.device import preprocess
from edgekit.errors import ConfigError, DataError, require

NON_KEYWORDS = ("_silence_", "_unknown_")
TAIL_S = 0.6  # silence appended to a file so its last word's event closes


@dataclass(frozen=True)
class Detection:
    """One detected keyword (what --json prints)."""

    keyword: str
    confidence: float
    time_s: float  # end of the window at the event's peak, from the start of the audio


@dataclass(frozen=True)
class StreamStats:
    """What a stream measured: audio seconds, processing seconds and their ratio (the real-time factor)."""

    audio_s: float
    processing_s: float
    rtf: float
    windows: int
    detections: int
    artifact: str
    runtime: str
    threads: int


class KeywordSpotter:
    """Sliding-window keyword spotting over a bundle's artifact; feed it samples, get detections.

    Args:
        bundle: a bundle folder or Bundle whose pre-processing kind is "mfcc".
        artifact, runtime: what runs (default: the fastest on the host among those runnable here).
        threads: runtime threads.
        hop_ms: window step in milliseconds (100-500).
        smooth: posteriors averaged per decision.
        threshold: smoothed keyword posterior that opens an event. The defaults (4 windows, 0.7) were chosen on
            the keywords corpus's validation voices, never the test voices (``bench/kws_stream.py --tune``, 3 takes
            per voice, the recipe's model): among the settings with at most one false detection per minute there,
            the one that found the most keywords in order (213 of 270 at 0.96/min; 3 windows found 221 but at
            1.18/min, 0.8 with 2 windows 202 at 0.86/min).
        refractory_ms: minimum time between two detections.
    """

    def __init__(self, bundle, *, artifact: str | None = None, runtime: str | None = None, threads: int = 1,
                 hop_ms: float = 200.0, smooth: int = 4, threshold: float = 0.7, refractory_ms: float = 500.0):
        from edgekit.device.bundle import Bundle, load_bundle
        from edgekit.device.demos.camera import choose

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.spec = self.bundle.preprocess
        if self.spec.get("kind") != "mfcc":
            raise ConfigError(f"{self.bundle.path}: the mic demo needs a keyword-spotting bundle (pre-processing "
                              f"'mfcc'), this one's is {self.spec.get('kind')!r}")
        if not 100 <= hop_ms <= 500:
            raise ConfigError(f"--hop-ms {hop_ms}: must be between 100 and 500")
        if threads < 1:
            raise ConfigError(f"--threads {threads}: must be at least 1")
        self.rate = int(self.spec["sample_rate"])
        self.window = int(self.spec["clip_samples"])
        self.hop = int(round(self.rate * hop_ms / 1000))
        self.smooth, self.threshold = max(1, smooth), threshold
        self.refractory = refractory_ms / 1000
        self.labels = self.bundle.labels
        self.keyword_idx = [i for i, lab in enumerate(self.labels) if lab not in NON_KEYWORDS]
        self.art, self.runtime = choose(self.bundle, artifact, runtime)
        self.threads = threads
        self.session = None
        self.reset()

    def reset(self) -> None:
        """Forget all audio: an empty (silent) window, no history, no open event."""
        self.buf = np.zeros(self.window, np.float32)
        self.pending = np.zeros(0, np.float32)  # samples received since the last window
        self.samples = 0  # total samples consumed into windows
        self.history: list[np.ndarray] = []
        self.event: tuple[int, float, float] | None = None  # (class, peak confidence, peak time)
        self.last_time = -1e9
        self.windows = 0
        self.busy_s = 0.0

    def open(self) -> KeywordSpotter:
        from edgekit.device.runtime import open_session

        if self.session is None:
            self.session = open_session(self.art.path, runtime=self.runtime, threads=self.threads)
        return self

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def posteriors(self, clip: np.ndarray) -> np.ndarray:
        """Softmax of the model's output for one 1 s clip."""
        logits = self.open().session.run(preprocess.apply(self.spec, clip[None]))[0].astype(np.float64)
        z = np.exp(logits - logits.max())
        return z / z.sum()

    def feed(self, samples: np.ndarray) -> list[Detection]:
        """Add mono float samples at the bundle's rate; return the detections that completed."""
        t0 = time.perf_counter()
        self.pending = np.concatenate([self.pending, np.asarray(samples, np.float32).ravel()])
        out = []
        while len(self.pending) >= self.hop:
            step, self.pending = self.pending[: self.hop], self.pending[self.hop:]
            self.buf = np.concatenate([self.buf[self.hop:], step])
            self.samples += self.hop
            self.windows += 1
            self.history = (self.history + [self.posteriors(self.buf)])[-self.smooth:]
            det = self._decide(np.mean(self.history, axis=0), self.samples / self.rate)
            if det is not None:
                out.append(det)
        self.busy_s += time.perf_counter() - t0
        return out

    def _decide(self, p: np.ndarray, now: float) -> Detection | None:
        k = max(self.keyword_idx, key=lambda i: p[i])
        active = p[k] >= self.threshold
        done = None
        if self.event is not None and (not active or k != self.event[0]):
            done = self._close_event()
        if active:
            if self.event is None:
                self.event = (k, float(p[k]), now)
            elif p[k] > self.event[1]:
                self.event = (k, float(p[k]), now)
        return done

    def _close_event(self) -> Detection | None:
        k, conf, t = self.event
        self.event = None
        if t - self.last_time < self.refractory:
            return None
        self.last_time = t
        return Detection(self.labels[k], round(conf, 4), round(t, 3))

    def flush(self) -> list[Detection]:
        """End of the audio: push TAIL_S of silence through and close an open event."""
        out = self.feed(np.zeros(int(TAIL_S * self.rate), np.float32))
        if self.event is not None:
            det = self._close_event()
            if det is not None:
                out.append(det)
        return out

    def stats(self) -> StreamStats:
        audio = self.samples / self.rate
        return StreamStats(audio_s=round(audio, 3), processing_s=round(self.busy_s, 4),
                           rtf=round(self.busy_s / audio, 5) if audio else 0.0, windows=self.windows,
                           detections=0, artifact=self.art.name, runtime=self.runtime, threads=self.threads)


def spot_wav(bundle, wav: str | Path, **options) -> tuple[list[Detection], StreamStats]:
    """Run a WAV file through the streaming path in hop-sized blocks, as the microphone would deliver them.

    Args:
        bundle: a bundle folder or Bundle.
        wav: the file (resampled to the bundle's rate and downmixed to mono as needed).
        **options: :class:`KeywordSpotter` options.

    Returns:
        (detections in time order, StreamStats).

    Raises:
        DataError: a missing, empty, truncated or non-PCM file; a tampered bundle.
        ConfigError: bad options or a bundle that is not keyword spotting.

    Example:
        >>> [d.keyword for d in spot_wav("bundles/x86", "commands.wav")[0]]
        ['yes', 'stop', 'go']
    """
    from edgekit.device.audio import read_wav_rate, resample

    x, rate = read_wav_rate(wav)  # bad audio fails first, before the bundle's checksums and the runtime
    ks = KeywordSpotter(bundle, **options)
    x = resample(x, rate, ks.rate)
    dets = []
    ks.open()  # loading the model is not part of the real-time factor
    try:
        for i in range(0, len(x), ks.hop):
            dets += ks.feed(x[i: i + ks.hop])
        dets += ks.flush()
    finally:
        ks.close()
    st = ks.stats()
    return dets, StreamStats(**{**asdict(st), "detections": len(dets)})


def listen(bundle, *, seconds: float | None = None, device=None, out=None, json_lines: bool = False,
           **options) -> StreamStats:
    """Spot keywords on the default (or named) input device until ``seconds`` pass or Ctrl-C.

    Raises:
        MissingDependency: sounddevice is not installed (or PortAudio is missing).
        DataError: the input device cannot be opened at the bundle's sample rate.
    """
    try:
        sd = require("sounddevice", extra="mic", why="live microphone input")
    except OSError as exc:  # sounddevice imports but PortAudio is missing
        raise DataError(f"sounddevice needs PortAudio: sudo apt-get install libportaudio2 ({exc})") from None
    out = out or sys.stdout
    ks = KeywordSpotter(bundle, **options).open()
    blocks: queue.Queue = queue.Queue()
    n, overflows = 0, [0]

    def captured(data, frames, t, status) -> None:
        if status and status.input_overflow:  # PortAudio dropped samples before this block: say so at the end
            overflows[0] += 1
        blocks.put(data[:, 0].copy())

    try:
        stream = sd.InputStream(samplerate=ks.rate, channels=1, dtype="float32", blocksize=ks.hop, device=device,
                                callback=captured)
    except Exception as exc:  # PortAudioError and friends: the device or the rate is not available
        raise DataError(f"cannot open the input device {device if device is not None else '(default)'} at "
                        f"{ks.rate} Hz mono: {exc}") from None
    try:
        with stream:
            t_end = None if seconds is None else time.monotonic() + seconds
            while t_end is None or time.monotonic() < t_end:
                try:
                    block = blocks.get(timeout=0.5)
                except queue.Empty:
                    continue
                for d in ks.feed(block):
                    n += 1
                    print_detection(d, out, json_lines)
        # What was captured before the end is heard too: on a loaded CPU the spotter runs behind the stream,
        # and the blocks still queued hold the last words.
        while not blocks.empty():
            for d in ks.feed(blocks.get_nowait()):
                n += 1
                print_detection(d, out, json_lines)
    except KeyboardInterrupt:
        pass
    finally:
        if overflows[0]:
            print(f"edgekit: the input overflowed {overflows[0]} time(s): some audio was lost before edgekit saw it "
                  "(the CPU was busy; a longer --hop-ms lowers the load)", file=sys.stderr)
        for d in ks.flush():
            n += 1
            print_detection(d, out, json_lines)
        ks.close()
    return StreamStats(**{**asdict(ks.stats()), "detections": n})


def print_detection(d: Detection, out, json_lines: bool) -> None:
    if json_lines:
        out.write(json.dumps(asdict(d)) + "\n")
    else:
        m, s = divmod(d.time_s, 60)
        out.write(f"{int(m):02d}:{s:05.2f}  {d.keyword:8} {d.confidence * 100:5.1f} %\n")
    out.flush()


__all__ = ["Detection", "KeywordSpotter", "StreamStats", "listen", "print_detection", "spot_wav"]
