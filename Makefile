# modelupdate — one entry point for setup, tests, demo and benchmarks.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
# torch/torchvision pair known to work here; pip's constraints may cap it too.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test lint typecheck demo bench reproduce data clean dist

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PINS) || $(PY) -m pip install -q torch torchvision
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests bench scripts
	$(PY) -m mypy

# mypy on src/modelupdate ([tool.mypy] in pyproject.toml)
typecheck: install
	$(PY) -m mypy

# Fashion-MNIST offline: Debian's package where apt works, else torchvision's download.
data:
	@if [ -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then echo "fashion-mnist: $(FMNIST_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)); then \
	  echo "fashion-mnist: installed $(FMNIST_DIR)"; \
	else echo "fashion-mnist: downloading through torchvision"; \
	  $(PY) -c "from modelupdate.config import DataConfig; from modelupdate.data import load_dataset; load_dataset(DataConfig(name='fashion-mnist', download=True))"; fi

demo: install data
	bash scripts/demo.sh

bench: install data
	$(PY) bench/run_all.py

reproduce: install data
	$(PY) scripts/reproduce.py --jobs 2

# a wheel a team installs on its CI runners (docs/ci-gate.md): dist/modelupdate-<version>-py3-none-any.whl
dist: install
	rm -rf dist build
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist .
	@ls dist/*.whl

clean:
	rm -rf $(VENV) demo-out runs .pytest_cache dist build
