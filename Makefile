# Ditto on Triton — developer entry points. Everything runs inside the project's own .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= tiny
WEIGHTS ?= synthetic
EXPORT_DIR ?= out/export/$(PROFILE)

.PHONY: setup system-packages lint demo export serve model-repository test test-fast test-slow lock clean bench bench-gpu bench-gate bench-registration bench-frame-formats bench-profile soak live

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet -r requirements.lock
	# tritonserver 2.51 and its python backend, without pytriton's own (conflicting) dependency pins
	$(BIN)/pip install --quiet --no-deps nvidia-pytriton==0.7.0
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

setup: $(BIN)/.installed

DEMO_IMAGE ?= examples/ditto_example_image.jpg
DEMO_AUDIO ?= examples/ditto_example_audio.wav
DEMO_MAX_SIZE ?= 512

# Export (if needed), start an embedded tritonserver, render the sample portrait speaking the sample
# audio to out/demo.mp4 (+ a contact sheet and the motion plot), print what was measured, stop the server.
demo: $(EXPORT_DIR)/manifest.json
	$(BIN)/ditto-render --image $(DEMO_IMAGE) --audio $(DEMO_AUDIO) --out out/demo.mp4 \
		--contact-sheet out/demo.png --motion-plot out/demo_motion.png --profile $(PROFILE) --weights $(WEIGHTS) \
		--export-dir $(EXPORT_DIR) --max-size $(DEMO_MAX_SIZE)
	@echo "video: out/demo.mp4   contact sheet: out/demo.png   motion plot: out/demo_motion.png"

$(EXPORT_DIR)/manifest.json: ditto_triton/stages.py ditto_triton/profiles.py | setup
	$(BIN)/ditto-export --profile $(PROFILE) --weights $(WEIGHTS) --out $(EXPORT_DIR) --timing 5

export: setup
	$(BIN)/ditto-export --profile $(PROFILE) --weights $(WEIGHTS) --out $(EXPORT_DIR) --timing 5

# The live browser demo: an embedded tritonserver and the gateway; open the printed URL, speak or play a file.
LIVE_PORT ?= 8080
live: $(EXPORT_DIR)/manifest.json
	$(BIN)/ditto-live --sample-image $(DEMO_IMAGE) --profile $(PROFILE) --weights $(WEIGHTS) --export-dir $(EXPORT_DIR) \
		--port $(LIVE_PORT)

# Serve the export on 127.0.0.1 (HTTP 8000, gRPC 8001, metrics 8002) until Ctrl-C.
serve: $(EXPORT_DIR)/manifest.json
	$(BIN)/ditto-serve --export $(EXPORT_DIR)

# Refresh the committed, browsable repositories model_repository/tiny/<flavor>/ (configs and adapters, no
# weights) from the tiny export; tests/test_repository.py checks that a render still matches them.
model-repository: setup
	test -f out/export/tiny/manifest.json || $(BIN)/ditto-export --profile tiny --weights synthetic --out out/export/tiny
	$(BIN)/python -m ditto_triton.model_repository.committed --export out/export/tiny

# Debian packages the tests need: libb64-0d (perf_analyzer from the tritonclient wheel links it), chromium and
# chromium-driver (the live page's browser test). Installed here when root with apt, else the command to run.
SYSTEM_PACKAGES := libb64-0d chromium chromium-driver
system-packages:
	@bash tools/system_packages.sh $(SYSTEM_PACKAGES)

# Lint: ruff (rules and format) and the import layers of pyproject.toml (tools/lint_imports.py).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/lint_imports.py

# Everything but the full-size checks: lint, then unit and integration tests (CI runs exactly this).
test: setup system-packages lint
	$(BIN)/pytest

# The fast loop: unit tests only (no server, no export, no subprocess), under a minute on 2 cores.
test-fast: setup
	$(BIN)/pytest -m unit -q

# Full-size (Ditto's real sizes) parity; about 10 minutes on 2 CPU cores.
test-slow: setup
	$(BIN)/pytest -m slow

# Benchmark suite: perf_analyzer per stage, Locust session sweep, ratios, orchestrator metrics, the full
# profile per stage; writes benchmarks/results/<date>-<host>-tiny-<flavor>/ (about 10 minutes on 2 cores).
BENCH_ARGS ?=
bench: setup
	$(BIN)/python -m ditto_triton.benchmarks.suite $(BENCH_ARGS)

# On a machine with an NVIDIA GPU (driver >= 580: PyPI's torch 2.13.0 is a CUDA 13 build): the torch flavor
# (PyTorch fp16 on CUDA) of the full profile served by the pip tritonserver; sessions per GPU, render-chain
# ms/frame per batch size, first-frame delay, GPU memory per session. Results name the GPU.
bench-gpu: setup
	$(BIN)/python -m ditto_triton.benchmarks.suite --profile full --flavor torch --skip-full --skip-inprocess \
		--max-sessions 32 --min-levels 4 $(BENCH_ARGS)

# Registration time per stage (a 1080p photo, a 10 s 1080p video) through Ditto's face models (stand-ins) and
# MediaPipe's; writes benchmarks/results/registration.json.
bench-registration: setup
	$(BIN)/python -m ditto_triton.benchmarks.registration --out benchmarks/results/registration.json

# Frame formats (raw RGB, JPEG, PNG) at 512x512 and 1080p: bytes, encode/decode CPU and frames/s per frame
# through a local tritonserver (about 6 minutes); writes benchmarks/results/frame_formats.json.
bench-frame-formats: setup
	$(BIN)/python -m ditto_triton.benchmarks.frame_formats --out benchmarks/results/frame_formats.json

# Where each millisecond of CPU goes per frame, through tritonserver and in process (about 3 minutes): /proc CPU per
# process and stage, py-spy's sampled Python functions; writes out/cpu_budget/cpu_budget.{json,md}.
PROFILE_ARGS ?=
bench-profile: setup
	$(BIN)/python -m ditto_triton.benchmarks.cpu_budget $(PROFILE_ARGS)

# Real-time gate on the tiny profile (about 70 s): prints each value next to its threshold, exits 1 on a miss.
bench-gate: setup
	$(BIN)/python -m ditto_triton.benchmarks.gate

# Soak: 8 concurrent real-time tiny sessions for 10 minutes (SOAK_ARGS="--sessions 4 --minutes 2" to change);
# writes soak.json, soak.md and soak_memory.png into benchmarks/results/<date>-<host>-tiny-python-ort/.
SOAK_ARGS ?=
soak: $(EXPORT_DIR)/manifest.json
	$(BIN)/python -m ditto_triton.benchmarks.soak --export $(EXPORT_DIR) $(SOAK_ARGS)

# The README's diagram: docs/architecture.svg from its source docs/architecture.dot with Graphviz (installed from
# apt when root, else the command to run). Cairo's SVG draws the text as outlines, so every viewer shows what was
# laid out. The SVG records its source's sha256; tests/test_docs.py checks it.
.PHONY: docs-diagram
docs-diagram:
	@command -v dot > /dev/null || bash tools/system_packages.sh graphviz
	dot -Tsvg:cairo docs/architecture.dot \
		| sed "1a <!-- source: docs/architecture.dot sha256 $$(sha256sum docs/architecture.dot | cut -d' ' -f1) -->" \
		> docs/architecture.svg

# Re-pin the environment after changing pyproject.toml's dependencies.
lock: setup
	$(BIN)/pip install --quiet -e '.[export,server,bench,live,dev]'
	$(BIN)/pip freeze --exclude-editable | grep -v -e '^ditto-triton' -e '^nvidia-pytriton' | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/' > requirements.lock

clean:
	rm -rf out .pytest_cache
