#!/usr/bin/env bash
# Installs the Debian packages edgekit needs (data sets, tools used by tests). Idempotent: packages
# already present are skipped, so a non-root user whose machine has them all passes straight through.
set -euo pipefail

PACKAGES=(
  dataset-fashion-mnist   # Fashion-MNIST IDX files under /usr/share/datasets/fashion-mnist (the default recipe)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-system: all Debian packages present"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: apt-get not found; install these packages with your system's package manager: ${missing[*]}" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "setup-system: need root to install: ${missing[*]}" >&2
    echo "  run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
echo "setup-system: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
