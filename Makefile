# The two commands of the README.  Each installs what it needs first (idempotent).
PY ?= python3

.PHONY: demo test lint bench generate check-generated

demo:  ## run a real JAX workload on CPU, serve /metrics, generate alerts/dashboards/runbooks
	@PYTHON=$(PY) scripts/setup.sh demo
	$(PY) -m jaxobs.cli demo $(DEMO_ARGS)

test:  ## install test dependencies, run the lint gates, then the whole suite (pytest exits non-zero if no test ran)
	@PYTHON=$(PY) scripts/setup.sh test
	$(MAKE) --no-print-directory lint PY=$(PY)
	$(PY) -m pytest $(PYTEST_ARGS)

lint:  ## ruff (style, bugs, imports, naming) and mypy, both configured in pyproject.toml
	$(PY) -m ruff check .
	$(PY) -m mypy

bench:  ## overhead benchmarks (ratios against raw jax.jit / a bare server)
	@PYTHON=$(PY) scripts/setup.sh test
	$(PY) benchmarks/overhead.py

generate:  ## regenerate the checked-in alerts/, dashboards/, runbooks/ from examples/slo.yaml
	$(PY) -m jaxobs.cli generate examples/slo.yaml -o .

check-generated:  ## fail when the checked-in alerts/, dashboards/, runbooks/ differ from the generators' output
	$(PY) -m jaxobs.cli generate examples/slo.yaml -o . --check
