# Two commands do everything on a fresh Linux machine with Python 3.11:
#   make run    set up (once) and execute the notebook sequence on params/default.yaml into outputs/default/
#   make test   set up (once) and run the whole test suite (pytest + nbval over notebooks/ + JupyterLab in
#               headless Chromium; Chromium comes from apt when missing and we are root or have sudo)
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PARAMS ?= params/default.yaml
# The CPU build of torch; a bare `torch` would pull a multi-GB CUDA build. GPU users: TORCH_SPEC="torch==2.11.*"
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.workbench-setup.stamp

# what `make test` runs: everything but the slow and GPU tests (the browser tests included)
TEST_MARKERS ?= not slow and not gpu
CHROMIUM := $(firstword $(foreach b,chromium chromium-browser google-chrome,$(shell command -v $(b) 2>/dev/null)))

.PHONY: setup browser run test test-all smoke study bench bench-gpu clean-outputs

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name workbench --display-name "Python (workbench)" >/dev/null
	touch $(STAMP)

# Headless Chromium for tests/test_browser.py (Playwright drives the system browser; it downloads nothing).
browser:
ifeq ($(CHROMIUM),)
	@if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
	  echo "note: no Chromium and no root: the browser tests will skip (install Debian's chromium to run them)"; exit 0; fi; \
	echo "installing Chromium for the browser tests (apt-get install chromium)"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
endif

run: setup
	$(PY) -m workbench run $(PARAMS)

test: setup browser
	$(PY) -m pytest -q --nbval-lax -m "$(TEST_MARKERS)" tests notebooks

test-all: setup browser
	$(PY) -m pytest -q --nbval-lax -m "" tests notebooks

smoke: setup
	$(PY) -m workbench run params/smoke.yaml

# the complete study (about 90 minutes on 2 cores)
study: setup
	$(PY) -m workbench run params/study.yaml

bench: setup
	$(PY) bench/zoo_generation.py
	$(PY) bench/sgd_baselines.py
	$(PY) bench/metanet.py
	$(PY) bench/roofline.py --compile
	$(PY) bench/amortization.py

# the GPU numbers (needs CUDA; fails at once without it): JSON lines + markdown under outputs/bench/gpu-<date-time>/
bench-gpu: setup
	PYTHON=$(PY) bench/gpu.sh

clean-outputs:
	rm -rf outputs/*/
