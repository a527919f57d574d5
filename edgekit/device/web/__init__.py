"""The bundle in a browser: one page that proves each ONNX and TFLite artifact in the browser's own runtime
(onnxruntime-web, LiteRT.js), then runs the camera or microphone demo on it. Served from here, nothing else.

A phone runs no Python, but its browser runs the same .onnx and .tflite files on WebAssembly (SIMD, threads
when the page is cross-origin isolated). ``edgekit demo web BUNDLE`` serves, from this machine only:

- ``/`` and ``/*.js``: the page (edgekit/device/web/static): app.js (golden pairs, report, demo), runtimes.js
  (one interface over both runtimes), preprocess.js and features.js (edgekit's image pre-processing and MFCC
  front end, ported step for step), camera.js, mic.js and mic-worklet.js (the demos);
- ``/ort/...`` and ``/litert/...``: onnxruntime-web's and LiteRT.js's modules and WebAssembly files, installed
  at set-up time by ``npm ci`` in ``web/`` (pinned in web/package-lock.json; never a CDN);
- ``/bundle/manifest.json``, ``/bundle/artifacts/...``: the bundle's own files, after its checksums and
  signature were verified here;
- ``/bundle/golden.json``: the golden inputs and the host runtime's outputs for each artifact (float32,
  base64), each .tflite file's input/output quantization (LiteRT.js does not report it), the pre-processing;
- ``POST /report``: what the page measured (per artifact: max abs diff, top-1 agreement against the host,
  p50/p90 latency, runtime, backend and threads, the browser's user agent), written as
  ``deploy-report-<device>-web.json`` beside the SSH and ADB reports (and into the run folder).

The page runs the golden pairs first, with the smoke test's criteria (fp32: max abs diff <= 1e-3; fp16/int8:
top-1 agreement >= 0.95), then times each artifact, then starts the demo on the fastest that passed.
``--https`` serves with edgekit's self-signed certificate (tls.py) for phones on a LAN; over adb,
``http://localhost`` after ``adb reverse`` is already a secure context. Device side: the standard library,
numpy and ``cryptography``; no torch.
"""
