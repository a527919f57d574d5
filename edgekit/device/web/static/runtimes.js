// The browser's runtimes behind one interface: open(artifact) -> {run(Float32Array) -> Float32Array, release}.
//
// .onnx runs in onnxruntime-web, .tflite in LiteRT.js, both on WebAssembly (SIMD; threads when the page is
// cross-origin isolated). Both are served by the edgekit server from web/node_modules (installed at set-up
// time, pinned): nothing is fetched from outside it. A full-int8 .tflite takes and gives int8: run() quantizes
// the float input with the scale and zero point the server read from the file (LiteRT.js does not report
// them) and dequantizes the output, as edgekit's Python TFLite session does.

let ort = null, litert = null, litertThreaded = false;

async function onnxruntime(threads) {
  if (!ort) {
    ort = await import("/ort/ort.wasm.min.mjs");
    ort.env.wasm.wasmPaths = "/ort/";
    ort.env.wasm.numThreads = threads;
  }
  return ort;
}

async function liteRt(threads) {
  if (!litert) {
    litert = await import("/litert/core.js");
    // The threaded build needs cross-origin isolation and relaxed SIMD; otherwise the single-threaded one.
    const canThread = threads > 1 && self.crossOriginIsolated && await litert.supportsFeature("relaxedSimd");
    await litert.loadLiteRt("/litert/wasm/", canThread ? { threads: true } : {});
    litertThreaded = canThread;
  }
  return litert;
}

function quantize(x, q) {
  const lo = q.type === "uint8" ? 0 : -128, hi = q.type === "uint8" ? 255 : 127;
  const out = q.type === "uint8" ? new Uint8Array(x.length) : new Int8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    // numpy's round is half to even: match it, so the browser feeds the integers the host fed
    const v = x[i] / q.scale, r = Math.round(v), even = (Math.abs(v % 1) === 0.5) ? 2 * Math.round(v / 2) : r;
    out[i] = Math.min(hi, Math.max(lo, even + q.zero_point));
  }
  return out;
}

function dequantize(y, q) {
  if (!q || q.scale === null) return Float32Array.from(y);
  const out = new Float32Array(y.length);
  for (let i = 0; i < y.length; i++) out[i] = Math.fround((y[i] - q.zero_point) * q.scale);
  return out;
}

export async function open(art, threads) {
  if (art.format === "onnx") {
    const rt = await onnxruntime(threads);
    const session = await rt.InferenceSession.create(`/bundle/${art.file}`, { executionProviders: ["wasm"] });
    const input = session.inputNames[0], output = session.outputNames[0];
    return {
      runtime: "onnxruntime-web", backend: "wasm", threads, version: rt.env.versions?.web || null,
      async run(x, shape) {
        return (await session.run({ [input]: new rt.Tensor("float32", x, shape) }))[output].data;
      },
      release: () => session.release(),
    };
  }
  if (art.format === "tflite") {
    const rt = await liteRt(threads);
    const model = await rt.loadAndCompile(`/bundle/${art.file}`,
      { accelerator: "wasm", cpuOptions: { numThreads: litertThreaded ? threads : 1 } });
    const qin = art.io.inputs[0], qout = art.io.outputs[0];
    return {
      runtime: "litert.js", backend: "wasm", threads: litertThreaded ? threads : 1, version: null,
      async run(x, shape) {
        const data = qin.scale !== null && qin.type !== "float32" ? quantize(x, qin) : x;
        const t = new rt.Tensor(data, shape);
        const outs = await model.run(t);
        t.delete();
        const y = outs[0].toTypedArray().slice();
        for (const o of outs) o.delete();
        return dequantize(y, qout.type === "float32" ? null : qout);
      },
      release: () => model.delete(),
    };
  }
  throw new Error(`${art.file}: the browser page runs .onnx and .tflite files`);
}
