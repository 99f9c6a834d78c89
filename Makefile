# One-command entry points. VENV defaults to ./.venv; CI points it at a cached venv.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
ROOT ?= ./dvm-data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: system-deps test-system-deps install install-test demo test lint clean

# Installs each Debian package only when its command is missing.
system-deps:
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null && python3 -c "import ensurepip" 2>/dev/null || \
	{ $(SUDO) apt-get update -q && $(APT) install -y -q ffmpeg python3-venv; }

# Chromium for the browser tests, PostgreSQL server binaries for the catalog tests on a real Postgres,
# docker-compose for the Compose schema the compose-file test validates against (no engine needed).
test-system-deps: system-deps
	@command -v chromium >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && \
	command -v docker-compose >/dev/null || \
	{ $(SUDO) apt-get update -q && $(APT) install -y -q chromium postgresql docker-compose; }

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, from its pinned trio; audiocraft without its stale pins (DESIGN.md, Dependencies).
install: system-deps $(PY)
	$(PIP) install -q -c constraints.txt torch==2.9.1 torchvision==0.24.1 torchaudio==2.9.1
	$(PIP) install -q -c constraints.txt -e '.[model]'
	$(PIP) install -q --no-deps audiocraft==1.3.0
	# the evaluation's CLAP audio tower and ImageBind model (they pin stale torch/numpy), VGGish (FAD) and PaSST (KL)
	# (docs/evaluation.md)
	$(PIP) install -q -c constraints.txt --no-deps laion-clap==1.1.7 imagebind-unofficial==0.1.1 torchvggish==0.2 \
		resampy==0.4.3 hear21passt==0.0.26

install-test: test-system-deps install
	$(PIP) install -q -c constraints.txt -e '.[model,test]'
	# the reference toolkits the metric tests compare against (tests/model/metrics/test_metrics_toolkits.py);
	# their pins would downgrade numpy, so only their maths and what it imports
	$(PIP) install -q -c constraints.txt --no-deps audioldm_eval==0.0.3 frechet-audio-distance==0.3.4 fadtk==1.1.0 \
		hypy_utils==1.0.29

demo: install
	$(VENV)/bin/vidmusician demo --root $(ROOT)

test: install-test
	PATH="$$PATH:$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -n 1)" $(PY) -m pytest $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(ROOT)
