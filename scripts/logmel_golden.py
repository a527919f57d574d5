"""Make tests/golden/logmel_librosa.npz: the anomaly front end's reference features, computed by librosa itself.

The MLPerf Tiny anomaly-detection reference is the DCASE 2020 task 2 baseline (common.py,
file_to_vector_array): librosa.feature.melspectrogram(y, sr, n_fft=1024, hop_length=512, n_mels=128,
power=2.0), then 20 / power * log10(mel + sys.float_info.epsilon), and 5 consecutive frames per vector.
librosa's defaults there: a centred STFT (n_fft // 2 samples of padding on each side; "reflect" in the
librosa releases of 2020, pinned explicitly here since librosa 0.10 pads with zeros), a periodic Hann window,
Slaney's mel scale and Slaney's area normalisation. edgekit.data.logmel is tested against this file.

librosa is not one of edgekit's dependencies (it pulls numba and llvmlite); give this script a Python that has it:
    python3 -m venv /tmp/lr && /tmp/lr/bin/pip install librosa
    .venv/bin/python scripts/logmel_golden.py /tmp/lr/bin/python
The clips are edgekit's synthetic machine sounds (normal and anomalous), plus one silent clip.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "golden" / "logmel_librosa.npz"

LIBROSA_SNIPPET = r"""
import json, sys
import numpy as np
import librosa
src, dst = sys.argv[1], sys.argv[2]
pcm = np.load(src)["pcm"]
out = []
for y in pcm.astype(np.float32) / 32768.0:
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=512, n_mels=128, power=2.0,
                                         pad_mode="reflect")
    out.append((20.0 / 2.0 * np.log10(mel + sys.float_info.epsilon)).T)
np.save(dst, np.stack(out).astype(np.float32))
print(json.dumps({"librosa": librosa.__version__, "pad_mode": "reflect"}))
"""


def clips() -> np.ndarray:
    from edgekit.data import machine_sounds

    normal, _ = machine_sounds.generate(3, anomalous_fraction=0.0, seed=5)
    odd, _ = machine_sounds.generate(3, anomalous_fraction=1.0, seed=6)
    x = np.concatenate([normal, odd, np.zeros((1, normal.shape[1]), np.float32)])
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-4], file=sys.stderr)
        return 2
    pcm = clips()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "pcm.npz", Path(tmp) / "logmel.npy"
        np.savez(src, pcm=pcm)
        proc = subprocess.run([sys.argv[1], "-c", LIBROSA_SNIPPET, str(src), str(dst)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        OUT.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(OUT, pcm=pcm, log_mel=np.load(dst), info=json.dumps(info))
    print(f"{OUT}: {len(pcm)} clips, librosa {info['librosa']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
