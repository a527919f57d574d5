// AudioWorklet: hands the microphone's samples (channel 0, at the AudioContext's rate) to the page in blocks.
class Capture extends AudioWorkletProcessor {
  constructor() { super(); this.block = []; this.n = 0; }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) {
      this.block.push(ch.slice()); this.n += ch.length;
      if (this.n >= 1600) {  // ~0.1 s at 16 kHz: one message per block keeps the main thread calm
        const out = new Float32Array(this.n);
        let o = 0;
        for (const b of this.block) { out.set(b, o); o += b.length; }
        this.port.postMessage(out, [out.buffer]);
        this.block = []; this.n = 0;
      }
    }
    return true;
  }
}
registerProcessor("edgekit-capture", Capture);
