// edgekit demo web: run the bundle's golden pairs through onnxruntime-web, time each artifact, post the report.
import * as ort from "/ort/ort.wasm.min.mjs";

const WARMUP = 5, ITERATIONS = 30;
const $ = (id) => document.getElementById(id);

function decode(enc) {
  const bytes = Uint8Array.from(atob(enc.data), (c) => c.charCodeAt(0));
  return { shape: enc.shape, data: new Float32Array(bytes.buffer) };
}

function argmax(a, off, n) {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[off + i] > a[off + best]) best = i;
  return best;
}

function percentile(sorted, q) {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

async function runArtifact(art, golden, threads) {
  const session = await ort.InferenceSession.create(`/bundle/${art.file}`, { executionProviders: ["wasm"] });
  const inputName = session.inputNames[0], outputName = session.outputNames[0];
  const x = decode(golden.x), n = x.shape[0], per = x.data.length / n, rowShape = [1, ...x.shape.slice(1)];
  const host = decode(golden.host[art.name]), classes = host.data.length / n;
  let maxDiff = 0, agree = 0, correct = 0;
  const row = (i) => new ort.Tensor("float32", x.data.slice(i * per, (i + 1) * per), rowShape);
  for (let i = 0; i < n; i++) {
    const out = (await session.run({ [inputName]: row(i) }))[outputName].data;
    for (let k = 0; k < classes; k++) maxDiff = Math.max(maxDiff, Math.abs(out[k] - host.data[i * classes + k]));
    const top = argmax(out, 0, classes);
    agree += top === argmax(host.data, i * classes, classes);
    if (golden.y) correct += top === golden.y[i];
  }
  const one = row(0), times = [];
  for (let i = 0; i < WARMUP; i++) await session.run({ [inputName]: one });
  for (let i = 0; i < ITERATIONS; i++) {
    const t0 = performance.now();
    await session.run({ [inputName]: one });
    times.push(performance.now() - t0);
  }
  await session.release();
  times.sort((a, b) => a - b);
  const c = golden.criteria, agreement = agree / n;
  const ok = art.precision === "fp32" ? maxDiff <= c.fp32_tolerance : agreement >= c.min_agreement;
  const verdict = art.precision === "fp32"
    ? `max abs diff ${maxDiff.toExponential(1)} vs the host's ${art.host_runtime} (${ok ? "<=" : ">"} ${c.fp32_tolerance})`
    : `top-1 agreement ${agreement.toFixed(4)} with the host's ${art.host_runtime} (${ok ? ">=" : "<"} ${c.min_agreement})`;
  return {
    artifact: art.name, file: art.file, precision: art.precision, runtime: "onnxruntime-web", backend: "wasm",
    native_runtime: "onnxruntime", threads, samples: n, max_abs_diff: maxDiff, top1_agreement: agreement,
    accuracy: golden.y ? correct / n : null, p50_ms: percentile(times, 0.5), p90_ms: percentile(times, 0.9),
    iterations: ITERATIONS, passed: ok, verdict,
  };
}

function show(r) {
  const tr = document.createElement("tr");
  const cells = [r.artifact, `${r.backend} ${r.threads}T`, `${r.samples}`, r.top1_agreement.toFixed(4),
                 r.max_abs_diff.toExponential(1), r.p50_ms.toFixed(3), r.p90_ms.toFixed(3)];
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
  const td = document.createElement("td");
  td.textContent = `${r.passed ? "PASS" : "FAIL"}: ${r.verdict}`;
  td.className = r.passed ? "pass" : "fail";
  tr.appendChild(td);
  tr.dataset.artifact = r.artifact;
  $("results").querySelector("tbody").appendChild(tr);
}

async function main() {
  const t0 = performance.now();
  const asked = parseInt(new URLSearchParams(location.search).get("threads") || "0", 10);  // ?threads=N
  const most = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const threads = asked > 0 ? Math.min(asked, most) : most;
  ort.env.wasm.wasmPaths = "/ort/";
  ort.env.wasm.numThreads = threads;
  const golden = await (await fetch("/bundle/golden.json")).json();
  const results = [], problems = [];
  for (const art of golden.artifacts) {
    $("status").textContent = `running ${art.name} (${golden.x.shape[0]} golden pairs)…`;
    try {
      const r = await runArtifact(art, golden, threads);
      results.push(r); show(r);
      if (!r.passed) problems.push(`${r.artifact} on onnxruntime-web: ${r.verdict}`);
    } catch (e) {
      const r = { artifact: art.name, runtime: null, passed: false, verdict: `onnxruntime-web: ${e.message || e}` };
      results.push(r); problems.push(`${art.name}: ${r.verdict}`);
    }
  }
  const passed = problems.length === 0;
  $("status").textContent = `${golden.device} bundle, onnxruntime-web ${ort.env.versions?.web || ""} (wasm, ${threads} threads${self.crossOriginIsolated ? "" : ": page not cross-origin isolated"})`;
  $("verdict").innerHTML = `<span class="${passed ? "pass" : "fail"}">${passed ? "PASSED" : "FAILED"}</span> ` +
    (problems.length ? problems.join("; ") : "every artifact matches the host on the golden pairs");
  document.body.dataset.done = passed ? "passed" : "failed";
  await fetch("/report", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      results, problems, passed, seconds: (performance.now() - t0) / 1000,
      environment: { user_agent: navigator.userAgent, cpus: navigator.hardwareConcurrency || null,
                     cross_origin_isolated: self.crossOriginIsolated, ort_version: ort.env.versions?.web || null },
    }),
  });
}

main().catch((e) => {
  $("status").textContent = `error: ${e.message || e}`;
  fetch("/report", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ results: [], problems: [`page error: ${e.message || e}`], passed: false }) });
});
