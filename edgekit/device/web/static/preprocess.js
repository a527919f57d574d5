// The bundle's image pre-processing in JS, step for step as edgekit/device/preprocess.py does it, so a camera
// frame gives the browser's model the tensor the host's model would get from the same pixels:
//
//   to_pixels: RGBA (a canvas' ImageData) -> gray by OpenCV's BT.601 fixed-point weights (channels 1) or RGB
//              (channels 3), then to the model's size: area averaging when shrinking (cv2.INTER_AREA),
//              bilinear when enlarging (cv2.INTER_LINEAR), rounded half to even like cv2's saturate_cast;
//   apply:     x * scale, minus mean, over std, NCHW float32.
//
// The aspect ratio is not kept (a 4:3 frame is squeezed into the input), as the OpenCV camera demo does.

// cv2's RGB -> gray for 8-bit pixels: Y = (4899 R + 9617 G + 1868 B + 2^13) >> 14 (imgproc/src/color_yuv)
const R2Y = 4899, G2Y = 9617, B2Y = 1868;

function roundEven(v) {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : r;
}

function toChannels(rgba, n, channels) {
  const out = new Uint8Array(n * channels);
  for (let i = 0; i < n; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    if (channels === 1) out[i] = (R2Y * r + G2Y * g + B2Y * b + 8192) >> 14;
    else { out[3 * i] = r; out[3 * i + 1] = g; out[3 * i + 2] = b; }
  }
  return out;
}

// For each output index along one axis: the source indices it covers and their weights (overlap lengths
// over the scale), as cv2's computeResizeAreaTab builds them.
function areaTable(src, dst) {
  const scale = src / dst, tab = [];
  for (let d = 0; d < dst; d++) {
    const f0 = d * scale, f1 = f0 + scale, items = [];
    for (let s = Math.floor(f0); s < Math.min(src, Math.ceil(f1)); s++) {
      const w = Math.min(f1, s + 1) - Math.max(f0, s);
      if (w > 1e-9) items.push([s, w / scale]);
    }
    tab.push(items);
  }
  return tab;
}

function resizeArea(px, w, h, c, W, H) {
  const ty = areaTable(h, H), tx = areaTable(w, W), out = new Uint8Array(W * H * c);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let k = 0; k < c; k++) {
    let acc = 0;
    for (const [sy, wy] of ty[y]) for (const [sx, wx] of tx[x]) acc += wy * wx * px[(sy * w + sx) * c + k];
    out[(y * W + x) * c + k] = Math.min(255, Math.max(0, roundEven(acc)));
  }
  return out;
}

// cv2.INTER_LINEAR on 8-bit pixels in fixed point, as imgproc/src/resize.cpp computes it: per output index
// the source index and its two weights in 1/2048 (INTER_RESIZE_COEF_BITS = 11, rounded half to even from the
// float weights), a horizontal pass into ints, then the vectorized vertical blend of VResizeLinearVec_32s8u
// ((r >> 4) * b >> 16 per row, summed, + 2 >> 2). OpenCV's wheels route some sizes through Intel IPP, which
// rounds its own way: measured against cv2 4.x, one level apart on 0-3 % of the pixels when enlarging (a
// camera frame is larger than a model's input: the demo shrinks, by the area path above).
const COEF = 2048;

function linearTable(src, dst) {
  const scale = 1 / (dst / src), tab = [];
  for (let d = 0; d < dst; d++) {
    let f = Math.fround((d + 0.5) * scale - 0.5), s = Math.floor(f);
    f = Math.fround(f - s);
    if (s < 0) { f = 0; s = 0; }
    if (s >= src - 1) { f = 0; s = src - 1; }
    tab.push([s, Math.min(src - 1, s + 1), roundEven(Math.fround(1 - f) * COEF), roundEven(f * COEF)]);
  }
  return tab;
}

function resizeLinear(px, w, h, c, W, H) {
  const tx = linearTable(w, W), ty = linearTable(h, H), out = new Uint8Array(W * H * c), n = W * c;
  const rowOf = (sy) => {
    const row = new Int32Array(n);
    for (let x = 0; x < W; x++) {
      const [s0, s1, a0, a1] = tx[x];
      for (let k = 0; k < c; k++) row[x * c + k] = px[(sy * w + s0) * c + k] * a0 + px[(sy * w + s1) * c + k] * a1;
    }
    return row;
  };
  for (let y = 0; y < H; y++) {
    const [s0, s1, b0, b1] = ty[y], r0 = rowOf(s0), r1 = rowOf(s1), o = y * n;
    for (let i = 0; i < n; i++) {
      const v = (((r0[i] >> 4) * b0) >> 16) + (((r1[i] >> 4) * b1) >> 16);
      out[o + i] = Math.min(255, Math.max(0, (v + 2) >> 2));
    }
  }
  return out;
}

/** RGBA pixels (w x h) as the model's uint8 pixels (H, W, channels), as preprocess.to_pixels does. */
export function toPixels(rgba, w, h, spec) {
  const [H, W] = spec.size, c = spec.channels;
  const px = toChannels(rgba, w * h, c);
  if (w === W && h === H) return px;
  return (h >= H && w >= W) ? resizeArea(px, w, h, c, W, H) : resizeLinear(px, w, h, c, W, H);
}

/** uint8 pixels (H, W, C) as the float32 NCHW tensor (1, C, H, W), as preprocess.apply does. */
export function applyImage(spec, px) {
  const [H, W] = spec.size, c = spec.channels, out = new Float32Array(c * H * W);
  const scale = Math.fround(spec.scale);
  for (let k = 0; k < c; k++) {
    const mean = Math.fround(spec.mean[k % spec.mean.length]), std = Math.fround(spec.std[k % spec.std.length]);
    for (let i = 0; i < H * W; i++) out[k * H * W + i] = Math.fround(Math.fround(px[i * c + k] * scale) - mean) / std;
  }
  return out;
}
