# The two commands of the README.  Each installs what it needs first (idempotent) into a
# project virtualenv: the active one ($VIRTUAL_ENV), else .venv created from $(PYTHON).
PYTHON ?= python3
VENV ?= $(or $(VIRTUAL_ENV),.venv)
PY = $(VENV)/bin/python
# The newest environment of the test matrix: Python 3.13 with the newest supported JAX
# (.ci/constraints-newest.txt); `make test` fails when this interpreter is missing.
NEWEST_PYTHON ?= $(shell pyenv root 2>/dev/null)/versions/3.13.0/bin/python3
NEWEST_VENV ?= .venv-newest
export PYTHON VENV NEWEST_PYTHON NEWEST_VENV

.PHONY: demo test test-oldest test-newest lint bench generate check-generated

demo:  ## run a real JAX workload on CPU, serve /metrics, generate alerts/dashboards/runbooks
	@scripts/setup.sh demo
	$(PY) -m jaxobs.cli demo $(DEMO_ARGS)

test: test-oldest test-newest  ## lint gates, then the whole suite on the oldest and on the newest supported JAX

test-oldest:  ## every test (end-to-end included) with the oldest supported JAX, in $(VENV)
	@scripts/setup.sh test
	$(MAKE) --no-print-directory lint
	$(PY) -c 'import sys, jax; print("test-oldest: Python", sys.version.split()[0], "JAX", jax.__version__)'
	$(PY) -m pytest $(PYTEST_ARGS)

# Tests of code that never imports jax (spec, generators, rule and dashboard checks with promtool,
# amtool and tsc, Kubernetes schemas) run once, in test-oldest: a new JAX cannot change them.
JAX_FREE_TESTS = test_alertmanager test_docs test_autoscaling test_canary_analysis test_dashboards \
	test_faults_report test_faults_spec test_generate_cli test_golden test_manifests test_rules \
	test_runbooks test_slo_scenarios test_slo_spec

test-newest:  ## the JAX-facing tests (not the slow end-to-end ones) with Python 3.13 and the newest JAX
	@scripts/setup.sh newest
	$(NEWEST_VENV)/bin/python -c 'import sys, jax; print("test-newest: Python", sys.version.split()[0], "JAX", jax.__version__)'
	$(NEWEST_VENV)/bin/python -m pytest -m "not e2e" $(foreach t,$(JAX_FREE_TESTS),--ignore=tests/$(t).py) $(PYTEST_ARGS)

lint:  ## ruff (style, bugs, imports, naming) and mypy, both configured in pyproject.toml
	@scripts/setup.sh lint
	$(PY) -m ruff check .
	$(PY) -m mypy

bench:  ## overhead benchmarks (ratios against raw jax.jit / a bare server)
	@scripts/setup.sh test
	$(PY) benchmarks/overhead.py

generate:  ## regenerate the checked-in alerts/, dashboards/, runbooks/ from examples/slo.yaml
	@scripts/setup.sh demo
	$(PY) -m jaxobs.cli generate examples/slo.yaml -o .

check-generated:  ## fail when the checked-in alerts/, dashboards/, runbooks/ differ from the generators' output
	@scripts/setup.sh demo
	$(PY) -m jaxobs.cli generate examples/slo.yaml -o . --check
