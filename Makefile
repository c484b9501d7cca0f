# CI runs `make test` (see .ci/run); `make up` runs the pipeline. Both set themselves up.
# System packages (Java, Maven, libvirt-dev, pkg-config) come from infra/sysdeps.sh.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
VMS    ?= 5

.PHONY: up test unit integration lint typecheck check bench kafka-jars clean

$(STAMP): pyproject.toml
	bash infra/sysdeps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,libvirt]"
	touch $(STAMP)

kafka-jars: $(STAMP)
	@if [ -z "$$VMPULSE_KAFKA_BOOTSTRAP" ]; then $(PY) -m infra.broker fetch; fi

up: kafka-jars
	$(VENV)/bin/vmpulse up --vms $(VMS)

test: kafka-jars
	$(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

bench: kafka-jars
	$(PY) -m pytest -q -m bench -s tests/bench

clean:
	rm -rf $(VENV) .vmpulse .pytest_cache .mypy_cache .ruff_cache
