# Two commands do everything on a fresh machine:
#   make demo   set up, then run the bundled example end to end
#   make test   set up, then run the unit tests and the real-cluster tier
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo demo-cluster test unit e2e e2e-build browser bench bench-large bench-day lint lock clean

# Developers get the runtime pins and the test tools; the image gets requirements.lock only.
$(STAMP): pyproject.toml requirements.lock requirements-test.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock -r requirements-test.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/edgeplace demo

# The bundled example cluster (examples/cluster/) on the real-cluster tier: the default
# scheduler places it, one plan is published, and `edgeplace rebalance --dry-run` prints
# the moves edgeplace would make, with the grams each saves.
demo-cluster: setup e2e-build
	$(PY) k8s/e2e/example_cluster.py --demo

unit: setup browser
	$(PY) -m pytest -m "not e2e"

# Debian's Chromium renders the HTML report in the report tests (headless).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# The real-cluster tier: kube-apiserver and kube-scheduler built from the
# k8s.io/kubernetes Go module, cached under ~/.cache/edgeplace/e2e; Prometheus
# and promtool (calibration tests) from their module, in ~/.cache/edgeplace.
e2e-build:
	bash k8s/e2e/build.sh
	bash k8s/e2e/build-prometheus.sh

e2e: setup e2e-build
	$(PY) -m pytest -m e2e tests/e2e

test: unit e2e lint

# import-linter reads the package as the wheel ships it (edgeplace.topology, ...):
# install a copy into build/lint and check the contracts there.
lint: setup
	rm -rf build/lint
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --target build/lint .
	cd build/lint && PYTHONPATH=. ../../$(VENV)/bin/lint-imports --config ../../pyproject.toml

bench: setup
	$(PY) -m bench.run

bench-large: setup
	$(PY) -m bench.run --large

# A time-compressed day on the real-cluster tier, edgeplace vs the default scheduler (~50 min).
bench-day: setup e2e-build
	$(PY) -m bench.bench_actuation_day

# Rewrite both lock files from pyproject.toml: keeps today's pins where they still satisfy
# the ranges, resolves what is new (make lock UPGRADE=1: resolve everything afresh).
# requirements.lock = edgeplace's runtime closure; requirements-test.lock = what the
# test extra adds on top (pytest, hypothesis, jsonschema, dask, import-linter, ...).
lock:
	rm -rf build/lock
	$(PYTHON) -m venv build/lock/run && $(PYTHON) -m venv build/lock/test
	build/lock/run/bin/pip install --quiet --disable-pip-version-check $(if $(UPGRADE),,-c requirements.lock) .
	build/lock/run/bin/pip freeze --all --exclude-editable | grep -viE '^(edgeplace|pip|wheel)( @|==)' | sort -f > build/lock/run.txt
	build/lock/test/bin/pip install --quiet --disable-pip-version-check -c build/lock/run.txt \
	  $(if $(UPGRADE),,$(foreach f,requirements.lock requirements-test.lock,$(if $(wildcard $(f)),-c $(f)))) ".[test]"
	build/lock/test/bin/pip freeze --all --exclude-editable | grep -viE '^(edgeplace|pip|wheel)( @|==)' | sort -f > build/lock/test.txt
	{ echo "# edgeplace's runtime dependencies, exact (the image installs these). Regenerate with: make lock"; \
	  cat build/lock/run.txt; } > requirements.lock
	{ echo "# The test tools on top of requirements.lock, exact (make setup installs both). Regenerate with: make lock"; \
	  grep -vxFf build/lock/run.txt build/lock/test.txt; } > requirements-test.lock

clean:
	rm -rf $(VENV) build *.egg-info
