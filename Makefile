# looplab: `make demo` runs the main job, `make test` runs the test suite. Both set up first.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.looplab-installed
DEMO_OUT ?= runs/ladder_smoke

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

# torch first, pinned, so pip takes the CPU wheel on disk instead of resolving a CUDA build.
$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@$(VPY) -c "import torch" 2>/dev/null || $(VPY) -m pip install -q "torch==2.13.0"
	$(VPY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

# the smoke ladder: every variant, tiny, trained to 95% IID and reported (about 6 min on 2 cores); reruns skip finished runs
demo: setup
	$(VPY) -m looplab.cli ladder --preset smoke --out $(DEMO_OUT)

test: setup
	$(VPY) -m pytest tests

bench: setup
	$(VPY) bench/run_all.py

lint: setup
	$(VPY) -m ruff check src tests bench train.py eval_hub.py

clean:
	rm -rf $(VENV) runs .pytest_cache
