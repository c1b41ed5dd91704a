# Two commands for a newcomer: `make demo` and `make test`. Each creates (or reuses) the
# virtual environment in .venv and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= $(abspath ../shared)
export ROADSIDE_SHARED ?= $(SHARED)
export ROADSIDE_MODELS_DIR ?= $(abspath var/models)

.PHONY: setup demo test test-fast lint typecheck bench soak hostile clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: setup
	$(VENV)/bin/roadside model fetch yolox_nano
	$(VENV)/bin/roadside footage fetch motorway_overpass
	$(PY) -m roadside.demo

# Two workers: most tests wait on brokers, links and footage played at camera pace, so two
# share two cores well.
test: lint typecheck
	$(VENV)/bin/pytest -q -n 2

# The fast tier for developers (under a minute): every test not marked slow.
test-fast: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -n 2 -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy reads the installed names (roadside.agent is agent/, ...): it checks a tree of links
# that lays the folders out as the package is installed.
TYPECHECK := var/typecheck
typecheck: setup
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/roadside
	ln -s $(CURDIR)/roadside/* $(TYPECHECK)/roadside/
	for d in agent central models provisioning; do ln -s $(CURDIR)/$$d $(TYPECHECK)/roadside/$$d; done
	cd $(TYPECHECK) && $(abspath $(VENV))/bin/mypy --config-file $(CURDIR)/pyproject.toml roadside

# Every benchmark in turn (about 40 minutes, the release to 20 boxes the longest; the soak
# has its own target). The clip cut is compared against the ffmpeg command when it is
# installed (apt-get install ffmpeg).
bench: setup
	$(PY) bench/pipeline.py
	$(PY) bench/accuracy.py
	$(PY) bench/uplink.py
	$(PY) bench/transfer.py
	$(PY) bench/clips.py
	$(PY) bench/ingest.py
	$(PY) bench/console.py
	$(PY) bench/update.py

# The mountain-link soak (about 11 minutes): chaos against the whole system, docs/reliability.md.
soak: setup
	$(PY) bench/soak.py

# The hostile-box soak (about 6 minutes): one box attacks, the honest ones keep everything.
hostile: setup
	$(PY) bench/hostile.py

clean:
	rm -rf var demo-out .pytest_cache
