#!/usr/bin/env bash
# Install headless Chromium and a CJK font for the e2e screenshot (tests/e2e/test_end_to_end.py).
# Debian's own packages (no browser download from elsewhere). Idempotent: exits at once when both are
# installed; otherwise one `apt-get update`, then a minimal install. Needs root (CI and dev machines are).
set -euo pipefail

PACKAGES=(chromium fonts-wqy-zenhei)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [[ ${#missing[@]} -eq 0 ]] && command -v chromium >/dev/null; then
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install_chromium.sh: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi
echo "install_chromium.sh: installing ${missing[*]:-chromium}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
command -v chromium >/dev/null
