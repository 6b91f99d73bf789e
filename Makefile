# sparsemem: `make test` and `make reproduce` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# torch is pinned here, not in pyproject: an unpinned torch pulls a CUDA build of several GB.
# Override for a GPU machine, e.g. `make test TORCH_SPEC="torch==2.13.0"` with your index set.
TORCH_VERSION ?= 2.13.0
TORCH_SPEC ?= torch==$(TORCH_VERSION)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= results
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
PROFILE ?= auto
FLEET ?= auto
COMPILE ?= off

.PHONY: install test lint docs reproduce bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,ray,data,tensorboard,wandb,tokenizers,bench,triton]'
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/import_layers.py

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

reproduce: $(STAMP)
	$(BIN)/sparsemem reproduce --profile $(PROFILE) --out $(OUT) --workers $(WORKERS) --fleet $(FLEET) --compile $(COMPILE)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/lm_speed.py
	$(BIN)/python benchmarks/attention_speed.py

clean:
	rm -rf $(VENV) runs $(OUT) .pytest_cache site build dist
