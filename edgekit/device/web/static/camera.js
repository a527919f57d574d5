// The camera demo in the page: getUserMedia video, the bundle's pre-processing (preprocess.js), one artifact,
// label, confidence and FPS drawn over the video. `?record=N` keeps the last N frames' pixels and labels in
// window.edgekitCamera (the tests compare them with the host runtime on the same pixels).
import { applyImage, toPixels } from "./preprocess.js";

function base64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export async function startCamera(spec, labels, model, { record = 0, onFrame = null } = {}) {
  const video = document.getElementById("video"), canvas = document.getElementById("overlay");
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  video.srcObject = stream;
  await video.play();
  const grab = document.createElement("canvas"), g = grab.getContext("2d", { willReadFrequently: true });
  const ctx = canvas.getContext("2d");
  const state = window.edgekitCamera = { frames: [], count: 0, fps: 0 };
  const [H, W] = spec.size, shape = [1, spec.channels, H, W];
  let last = performance.now();
  const loop = async () => {
    const w = video.videoWidth, h = video.videoHeight;
    if (w && h) {
      grab.width = w; grab.height = h;
      // the overlay at the size it is shown, so its text is the same size whatever the camera's resolution
      const cw = canvas.clientWidth || w, chh = Math.round(cw * h / w);
      if (canvas.width !== cw || canvas.height !== chh) { canvas.width = cw; canvas.height = chh; }
      g.drawImage(video, 0, 0, w, h);
      const rgba = g.getImageData(0, 0, w, h).data;
      const out = await model.run(applyImage(spec, toPixels(rgba, w, h, spec)), shape);
      let k = 0, top = -Infinity, sum = 0;
      for (let i = 0; i < out.length; i++) if (out[i] > out[k]) k = i;
      for (const v of out) top = Math.max(top, v);
      for (const v of out) sum += Math.exp(v - top);
      const conf = 1 / sum, now = performance.now();
      state.fps = 0.9 * state.fps + 0.1 * (1000 / Math.max(1, now - last)); last = now; state.count++;
      if (record > 0) {
        state.frames.push({ w, h, rgba: base64(rgba), label: k, confidence: conf });
        if (state.frames.length > record) state.frames.shift();
      }
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.fillStyle = "rgba(0,0,0,0.6)"; ctx.fillRect(0, 0, canvas.width, 22);
      ctx.fillStyle = "#fff"; ctx.font = "14px DejaVu Sans, sans-serif";
      const text = `${labels[k] ?? k}  ${(conf * 100).toFixed(1)} %  ${state.fps.toFixed(1)} FPS`;
      ctx.fillText(text, 6, 16);
      document.getElementById("camera").dataset.label = labels[k] ?? String(k);
      if (onFrame) onFrame(k, conf, state.fps);
    }
    (video.requestVideoFrameCallback ? video.requestVideoFrameCallback(loop) : requestAnimationFrame(loop));
  };
  loop();
  return state;
}
