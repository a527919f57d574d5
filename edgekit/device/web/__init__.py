"""The bundle in a browser: one page that proves each ONNX artifact in onnxruntime-web, served from here.

A phone runs no Python, but its browser runs the same ONNX files on WebAssembly (SIMD, threads when the page
is cross-origin isolated). ``edgekit demo web BUNDLE`` serves, from this machine and nothing else:

- ``/`` and ``/app.js``: the page (edgekit/device/web/static);
- ``/ort/...``: onnxruntime-web's module and WebAssembly files, installed at set-up time by ``npm ci`` in
  ``web/`` (pinned in web/package-lock.json; never a CDN);
- ``/bundle/manifest.json``, ``/bundle/artifacts/...``: the bundle's own files, after its checksums and
  signature were verified here;
- ``/bundle/golden.json``: the golden inputs and the host runtime's outputs for each artifact (float32, base64);
- ``POST /report``: what the page measured (per artifact: max abs diff, top-1 agreement against the host,
  p50/p90 latency, the backend and its threads, the browser's user agent), written as
  ``deploy-report-<device>-web.json`` beside the SSH and ADB reports (and into the run folder).

The page runs the golden pairs first, with the smoke test's criteria (fp32: max abs diff <= 1e-3; fp16/int8:
top-1 agreement >= 0.95), then times each artifact. Device side: the standard library and numpy; no torch.
The camera and microphone demos in the page, LiteRT.js for .tflite and ``--https`` are not built yet.
"""
