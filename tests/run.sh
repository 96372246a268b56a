#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian/Ubuntu machine, then runs every check:
# ruff, ruff format, mypy --strict, import-linter contracts and pytest (unit, contract,
# integration against the real restic program, and end-to-end CLI tests).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
  python3 python3-venv python3-pip restic attr rclone openssh-server openssh-client \
  gnome-keyring libsecret-tools dbus dbus-x11 \
  xvfb xauth xdotool x11-utils trayer dunst libnotify-bin imagemagick \
  libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 \
  libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 \
  libfontconfig1 libdbus-1-3 fonts-dejavu-core >/dev/null

if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# Azurite (the Azure Blob Storage emulator) for the Azure tests; npm's cache makes reruns fast.
if ! [ -x tests/.node/node_modules/.bin/azurite-blob ]; then
  if ! command -v npm >/dev/null; then
    $SUDO apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
  fi
  npm install --prefix tests/.node --no-audit --no-fund --silent azurite@3
fi

echo "== ruff";          .venv/bin/ruff check desktop tests bench
echo "== ruff format";   .venv/bin/ruff format --check desktop tests bench
echo "== mypy --strict"; .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
echo "== pytest"
set +e
.venv/bin/pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
