# Latent Studio — the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup setup-cluster serve run test test-fast bench clean

setup: $(STAMP)

# Torch first, pinned (pip takes it from the local disk where it lies there);
# then the project and its dev tools. Re-runs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Serving the engine to other machines (`python main.py serve`): Ray Serve, an optional extra.
setup-cluster: setup
	$(PY) -m pip install -q -e '.[dev,cluster]'

serve: setup-cluster
	$(PY) main.py serve

run: setup
	$(PY) main.py

test: setup
	QT_QPA_PLATFORM=offscreen OMP_NUM_THREADS=2 $(PY) -m pytest -q

# Everything not marked slow (no diffusion model runs; the studio on the fake engine): under 90 s.
test-fast: setup
	QT_QPA_PLATFORM=offscreen OMP_NUM_THREADS=2 $(PY) -m pytest -q -m "not slow"

bench: setup
	@for f in bench/bench_*.py; do echo "== $$f"; OMP_NUM_THREADS=2 $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
