#!/usr/bin/env bash
# Installs Safekeep from this checkout on a Debian/Ubuntu machine (into ./.venv) and starts it.
# Arguments are passed to `safekeep`: with none it opens the app (the setup wizard on first run;
# without a display it prints the command line's help).
set -euo pipefail
cd "$(dirname "$0")/../.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends python3 python3-venv python3-pip
fi
# the libraries Qt's desktop platform plugin needs (present on most desktops; cheap to ensure)
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -q >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 \
    libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 \
    libfontconfig1 libdbus-1-3 fonts-dejavu-core >/dev/null || true
fi
# rclone reaches the long tail of cloud services (Box, pCloud, Mega, ...); optional
if ! command -v rclone >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends rclone >/dev/null || true
fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[providers]'
exec .venv/bin/safekeep "$@"
