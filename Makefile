# edgekit: `make run` and `make test` each set up everything they need, then run.
PYTHON ?= python3
VENV   := .venv
DEVENV := .venv-device
BIN    := $(VENV)/bin
RECIPE ?= recipes/fashion_mnist_resnet8.yaml
# torch is pinned to a range that the local CPU build satisfies (a wider one pulls a multi-GB CUDA build).
TORCH  := torch>=2.4,<2.14

.PHONY: help setup system venv web-deps device-venv caches onnx2tf-env run test test-fast test-slow fuzz bench bench-onnx-tflite bench-zoo bench-prune dist lint clean

help:
	@echo "make run        set up, then run the default recipe ($(RECIPE)) end to end"
	@echo "make test       set up, then run every test (including the slow end-to-end ones)"
	@echo "make test-fast  the tests without the slow marker"
	@echo "make fuzz       the fuzzed parsers with 2000 fresh random inputs each (make test runs 60, seeded)"
	@echo "make bench      benchmarks measured side by side in one run, printed as tables"
	@echo "make bench-zoo  the public compatibility matrix: 61 timm architectures through edgekit compress (hours)"
	@echo "make bench-prune  structured pruning alone on 51 more timm architectures (~30 min)"
	@echo "make dist       the sdist and the wheel in dist/, checked by twine"
	@echo "make lint       ruff"
	@echo "make clean      remove virtual environments and run folders"

setup: system venv web-deps

system:
	bash scripts/setup-system.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[all]"
	$(BIN)/pip install -q --no-deps "onnx2torch==1.5.15"  # ONNX -> PyTorch; its deps would pull a CUDA torch + torchvision
	touch $@

# What the browser page of `edgekit demo web` loads (onnxruntime-web), pinned in web/package-lock.json and
# served from web/node_modules: installed here, never fetched from a CDN at run time.
web-deps: web/node_modules/.installed

web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

# The device side alone: no torch, as on a Raspberry Pi. Tests prove edgekit works there.
device-venv: $(DEVENV)/.installed

$(DEVENV)/.installed: pyproject.toml
	test -x $(DEVENV)/bin/python || $(PYTHON) -m venv $(DEVENV)
	$(DEVENV)/bin/pip install -q --upgrade pip
	$(DEVENV)/bin/pip install -q -e ".[onnx,tflite,camera]"
	touch $@

run: setup caches
	$(BIN)/edgekit run $(RECIPE)

# Set-up steps that need the package index, so that the tests themselves run offline: the wheelhouse for the
# loopback deploy and the arm64 Debian packages and wheels for the emulated device check.
caches: venv onnx2tf-env
	$(BIN)/python scripts/wheelhouse.py --arm64

# onnx2tf's own venv (tensorflow 2.19, numpy 1.26 — never in the main one): the fallback ONNX -> TFLite route.
# Idempotent; about 2 min and 2.4 GiB the first time.
onnx2tf-env: venv
	$(BIN)/python scripts/onnx2tf_env.py

test: setup device-venv caches
	$(BIN)/python -m pytest -q --durations=15 -m "not third_party"

# MLPerf Tiny's person detector through `edgekit compress` on real photos (~6 min): CI runs it once, after `make test`.
test-third-party: setup caches
	$(BIN)/python -m pytest -q -m third_party

# The properties of tests/test_fuzz.py with many more inputs and a fresh seed each time (~10 min).
fuzz: setup
	EDGEKIT_FUZZ_EXAMPLES=$${EDGEKIT_FUZZ_EXAMPLES:-2000} EDGEKIT_FUZZ_RANDOM=1 $(BIN)/python -m pytest -q tests/test_fuzz.py

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup device-venv caches
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python bench/run_all.py
	$(BIN)/python bench/camera_fps.py
	$(BIN)/python bench/web_latency.py  # the bundle in headless Chromium (onnxruntime-web, LiteRT.js) against native onnxruntime and LiteRT
	$(BIN)/python bench/kws_rtf.py  # the mic demo's real-time factor; MLPerf KWS reference next to it
	$(BIN)/python bench/kws_stream.py  # keywords found in order and false detections/min, 33 held-out recordings
	$(BIN)/python bench/kws_noise.py  # per-keyword accuracy vs noise level: which misses are noise, which are voices
	$(BIN)/python bench/compress_third_party.py  # edgekit compress on MLPerf's models beside MLPerf's own int8
	$(BIN)/python bench/zoo_matrix.py  # the compatibility matrix: 12+ architectures x prune/int8 ONNX/int8 TFLite

# Both ONNX -> TFLite routes on 14 ONNX files (about 45 min on 2 cores): how the default route was chosen.
bench-onnx-tflite: setup onnx2tf-env
	$(BIN)/python bench/onnx_tflite_routes.py

# timm's model definitions need only torch: --no-deps keeps its CUDA-pulling requirements (torchvision) out, and
# bench/timm_stub gives the few torchvision names timm imports. NNCF is timed beside edgekit on four of them.
# ~6 min an architecture on 2 cores; resumable (rows.jsonl): rerun to continue. Writes docs/zoo.md.
bench-zoo: setup onnx2tf-env
	$(BIN)/pip install -q --no-deps "timm==1.0.31"
	$(BIN)/pip install -q "huggingface_hub>=0.20" "safetensors>=0.4" "nncf==3.4.0"
	$(BIN)/python bench/zoo_timm.py

# Pruning alone on 51 more timm architectures (outside the matrix), each in its own process: ~30 min.
bench-prune: setup
	$(BIN)/pip install -q --no-deps "timm==1.0.31"
	$(BIN)/pip install -q "huggingface_hub>=0.20" "safetensors>=0.4"
	$(BIN)/python bench/prune_sweep.py

dist: venv
	rm -rf dist && $(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/python -m twine check --strict dist/*

lint: venv
	$(BIN)/ruff check edgekit tests bench scripts

clean:
	rm -rf $(VENV) $(DEVENV) runs .pytest_cache
