// edgekit demo web: prove each of the bundle's artifacts in this browser (golden pairs against the host's
// outputs, with the smoke test's criteria), time it, post the report; then start the camera demo (image
// bundles) or the microphone demo (keyword bundles) on the fastest artifact that passed.
import * as runtimes from "./runtimes.js";
import { startCamera } from "./camera.js";
import { startMic } from "./mic.js";

const WARMUP = 5, ITERATIONS = 30;
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

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

async function prove(art, golden, model) {
  const x = decode(golden.x), n = x.shape[0], per = x.data.length / n, rowShape = [1, ...x.shape.slice(1)];
  const host = decode(golden.host[art.name]), classes = host.data.length / n;
  let maxDiff = 0, agree = 0, correct = 0;
  const row = (i) => x.data.slice(i * per, (i + 1) * per);
  for (let i = 0; i < n; i++) {
    const out = await model.run(row(i), rowShape);
    for (let k = 0; k < classes; k++) maxDiff = Math.max(maxDiff, Math.abs(out[k] - host.data[i * classes + k]));
    const top = argmax(out, 0, classes);
    agree += top === argmax(host.data, i * classes, classes);
    if (golden.y) correct += top === golden.y[i];
  }
  const one = row(0), times = [];
  for (let i = 0; i < WARMUP; i++) await model.run(one, rowShape);
  for (let i = 0; i < ITERATIONS; i++) {
    const t0 = performance.now();
    await model.run(one, rowShape);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const c = golden.criteria, agreement = agree / n;
  const ok = art.precision === "fp32" ? maxDiff <= c.fp32_tolerance : agreement >= c.min_agreement;
  const verdict = art.precision === "fp32"
    ? `max abs diff ${maxDiff.toExponential(1)} vs the host's ${art.host_runtime} (${ok ? "<=" : ">"} ${c.fp32_tolerance})`
    : `top-1 agreement ${agreement.toFixed(4)} with the host's ${art.host_runtime} (${ok ? ">=" : "<"} ${c.min_agreement})`;
  return {
    artifact: art.name, file: art.file, precision: art.precision, runtime: model.runtime, backend: model.backend,
    native_runtime: art.host_runtime, threads: model.threads, samples: n, max_abs_diff: maxDiff,
    top1_agreement: agreement, accuracy: golden.y ? correct / n : null, p50_ms: percentile(times, 0.5),
    p90_ms: percentile(times, 0.9), iterations: ITERATIONS, passed: ok, verdict,
  };
}

function show(r) {
  const tr = document.createElement("tr");
  const cells = [r.artifact, `${r.runtime} ${r.backend} ${r.threads}T`, `${r.samples}`, r.top1_agreement.toFixed(4),
                 r.max_abs_diff.toExponential(1), r.p50_ms.toFixed(3), r.p90_ms.toFixed(3)];
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
  const td = document.createElement("td");
  td.textContent = `${r.passed ? "PASS" : "FAIL"}: ${r.verdict}`;
  td.className = r.passed ? "pass" : "fail";
  tr.appendChild(td);
  tr.dataset.artifact = r.artifact;
  $("results").querySelector("tbody").appendChild(tr);
}

async function demo(golden, passed, threads) {
  // the artifact asked for (?artifact=NAME), else the fastest that passed in this browser
  const asked = params.get("artifact");
  const pick = passed.filter((r) => !asked || r.artifact === asked).sort((a, b) => a.p50_ms - b.p50_ms)[0];
  if (!pick || params.get("demo") === "0") return;
  const art = golden.artifacts.find((a) => a.name === pick.artifact);
  const model = await runtimes.open(art, threads);
  const spec = golden.preprocess;
  $("demo").hidden = false;
  try {
    if (spec.kind === "image") {
      $("camera").hidden = false;
      $("demo-status").textContent = `camera → ${art.name} on ${model.runtime}`;
      await startCamera(spec, golden.labels, model, { record: parseInt(params.get("record") || "0", 10) });
    } else if (spec.kind === "mfcc") {
      $("mic").hidden = false;
      $("demo-status").textContent = `microphone → ${art.name} on ${model.runtime} (say a keyword)`;
      await startMic(spec, golden.labels, model, {
        onDetection: (d) => {
          const li = document.createElement("li");
          li.textContent = `${d.time_s.toFixed(2)} s  ${d.keyword}  ${(d.confidence * 100).toFixed(1)} %`;
          $("keywords").appendChild(li);
        },
      });
    }
    document.body.dataset.demo = "running";
  } catch (e) {
    $("demo-status").textContent = `the ${spec.kind === "mfcc" ? "microphone" : "camera"} demo cannot start: ` +
      `${e.message || e} (the page needs http://localhost or https for the camera and microphone)`;
    document.body.dataset.demo = "failed";
  }
}

async function main() {
  const t0 = performance.now();
  const asked = parseInt(params.get("threads") || "0", 10);  // ?threads=N
  const most = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const threads = asked > 0 ? Math.min(asked, most) : most;
  const golden = await (await fetch("/bundle/golden.json")).json();
  const results = [], problems = [];
  for (const art of golden.artifacts) {
    $("status").textContent = `running ${art.name} (${golden.x.shape[0]} golden pairs)…`;
    try {
      const model = await runtimes.open(art, threads);
      const r = await prove(art, golden, model);
      await model.release();
      results.push(r); show(r);
      if (!r.passed) problems.push(`${r.artifact} on ${r.runtime}: ${r.verdict}`);
    } catch (e) {
      const r = { artifact: art.name, runtime: null, passed: false, verdict: `${art.format} runtime: ${e.message || e}` };
      results.push(r); problems.push(`${art.name}: ${r.verdict}`);
    }
  }
  const passed = problems.length === 0;
  $("status").textContent = `${golden.device} bundle, WebAssembly with ${threads} threads` +
    (self.crossOriginIsolated ? "" : " (page not cross-origin isolated)");
  $("verdict").innerHTML = `<span class="${passed ? "pass" : "fail"}">${passed ? "PASSED" : "FAILED"}</span> ` +
    (problems.length ? problems.join("; ") : "every artifact matches the host on the golden pairs");
  document.body.dataset.done = passed ? "passed" : "failed";
  await fetch("/report", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      results, problems, passed, seconds: (performance.now() - t0) / 1000,
      environment: { user_agent: navigator.userAgent, cpus: navigator.hardwareConcurrency || null,
                     cross_origin_isolated: self.crossOriginIsolated },
    }),
  });
  await demo(golden, results.filter((r) => r.passed), threads);
}

main().catch((e) => {
  $("status").textContent = `error: ${e.message || e}`;
  fetch("/report", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ results: [], problems: [`page error: ${e.message || e}`], passed: false }) });
});
