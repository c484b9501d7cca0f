# CI runs `make test` (see .ci/run); `make up` runs the pipeline. Both set themselves up.
# System packages (Java, Maven, libvirt-dev, pkg-config, Node.js, Chromium) come from
# infra/sysdeps.sh. The dashboard is built from gateway/client (npm) into gateway/static,
# which the Python package ships and the gateway serves at /.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
VMS    ?= 5
CLIENT := gateway/client
NODE_STAMP := $(CLIENT)/node_modules/.installed
DASHBOARD  := gateway/static/index.html
CLIENT_SOURCES := $(shell find $(CLIENT)/src $(CLIENT)/dashboard -type f 2>/dev/null) \
	$(CLIENT)/build.mjs $(wildcard $(CLIENT)/tsconfig*.json)

.PHONY: up test cluster unit integration lint typecheck check bench kafka-jars clean dashboard screenshots image

$(STAMP): pyproject.toml
	bash infra/sysdeps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,libvirt]"
	touch $(STAMP)

# npm packages from the npm registry, as the lockfile pins them; nothing else is downloaded.
$(NODE_STAMP): $(CLIENT)/package.json $(CLIENT)/package-lock.json | $(STAMP)
	cd $(CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# The client library (dist/) and the dashboard (gateway/static/), rebuilt when a source changes.
$(DASHBOARD): $(NODE_STAMP) $(CLIENT_SOURCES)
	cd $(CLIENT) && npm run --silent build

dashboard: $(DASHBOARD)

kafka-jars: $(STAMP)
	@if [ -z "$$VMPULSE_KAFKA_BOOTSTRAP" ]; then $(PY) -m infra.broker fetch; fi

up: kafka-jars dashboard
	$(VENV)/bin/vmpulse up --vms $(VMS)

test: kafka-jars dashboard
	$(PY) -m pytest -q

# The pictures in docs/img: the browser tests, saving their screenshots there.
screenshots: kafka-jars dashboard
	VMPULSE_SCREENSHOT_DIR=docs/img $(PY) -m pytest -q tests/e2e/test_dashboard.py

# The failover tests on a local 3-broker KRaft cluster (infra/cluster.py), marked `cluster`.
cluster: kafka-jars
	$(PY) -m pytest -q -m cluster -s tests/integration/infra/test_cluster.py \
		tests/integration/infra/test_faust_failover.py tests/integration/infra/test_failover.py

# The container images with podman (installed if missing): the base from Debian's packages,
# infra/Dockerfile and the Kafka stand-in (docs/DEPLOYMENT.md). `make test` builds them too,
# in tests/image.
image:
	bash infra/podman/image.sh

unit: $(STAMP) $(NODE_STAMP)
	$(PY) -m pytest -q tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP) $(NODE_STAMP)
	$(VENV)/bin/mypy
	cd $(CLIENT) && npm run --silent typecheck

check: lint typecheck test

# The benchmarks' peers: kcat (Debian) and the reference Node socket.io server (npm).
BENCH_NODE := tests/bench/node/node_modules/.installed
$(BENCH_NODE): tests/bench/node/package.json tests/bench/node/package-lock.json | $(STAMP)
	cd tests/bench/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(BENCH_NODE)

bench: kafka-jars $(BENCH_NODE)
	bash infra/sysdeps.sh bench
	$(PY) -m pytest -q -m bench -s tests/bench

clean:
	rm -rf $(VENV) .vmpulse .pytest_cache .mypy_cache .ruff_cache gateway/static \
		$(CLIENT)/node_modules $(CLIENT)/dist $(CLIENT)/.test-build
