#!/usr/bin/env bash
# Install what jaxobs needs, idempotently (quick when everything is already there).
#   scripts/setup.sh demo   the package itself (pip)
#   scripts/setup.sh test   + test extras (pip), Debian prometheus/alertmanager, npm schema packages
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"
PY="${PYTHON:-python3}"
stamp_dir=.setup-stamps
mkdir -p "$stamp_dir"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

pip_install() {  # $1: extras spec, $2: stamp name
  local stamp="$stamp_dir/$2" want
  want="$(sha256sum pyproject.toml | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c "import jaxobs" 2>/dev/null; then
    return 0
  fi
  echo "setup: pip install -e '.$1'"
  "$PY" -m pip install --quiet --disable-pip-version-check -e ".$1"
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
  if [ -d node_modules ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "setup: npm install (Grafana and prometheus-operator schemas, TypeScript)"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --silent; else npm install --no-audit --no-fund --silent; fi
  echo "$want" > "$stamp"
}

case "$what" in
  demo) pip_install "" demo ;;
  test) pip_install "[test]" test; debian_tools; npm_packages ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
