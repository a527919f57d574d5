"""Make tests/golden/mfcc_tf_signal.npz: MFCCs of real keyword clips computed by TensorFlow's tf.signal itself.

The MLPerf Tiny KWS reference (mlcommons/tiny, benchmark/training/keyword_spotting: get_dataset.py, kws_util.py)
computes its features with tf.signal: 30 ms Hann windows (480 samples) every 20 ms (320), fft_length=None
(the next power of two, 512), |STFT|, 40 mel bands over 20-4000 Hz, log(mel + 1e-6), the first 10 MFCCs.
edgekit's numpy front end (edgekit.device.features) is tested against this file, so the comparison is with
TensorFlow, not with a second implementation of the same reading of the reference.

Run once, when the front end's reference changes (TensorFlow lives in onnx2tf's environment, never in .venv):
    .venv/bin/python scripts/mfcc_golden.py
It takes clips from the synthesized keyword corpus (.cache/keywords; make test builds it): words spoken by
held-out voices, mixed with rooms and noise as the test split is, plus one silent clip.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "golden" / "mfcc_tf_signal.npz"

TF_SNIPPET = r"""
import json, sys
import numpy as np
import tensorflow as tf
src, dst = sys.argv[1], sys.argv[2]
wav = np.load(src)["pcm"].astype(np.float32) / 32768.0
stfts = tf.signal.stft(wav, frame_length=480, frame_step=320, fft_length=None, window_fn=tf.signal.hann_window)
spectrograms = tf.abs(stfts)
num_spectrogram_bins = stfts.shape[-1]
mel = tf.signal.linear_to_mel_weight_matrix(40, num_spectrogram_bins, 16000, 20.0, 4000.0)
mel_spectrograms = tf.tensordot(spectrograms, mel, 1)
log_mel = tf.math.log(mel_spectrograms + 1e-6)
mfccs = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :10]
np.save(dst, mfccs.numpy().astype(np.float32))
print(json.dumps({"tensorflow": tf.__version__, "fft_bins": int(num_spectrogram_bins)}))
"""


def clips() -> np.ndarray:
    """Six test-split keyword clips (16-bit PCM) from six held-out voices, and 1 s of silence."""
    from edgekit.data import keywords

    cfg = keywords.Config()
    words = keywords.load_words(ROOT / ".cache" / "keywords", cfg)["test"]
    x, y, who = keywords.mix_split(words, "test", seed=cfg.seed)
    picked, seen = [], set()
    for i in range(len(x)):
        if who[i] not in seen and y[i] < len(keywords.KEYWORDS):
            seen.add(who[i])
            picked.append(x[i])
        if len(picked) == 6:
            break
    picked.append(np.zeros(16000, np.float32))
    return np.round(np.clip(np.stack(picked), -1, 1) * 32767).astype(np.int16)


def main() -> int:
    from edgekit.export.route_onnx2tf import onnx2tf_venv

    pcm = clips()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "pcm.npz", Path(tmp) / "mfcc.npy"
        np.savez(src, pcm=pcm)
        proc = subprocess.run([str(onnx2tf_venv() / "bin" / "python"), "-c", TF_SNIPPET, str(src), str(dst)],
                              capture_output=True, text=True, env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin"})
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        OUT.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(OUT, pcm=pcm, mfcc=np.load(dst), info=json.dumps(info))
    print(f"{OUT}: {len(pcm)} clips, tensorflow {info['tensorflow']}, {info['fft_bins']} FFT bins")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
