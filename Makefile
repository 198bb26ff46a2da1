# Fresh machine: `make demo` or `make test` create .venv and install everything.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
OUT     ?= demo-out

.PHONY: demo test lint format bench bench-peers mutants soak clean data

include Makefile.data

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the CPU wheel on disk (an unpinned torch pulls a multi-GB CUDA build).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hwaksan demo --out $(OUT)

test: $(STAMP) data browser
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python bench/samplers.py

# Numeric mutations of the samplers, processes, parameterizations and losses, one at a time,
# each against the tests that guard it; prints the survivors (about 6 minutes).
mutants: $(STAMP)
	nice -n 10 env OMP_NUM_THREADS=1 $(BIN)/python bench/mutation.py

# kill -9 at random moments of both trainers, resume, compare with an uninterrupted run; a disk
# that fills mid-checkpoint.
soak: $(STAMP)
	nice -n 10 env OMP_NUM_THREADS=1 $(BIN)/python bench/soak.py --kills 20

# The peers of the side-by-side benchmarks (bench/peers.py, bench/train_throughput.py).
bench-peers: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/pip install -q --no-deps k-diffusion==0.1.1.post1

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info src/*.egg-info
