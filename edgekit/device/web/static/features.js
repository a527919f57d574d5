// The keyword-spotting front end and the streaming decision in JS, as edgekit/device/features.py and
// edgekit/device/demos/mic.py do them, so the browser hears what `edgekit demo mic` hears:
//
//   MFCC: periodic-Hann windows of spec.window samples every spec.hop, |rfft| with spec.n_fft points,
//         triangular HTK-mel bands (DC bin zero), log(mel + 1e-6), DCT-II scaled by 1/sqrt(2 n_mels),
//         standardized by the spec's per-coefficient mean and std: (1, 1, frames, n_mfcc) float32;
//   KeywordSpotter: a 1 s window every hop_ms, posteriors averaged over the last `smooth` windows, an event
//         while one keyword stays >= threshold, reported once at its peak, refractory time between two.

const LOG_OFFSET = 1e-6;
export const NON_KEYWORDS = ["_silence_", "_unknown_"];

const hzToMel = (f) => 1127.0 * Math.log1p(f / 700.0);

function melMatrix(rate, nFft, nMels, fmin, fmax) {  // (bins, nMels), as features.mel_matrix
  const bins = (nFft >> 1) + 1, w = new Float32Array(bins * nMels);
  const lo = hzToMel(fmin), hi = hzToMel(fmax), edges = [];
  for (let i = 0; i < nMels + 2; i++) edges.push(lo + (hi - lo) * i / (nMels + 1));
  for (let b = 1; b < bins; b++) {
    const mel = hzToMel((rate / 2) * b / (bins - 1));
    for (let m = 0; m < nMels; m++) {
      const up = (mel - edges[m]) / (edges[m + 1] - edges[m]), down = (edges[m + 2] - mel) / (edges[m + 2] - edges[m + 1]);
      w[b * nMels + m] = Math.max(0, Math.min(up, down));
    }
  }
  return w;
}

function dctMatrix(nMels, nMfcc) {  // (nMels, nMfcc), as features.dct_matrix
  const d = new Float32Array(nMels * nMfcc);
  for (let n = 0; n < nMels; n++) for (let k = 0; k < nMfcc; k++)
    d[n * nMfcc + k] = 2.0 * Math.cos(Math.PI * k * (2 * n + 1) / (2 * nMels)) / Math.sqrt(2.0 * nMels);
  return d;
}

// |rfft(x, n)| for a power-of-two n (iterative radix-2), a plain DFT otherwise.
function magnitude(x, n) {
  const re = new Float64Array(n), im = new Float64Array(n), bins = (n >> 1) + 1, out = new Float64Array(bins);
  re.set(x.subarray(0, Math.min(x.length, n)));
  if ((n & (n - 1)) !== 0) {
    for (let k = 0; k < bins; k++) {
      let a = 0, b = 0;
      for (let t = 0; t < n; t++) { a += re[t] * Math.cos(2 * Math.PI * k * t / n); b -= re[t] * Math.sin(2 * Math.PI * k * t / n); }
      out[k] = Math.hypot(a, b);
    }
    return out;
  }
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = -2 * Math.PI / len;
    for (let i = 0; i < n; i += len) for (let k = 0; k < len / 2; k++) {
      const wr = Math.cos(ang * k), wi = Math.sin(ang * k), a = i + k, b = a + len / 2;
      const tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
      re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
    }
  }
  for (let k = 0; k < bins; k++) out[k] = Math.hypot(re[k], im[k]);
  return out;
}

export class Mfcc {
  constructor(spec) {
    this.spec = spec;
    this.fb = melMatrix(spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin, spec.fmax);
    this.dct = dctMatrix(spec.n_mels, spec.n_mfcc);
    this.window = new Float32Array(spec.window);
    for (let i = 0; i < spec.window; i++) this.window[i] = 0.5 - 0.5 * Math.cos(2 * Math.PI * i / spec.window);
    this.frames = 1 + Math.floor((spec.clip_samples - spec.window) / spec.hop);
  }

  /** Standardized MFCCs of one clip of spec.clip_samples float samples: (1, 1, frames, n_mfcc) row-major. */
  apply(clip) {
    const s = this.spec, bins = (s.n_fft >> 1) + 1, out = new Float32Array(this.frames * s.n_mfcc);
    const frame = new Float64Array(s.window), logMel = new Float64Array(s.n_mels);
    for (let f = 0; f < this.frames; f++) {
      for (let i = 0; i < s.window; i++) frame[i] = Math.fround(clip[f * s.hop + i] * this.window[i]);
      const mag = magnitude(frame, s.n_fft);
      for (let m = 0; m < s.n_mels; m++) {
        let acc = 0;
        for (let b = 0; b < bins; b++) acc += mag[b] * this.fb[b * s.n_mels + m];
        logMel[m] = Math.log(acc + LOG_OFFSET);
      }
      for (let k = 0; k < s.n_mfcc; k++) {
        let acc = 0;
        for (let m = 0; m < s.n_mels; m++) acc += logMel[m] * this.dct[m * s.n_mfcc + k];
        out[f * s.n_mfcc + k] = (acc - s.mean[k]) / s.std[k];
      }
    }
    return out;
  }
}

/** The mic demo's KeywordSpotter: feed(samples) -> detections [{keyword, confidence, time_s}]. */
export class KeywordSpotter {
  constructor(spec, labels, model, { hopMs = 200, smooth = 4, threshold = 0.7, refractoryMs = 500 } = {}) {
    this.mfcc = new Mfcc(spec);
    this.labels = labels; this.model = model;
    this.rate = spec.sample_rate; this.windowLen = spec.clip_samples;
    this.hop = Math.round(this.rate * hopMs / 1000);
    this.smooth = Math.max(1, smooth); this.threshold = threshold; this.refractory = refractoryMs / 1000;
    this.keywordIdx = labels.map((l, i) => [l, i]).filter(([l]) => !NON_KEYWORDS.includes(l)).map(([, i]) => i);
    this.shape = [1, 1, this.mfcc.frames, spec.n_mfcc];
    this.buf = new Float32Array(this.windowLen);
    this.pending = []; this.pendingLen = 0; this.samples = 0;
    this.history = []; this.event = null; this.lastTime = -1e9; this.windows = 0; this.busyMs = 0;
  }

  async posteriors() {
    const logits = await this.model.run(this.mfcc.apply(this.buf), this.shape);
    let top = -Infinity;
    for (const v of logits) top = Math.max(top, v);
    const z = Array.from(logits, (v) => Math.exp(v - top)), sum = z.reduce((a, b) => a + b, 0);
    return z.map((v) => v / sum);
  }

  async feed(samples) {
    const t0 = performance.now(), out = [];
    this.pending.push(Float32Array.from(samples)); this.pendingLen += samples.length;
    while (this.pendingLen >= this.hop) {
      const all = new Float32Array(this.pendingLen);
      let o = 0;
      for (const p of this.pending) { all.set(p, o); o += p.length; }
      const step = all.subarray(0, this.hop);
      this.pending = [all.slice(this.hop)]; this.pendingLen -= this.hop;
      this.buf.copyWithin(0, this.hop); this.buf.set(step, this.windowLen - this.hop);
      this.samples += this.hop; this.windows++;
      this.history.push(await this.posteriors());
      if (this.history.length > this.smooth) this.history.shift();
      const mean = this.history[0].map((_, i) => this.history.reduce((a, h) => a + h[i], 0) / this.history.length);
      const det = this.decide(mean, this.samples / this.rate);
      if (det) out.push(det);
    }
    this.busyMs += performance.now() - t0;
    return out;
  }

  decide(p, now) {
    let k = this.keywordIdx[0];
    for (const i of this.keywordIdx) if (p[i] > p[k]) k = i;
    const active = p[k] >= this.threshold;
    let done = null;
    if (this.event && (!active || k !== this.event.k)) done = this.closeEvent();
    if (active && (!this.event || p[k] > this.event.conf)) this.event = { k, conf: p[k], t: now };
    return done;
  }

  closeEvent() {
    const { k, conf, t } = this.event;
    this.event = null;
    if (t - this.lastTime < this.refractory) return null;
    this.lastTime = t;
    return { keyword: this.labels[k], confidence: Math.round(conf * 1e4) / 1e4, time_s: Math.round(t * 1e3) / 1e3 };
  }
}
