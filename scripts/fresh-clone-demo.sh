#!/usr/bin/env bash
# A new user's first minute on a stock Debian/Ubuntu machine: clone the repository and run the
# README's first command with the distribution's own python3 first on PATH (externally managed,
# PEP 668: pip refuses to install into it, so `make demo` must make and use a virtualenv).
#   STOCK_PYTHON  the system interpreter (default /usr/bin/python3)
#   DEMO_ARGS     passed to `make demo` (CI uses --port 0: other jobs may hold the default port)
set -euo pipefail
cd "$(dirname "$0")/.."
stock="${STOCK_PYTHON:-/usr/bin/python3}"
if [ ! -x "$stock" ]; then
  echo "fresh-clone-demo: no system interpreter at $stock (set STOCK_PYTHON)" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone --quiet . "$work/jaxobs"
cd "$work/jaxobs"
echo "fresh-clone-demo: $(git log --oneline -1) with $stock ($("$stock" --version 2>&1))"
# no inherited virtualenv, and the stock interpreter is the first python3 on PATH
env -u VIRTUAL_ENV -u PYTHONPATH PATH="$(dirname "$stock"):$PATH" make demo DEMO_ARGS="${DEMO_ARGS:-}"
test -d jaxobs-demo/alerts && test -d jaxobs-demo/dashboards && test -d jaxobs-demo/runbooks
echo "fresh-clone-demo: ok (.venv made from $(.venv/bin/python -c "import sys; print(sys._base_executable)"))"
