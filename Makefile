# The two commands of the README.  Each installs what it needs first (idempotent).
PY ?= python3

.PHONY: demo test bench generate check-generated

demo:  ## run a real JAX workload on CPU, serve /metrics, generate alerts/dashboards/runbooks
	@PYTHON=$(PY) scripts/setup.sh demo
	$(PY) -m jaxobs.cli demo $(DEMO_ARGS)

test:  ## install test dependencies and run the whole suite (pytest exits non-zero if no test ran)
	@PYTHON=$(PY) scripts/setup.sh test
	$(PY) -m pytest $(PYTEST_ARGS)

bench:  ## overhead benchmarks (ratios against raw jax.jit / a bare server)
	@PYTHON=$(PY) scripts/setup.sh test
	$(PY) benchmarks/overhead.py

generate:  ## regenerate the checked-in alerts/, dashboards/, runbooks/ from examples/slo.yaml
	$(PY) -m jaxobs.cli generate examples/slo.yaml -o .
