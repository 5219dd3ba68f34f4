# Ditto on Triton — developer entry points. Everything runs inside the project's own .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= tiny
WEIGHTS ?= synthetic
EXPORT_DIR ?= out/export/$(PROFILE)

.PHONY: setup demo export serve test test-slow lock clean

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet -r requirements.lock
	# tritonserver 2.51 and its python backend, without pytriton's own (conflicting) dependency pins
	$(BIN)/pip install --quiet --no-deps nvidia-pytriton==0.7.0
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

setup: $(BIN)/.installed

# Export (if needed), start a local tritonserver, stream the sample portrait + speech through it and
# through the in-process pipeline, and print frames, first-frame delay and frames/s of both.
demo: $(EXPORT_DIR)/manifest.json
	$(BIN)/python benchmarks/stream_once.py --export $(EXPORT_DIR)

$(EXPORT_DIR)/manifest.json: | setup
	$(BIN)/ditto-export --profile $(PROFILE) --weights $(WEIGHTS) --out $(EXPORT_DIR) --timing 5

export: setup
	$(BIN)/ditto-export --profile $(PROFILE) --weights $(WEIGHTS) --out $(EXPORT_DIR) --timing 5

# Serve the export on 127.0.0.1 (HTTP 8000, gRPC 8001, metrics 8002) until Ctrl-C.
serve: $(EXPORT_DIR)/manifest.json
	$(BIN)/ditto-serve --export $(EXPORT_DIR)

test: setup
	$(BIN)/pytest

# Full-size (Ditto's real sizes) parity; about 10 minutes on 2 CPU cores.
test-slow: setup
	$(BIN)/pytest -m slow

# Re-pin the environment after changing pyproject.toml's dependencies.
lock: setup
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip freeze --exclude-editable | grep -v -e '^ditto-triton' -e '^nvidia-pytriton' | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/' > requirements.lock

clean:
	rm -rf out .pytest_cache
