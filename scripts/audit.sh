#!/usr/bin/env bash
# Known-vulnerability check of every pin (requirements.lock, requirements-test.txt, requirements-tools.txt), offline.
#
# No vulnerability service is reachable from the machines this runs on, so the pins are matched against the
# offline OSV snapshot of the PyPA advisory database in ../shared/advisories/ (beside the checkout, here and
# in CI; ADVISORIES=... points elsewhere) by scripts/audit.py, which needs only Python and `packaging`.
# Fails on any finding whose id is not in audit-allowlist.txt (`ID # reason`; an entry without a reason is
# refused), and prints every allow-listed finding with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3.11 )}
ADVISORIES=${ADVISORIES:-../shared/advisories/pypi-osv.jsonl.gz}
exec "$PYTHON" scripts/audit.py --advisories "$ADVISORIES" --allowlist audit-allowlist.txt \
  requirements.lock requirements-test.txt requirements-tools.txt "$@"
