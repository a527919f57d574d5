"""WAV files in and out, in numpy and the standard library: what the data loaders and the microphone demo share.

:func:`read_wav` returns float32 mono samples in [-1, 1] at the rate asked for, with two documented
conversions instead of errors:

* **several channels** are averaged into one (a downmix; a keyword model takes one channel);
* **another sample rate** is resampled: a windowed-sinc low-pass at the lower of the two Nyquist
  frequencies, then linear interpolation onto the new grid (numpy only, no scipy on the device).
  For 44.1/48 kHz input this leaves the 20–4000 Hz band the MFCC front end reads intact.

It reads 8/16/24/32-bit integer PCM and 32/64-bit float, plain or WAVE_FORMAT_EXTENSIBLE (what sox and
ffmpeg write for 24-bit and multichannel audio), with its own RIFF parser: the same on the host and on a
Raspberry Pi's Python 3.11, whose ``wave`` module refuses the last two. Everything else that is wrong with a
file (missing, not a RIFF/WAVE file, compressed, no samples, a data chunk shorter than its header says)
raises :class:`DataError` with one line naming the file and what is wrong.

Device side: numpy and the standard library only, never torch.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

from edgekit.errors import DataError

_TAPS = 63  # low-pass taps before downsampling: ~60 dB stop band with a Blackman window


def read_wav(path: str | Path, *, sample_rate: int | None = 16000) -> np.ndarray:
    """Read a PCM WAV file as float32 mono samples in [-1, 1].

    Args:
        path: the .wav file: 8-, 16-, 24- or 32-bit integer PCM or 32/64-bit float, plain or
            WAVE_FORMAT_EXTENSIBLE, any channel count (averaged) and any sample rate (resampled).
        sample_rate: resample to this rate (Hz); None keeps the file's rate.

    Returns:
        float32 array (samples,).

    Raises:
        DataError: missing, unreadable, empty or truncated file, or an unsupported encoding.

    Example:
        >>> read_wav("keywords.wav").shape
        (160000,)
    """
    x, rate = read_wav_rate(path)
    if sample_rate is not None and rate != sample_rate:
        x = resample(x, rate, sample_rate)
    return x


def read_wav_rate(path: str | Path) -> tuple[np.ndarray, int]:
    """Like :func:`read_wav` without resampling: (float32 mono samples, the file's sample rate)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such WAV file")
    return _parse(str(path), path, streamed=False)


def parse_wav(data: bytes, what: str) -> tuple[np.ndarray, int]:
    """:func:`read_wav_rate` for a WAV a program wrote to a pipe (e.g. ``espeak-ng --stdout``); ``what`` names it.

    A writer to a pipe cannot seek back to fill in the length, so its header claims the largest size
    (espeak-ng: 0x7fffff00 frames): here the samples that arrived are the recording, not a truncation.
    """
    return _parse(io.BytesIO(data), Path(what), streamed=True)


_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE  # WAVE format tags (mmreg.h)


def _parse(source, path: Path, *, streamed: bool) -> tuple[np.ndarray, int]:
    """RIFF/WAVE read by hand: Python 3.11's ``wave`` refuses WAVE_FORMAT_EXTENSIBLE (what sox and ffmpeg write
    for 24-bit and multichannel audio) and 32-bit float, which recorders and editors write every day."""
    try:
        data = source.read() if hasattr(source, "read") else Path(source).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    fmt, chunk = _chunks(data, path, streamed=streamed)
    tag, channels, rate, width = fmt
    frame_bytes = channels * width
    if rate <= 0:
        raise DataError(f"{path}: sample rate {rate} in the header")
    n = len(chunk) // frame_bytes
    if n == 0:
        raise DataError(f"{path}: holds no audio samples")
    x = _decode(chunk[: n * frame_bytes], width, path, floating=tag == _FLOAT)
    x = x.reshape(-1, channels).mean(axis=1) if channels > 1 else x  # downmix: average the channels
    return x.astype(np.float32), rate


def _chunks(data: bytes, path: Path, *, streamed: bool) -> tuple[tuple[int, int, int, int], bytes]:
    """(format tag, channels, rate, bytes per sample) and the sample bytes of a RIFF/WAVE file."""
    import struct

    hint = f"convert it, e.g. `sox {path.name} -b 16 -e signed-integer out.wav`"
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise DataError(f"{path}: not a PCM WAV file (no RIFF/WAVE header); {hint}")
    if data[:4] == b"RIFX":
        raise DataError(f"{path}: a big-endian (RIFX) WAV; {hint}")
    pos, fmt, samples = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8: pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise DataError(f"{path}: its format chunk is {len(body)} bytes, too short")
            tag, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID starts with the real tag
            if tag not in (_PCM, _FLOAT):
                raise DataError(f"{path}: compressed WAV (format tag {tag}); edgekit reads PCM and float WAVs; {hint}")
            if channels < 1:
                raise DataError(f"{path}: {channels} channels in the header")
            width = max(1, align // channels) if align else (bits + 7) // 8
            if tag == _FLOAT and width not in (4, 8) or tag == _PCM and width not in (1, 2, 3, 4):
                raise DataError(f"{path}: {bits}-bit {'float' if tag == _FLOAT else 'integer'} samples are not "
                                f"supported (8/16/24/32-bit integer or 32/64-bit float); {hint}")
            fmt = (tag, channels, rate, width)
        elif cid == b"data":
            if fmt is None:
                raise DataError(f"{path}: the samples come before the format chunk")
            end = pos + 8 + size
            if end > len(data):
                # A writer to a pipe cannot seek back, so it claims the largest size; a file that claims more than
                # it holds is truncated unless it was streamed or claims the "unknown" sizes.
                if not streamed:
                    frame = fmt[1] * fmt[3]
                    raise DataError(f"{path}: truncated: the header says {size // frame} frames, the file holds "
                                    f"{(len(data) - pos - 8) // frame}")
                body = data[pos + 8:]
            samples = body
            break
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    if fmt is None:
        raise DataError(f"{path}: no format chunk; {hint}")
    if samples is None:
        raise DataError(f"{path}: holds no audio samples (no data chunk)")
    return fmt, samples


def _decode(data: bytes, width: int, path: Path, *, floating: bool = False) -> np.ndarray:
    if floating:
        x = np.frombuffer(data, "<f4" if width == 4 else "<f8").astype(np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{path}: float samples hold NaN or infinite values")
        return np.clip(x, -1.0, 1.0)
    if width == 1:  # 8-bit WAV is unsigned
        return (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
    if width == 3:
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    if width == 4:
        return (np.frombuffer(data, "<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    raise DataError(f"{path}: {8 * width}-bit samples are not supported (8, 16, 24 or 32-bit PCM)")


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample mono float samples from ``rate`` to ``target`` Hz (see the module docstring for how)."""
    x = np.asarray(x, np.float32)
    if rate == target or len(x) == 0:
        return x
    if target < rate:  # low-pass at the new Nyquist frequency first, or energy above it folds back in
        cutoff = target / rate  # the new Nyquist frequency as a fraction of the old one (2 fc in cycles/sample)
        n = np.arange(_TAPS) - (_TAPS - 1) / 2
        h = cutoff * np.sinc(cutoff * n) * np.blackman(_TAPS)
        x = np.convolve(x, (h / h.sum()).astype(np.float32), mode="same")
    n_out = int(round(len(x) * target / rate))
    t = np.arange(n_out) * (rate / target)
    return np.interp(t, np.arange(len(x)), x).astype(np.float32)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> Path:
    """Write float samples in [-1, 1] (mono (n,) or (n, channels)) as 16-bit PCM."""
    x = np.clip(np.asarray(samples, np.float32), -1.0, 1.0)
    channels = 1 if x.ndim == 1 else x.shape[1]
    pcm = np.round(x * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return Path(path)
