#!/usr/bin/env bash
# Rewrite constraints.txt with the newest releases pyproject.toml's ranges allow, installed into a
# throwaway venv. Run `make test` afterwards and commit both only when it passes.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
"$venv/bin/python" -m pip install --disable-pip-version-check -q -e '.[server,dev,postgres]'
{
    sed -n '1,2p' constraints.txt
    "$venv/bin/python" -m pip freeze --exclude-editable
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt refreshed; now run: make test" >&2
