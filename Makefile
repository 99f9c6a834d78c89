# One-command entry points. VENV defaults to ./.venv; CI points it at a cached venv.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
ROOT ?= ./dvm-data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS := ffmpeg chromium python3-venv
PYTEST_ARGS ?=

.PHONY: system-deps install install-test demo test lint clean

system-deps:
	@missing=""; for c in ffmpeg ffprobe chromium; do command -v $$c >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -q && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PKGS); fi

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, from its pinned trio; audiocraft without its stale pins (DESIGN.md, Dependencies).
install: system-deps $(PY)
	$(PIP) install -q -c constraints.txt torch==2.9.1 torchvision==0.24.1 torchaudio==2.9.1
	$(PIP) install -q -c constraints.txt -e '.[model]'
	$(PIP) install -q --no-deps audiocraft==1.3.0

install-test: install
	$(PIP) install -q -c constraints.txt -e '.[model,test]'

demo: install
	$(VENV)/bin/vidmusician demo --root $(ROOT)

test: install-test
	$(PY) -m pytest $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(ROOT)
