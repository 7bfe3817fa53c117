# slidescope: `make demo` runs the main job on generated slides, `make test` runs the tests.
# Both create .venv and install into it first. CPU builds of the ML frameworks by default;
# a GPU user overrides them, e.g. `make test TORCH=torch==2.13.0+cu128 TF=tensorflow[and-cuda]`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TF ?= tensorflow-cpu
PYTEST_ARGS ?= -n 2

BIN := $(VENV)/bin
STAMP := $(VENV)/.slidescope-installed

.PHONY: demo test install bench clean models

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" "$(TF)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/slidescope demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/read.py
	$(BIN)/python bench/tiling.py --setup-peer
	$(BIN)/python bench/models.py
	$(BIN)/python bench/training.py
	$(BIN)/python bench/merge.py
	$(BIN)/python bench/batch.py

# Trains the shipped models from generated slides (seeded; about 1.5 hours on 2 CPU cores: tissue 2 x 9 min, cell torch 17 min, cell tf 40-60 min) into
# models/shipped/, then merges the torch ones with a slide head trained on 8 generated slides (2 min) into
# models/shipped/slide-torch, the model `slidescope run` uses by default; the demo and the tests need none of this.
models: $(STAMP)
	$(BIN)/python -m slidescope.models.recipes --work build/models
	$(BIN)/python -m slidescope.merge.shipped --work build/models

clean:
	rm -rf $(VENV) demo-output .pytest_cache .hypothesis
