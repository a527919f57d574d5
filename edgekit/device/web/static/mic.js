// The microphone demo in the page: microphone audio at the bundle's sample rate through an AudioWorklet,
// features.js's MFCC and KeywordSpotter (the same window, hop, smoothing, threshold and peak picking as
// `edgekit demo mic`), detected keywords listed with their times. window.edgekitMic holds what was heard.
import { KeywordSpotter } from "./features.js";

export async function startMic(spec, labels, model, { onDetection = null } = {}) {
  // No echo cancellation, noise suppression or gain control: the model hears the microphone as the host's
  // demo does, not a call-processed signal.
  const stream = await navigator.mediaDevices.getUserMedia(
    { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false }, video: false });
  const ctx = new AudioContext({ sampleRate: spec.sample_rate });  // the browser resamples the device to it
  await ctx.audioWorklet.addModule("/mic-worklet.js");
  const node = new AudioWorkletNode(ctx, "edgekit-capture");
  ctx.createMediaStreamSource(stream).connect(node);
  const ks = new KeywordSpotter(spec, labels, model);
  const state = window.edgekitMic = { detections: [], seconds: 0, windows: 0, rate: ctx.sampleRate, rtf: 0 };
  let chain = Promise.resolve();
  node.port.onmessage = (e) => {
    chain = chain.then(async () => {
      for (const d of await ks.feed(e.data)) {
        state.detections.push(d);
        if (onDetection) onDetection(d);
      }
      state.seconds = ks.samples / ks.rate; state.windows = ks.windows;
      state.rtf = state.seconds ? ks.busyMs / 1000 / state.seconds : 0;
    });
  };
  await ctx.resume();
  return state;
}
