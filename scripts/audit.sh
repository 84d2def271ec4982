#!/usr/bin/env bash
# Known-vulnerability check of the pinned dependency set (requirements.lock) with pip-audit.
#
# pip-audit runs from its own throw-away venv (pinned below), so it neither needs nor changes .venv.
# `--no-deps --disable-pip`: the lock is the complete, pinned set (Makefile installs it with --no-deps), so
# nothing is resolved or installed; each pin is looked up in the PyPI JSON API's vulnerability data
# (network access to pypi.org needed). Fails on any finding whose id is not in audit-allowlist.txt
# (one id per line, then " # reason"; an entry without a reason is refused).
set -euo pipefail
cd "$(dirname "$0")/.."

PIP_AUDIT_VERSION=2.10.1
ALLOWLIST=audit-allowlist.txt
PYTHON=${PYTHON:-python3.11}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "pip-audit==$PIP_AUDIT_VERSION"

ignore=()
if [[ -f $ALLOWLIST ]]; then
  while IFS= read -r line; do
    entry=${line%%#*}
    entry=${entry//[[:space:]]/}
    [[ -z $entry ]] && continue
    reason=${line#*#}
    if [[ $line != *"#"* || -z ${reason//[[:space:]]/} ]]; then
      echo "audit: $ALLOWLIST: '$entry' has no reason (write: ID # why it does not apply)" >&2
      exit 2
    fi
    ignore+=(--ignore-vuln "$entry")
  done < "$ALLOWLIST"
fi

# The vulnerability data must be reachable, or every pin reads "not found on PyPI": say so plainly.
# (AUDIT_SERVICE=osv asks api.osv.dev instead of PyPI's per-release JSON API.)
SERVICE=${AUDIT_SERVICE:-pypi}
"$tmp/venv/bin/python" - "$SERVICE" <<'PY' || exit 3
import json, sys, urllib.request
name, version = next(l.strip() for l in open("requirements.lock") if "==" in l and not l.startswith("#")).split("==")
if sys.argv[1] == "osv":
    request = urllib.request.Request("https://api.osv.dev/v1/query", method="POST", data=json.dumps(
        {"package": {"name": name, "ecosystem": "PyPI"}, "version": version}).encode())
else:
    request = urllib.request.Request(f"https://pypi.org/pypi/{name}/{version}/json")
try:
    urllib.request.urlopen(request, timeout=20).read()
except Exception as exc:
    sys.exit(f"audit: cannot read vulnerability data for {name}=={version} from {request.full_url} ({exc}); "
             "run this where that service is reachable, or try AUDIT_SERVICE=osv / pypi")
PY

# --strict: a pin that cannot be audited (not on PyPI, say) is a failure, not a silent skip.
"$tmp/venv/bin/pip-audit" -r requirements.lock --no-deps --disable-pip --strict \
  --vulnerability-service "$SERVICE" --progress-spinner off --desc on --aliases on "${ignore[@]}"
