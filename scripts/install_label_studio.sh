#!/usr/bin/env bash
# Create .venv-ls with a real Label Studio for the end-to-end tests (tests/e2e).
# Label Studio gets its own venv: its Django and SDK pins must not constrain the backend's .venv.
# Idempotent: the stamp file makes reruns instant; a half-finished install (no stamp) is redone.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=.venv-ls
VERSION=1.23.2
STAMP="$VENV/.installed"

if [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$VERSION" ]]; then
  exit 0
fi

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "label-studio==$VERSION"
echo "$VERSION" > "$STAMP"
