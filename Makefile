# Two set-up commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: demo test lint bench gpu-check sanitize clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -e ".[test,examples]"
	touch $@

$(VENV)/.installed-examples: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -e ".[examples]"
	touch $@

demo: $(VENV)/.installed-examples
	$(PY) examples/stn_digits.py

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

$(VENV)/.installed-bench: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -e ".[examples,bench]"
	touch $@

# CPU benchmarks side by side with PyTorch (a few minutes; run on a quiet machine). Prints the table, writes
# benchmarks/results/<machine>-<date>.json and docs/benchmarks.md. Options: make bench BENCH_ARGS="--quick".
bench: $(VENV)/.installed-bench
	$(PY) -m benchmarks $(BENCH_ARGS)

# On a machine with an NVIDIA GPU and CuPy already installed (no network needed): GPU tests, GPU benchmarks, a table.
gpu-check:
	PYTHON=$(PYTHON) bash scripts/gpu_check.sh

# The CUDA kernels on the host shim under AddressSanitizer + UBSan, over a larger fuzz corpus (needs g++ or clang++).
sanitize: $(VENV)/.installed-test
	SCRATCHATTN_SANITIZE_CASES=400 $(PY) -m pytest tests/robustness/test_sanitizer.py -q

clean:
	rm -rf $(VENV) runs .pytest_cache
