# The README's two commands:  `make demo`  and  `make test`.
# Both create (or reuse) the virtual environment in .venv/ and install what they need.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)

# CPU by default.  On a CUDA machine:  make install ACCEL=gpu TORCH_INDEX=<PyTorch CUDA wheel index>
ACCEL       ?= cpu
TORCH_INDEX ?=
TORCH_PIN   := torch==2.13.0

.PHONY: install demo seed-paper test test-all lint format bench clean

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e '.[$(ACCEL),dev]'
	$(PIP) install -q torchrec==1.8.0 --no-deps
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: install
	RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/scaler run search_spaces/demo.yaml

# The seed paper's five scaling schemes on synthetic data (search_spaces/seed_paper/), then one
# verdict table over them (~15-30 min on 2 cores).
SEED_PAPER := scaler_runs/seed_paper
seed-paper: install
	RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/scaler run search_spaces/seed_paper/data.yaml --storage $(SEED_PAPER)
	RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/scaler run search_spaces/seed_paper/embedding_rows.yaml --storage $(SEED_PAPER)
	RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/scaler run search_spaces/seed_paper/embedding_dim.yaml --storage $(SEED_PAPER)
	RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/scaler run search_spaces/seed_paper/over_arch.yaml --storage $(SEED_PAPER)
	RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/scaler run search_spaces/seed_paper/all_mlp.yaml --storage $(SEED_PAPER)
	$(PY) benchmarks/seed_paper.py --storage $(SEED_PAPER)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(VENV)/bin/pytest -m "not slow" -q

test-all: lint
	$(VENV)/bin/pytest -q

# The fit and loader benchmarks take minutes; the sweep-scale one with 10,000 trials takes hours on
# 2 cores (`benchmarks/bench_sweep_scale.py --trials 100 1000` is the ~45-minute version).
bench: install
	$(PY) benchmarks/bench_fit.py
	$(PY) benchmarks/bench_criteo_loader.py
	RAY_USAGE_STATS_ENABLED=0 $(PY) benchmarks/bench_sweep_scale.py --trials 100 1000 10000

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
