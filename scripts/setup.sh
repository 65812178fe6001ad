#!/usr/bin/env bash
# Install what jaxobs needs, idempotently (quick when everything is already there).
#   scripts/setup.sh demo     the package itself, into the project virtualenv
#   scripts/setup.sh test     + test extras with the oldest supported JAX (.ci/constraints-oldest.txt),
#                             Debian prometheus/alertmanager, npm schema packages
#   scripts/setup.sh lint     the package and its test extras (ruff, mypy) only
#   scripts/setup.sh newest   a second virtualenv (NEWEST_VENV, default .venv-newest) built from
#                             NEWEST_PYTHON with the newest supported JAX (.ci/constraints-newest.txt)
#
# Why a virtualenv: Debian 12+/Ubuntu 24.04 mark the system interpreter "externally managed"
# (PEP 668) and refuse `pip install` into it.  VENV (default: the active $VIRTUAL_ENV, else
# .venv) is created from PYTHON (default python3) when it does not exist; an active virtualenv
# is used as it is, never re-created.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"
BASE_PY="${PYTHON:-python3}"
VENV="${VENV:-${VIRTUAL_ENV:-.venv}}"
stamp_dir=.setup-stamps
mkdir -p "$stamp_dir"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_venv() {  # $1: venv directory, $2: interpreter to create it from
  local venv="$1" base="$2"
  if [ -x "$venv/bin/python" ]; then
    return 0
  fi
  if [ -n "${VIRTUAL_ENV:-}" ] && [ "$venv" = "$VIRTUAL_ENV" ]; then
    echo "setup: the active virtualenv $VIRTUAL_ENV has no bin/python" >&2
    exit 1
  fi
  if ! command -v "$base" >/dev/null 2>&1; then
    echo "setup: no Python interpreter '$base' to create $venv from; set PYTHON=/path/to/python3" >&2
    exit 1
  fi
  echo "setup: $base -m venv $venv"
  if ! "$base" -m venv "$venv"; then
    echo "setup: '$base -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 1
  fi
}

pip_install() {  # $1: venv, $2: extras spec, $3: constraints file or "", $4: stamp name
  local venv="$1" extras="$2" constraints="$3" py="$1/bin/python" stamp want
  stamp="$stamp_dir/$4-$(printf '%s' "$(cd "$venv" && pwd)" | sha256sum | cut -c1-8)"
  want="$(cat pyproject.toml ${constraints:+"$constraints"} | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$py" -c "import jaxobs" 2>/dev/null; then
    return 0
  fi
  echo "setup: $venv: pip install -e '.$extras'${constraints:+ -c $constraints}"
  "$py" -m pip install --quiet --disable-pip-version-check -e ".$extras" ${constraints:+-c "$constraints"}
  echo "$want" > "$stamp"
}

debian_tools() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null \
     && command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null \
     && command -v openssl >/dev/null && command -v chromium >/dev/null; then
    return 0
  fi
  echo "setup: apt-get install prometheus prometheus-alertmanager openssl"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager openssl chromium >/dev/null
}

npm_packages() {
  local stamp="$stamp_dir/npm" want
  want="$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -c1-16)"
  if [ -L node_modules ]; then
    # a link to another checkout's install (git worktrees share one): `npm ci` would empty the
    # link's target, so use it as it is
    return 0
  fi
  if [ -d node_modules ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "setup: npm install (Grafana and prometheus-operator schemas, TypeScript)"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --silent; else npm install --no-audit --no-fund --silent; fi
  echo "$want" > "$stamp"
}

newest_env() {
  local venv="${NEWEST_VENV:-.venv-newest}" base="${NEWEST_PYTHON:-}"
  if [ ! -x "$venv/bin/python" ] && { [ -z "$base" ] || [ ! -x "$base" ]; }; then
    echo "setup: the newest-JAX test environment needs Python 3.13 at NEWEST_PYTHON='$base'." >&2
    echo "       Install it (pyenv install 3.13.0) or pass NEWEST_PYTHON=/path/to/python3.13." >&2
    exit 1
  fi
  ensure_venv "$venv" "$base"
  pip_install "$venv" "[test]" .ci/constraints-newest.txt newest
}

case "$what" in
  demo) ensure_venv "$VENV" "$BASE_PY"; pip_install "$VENV" "" "" demo ;;
  test) ensure_venv "$VENV" "$BASE_PY"; pip_install "$VENV" "[test]" .ci/constraints-oldest.txt test
        debian_tools; npm_packages ;;
  lint) ensure_venv "$VENV" "$BASE_PY"; pip_install "$VENV" "[test]" .ci/constraints-oldest.txt test ;;
  newest) newest_env ;;
  *) echo "usage: $0 demo|test|lint|newest" >&2; exit 2 ;;
esac
