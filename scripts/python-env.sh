#!/bin/sh
# Create the project's virtual environment, explaining what is missing if it cannot.
set -eu
PYTHON="$1"
VENV="$2"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "welfare-gateway needs Python 3.11 or newer as '$PYTHON' (Debian: apt-get install python3)." >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "welfare-gateway needs Python 3.11 or newer; '$PYTHON' is $("$PYTHON" --version 2>&1)." >&2
    echo "Run make with PYTHON=/path/to/python3.11 (or newer)." >&2
    exit 1
fi
if [ -x "$VENV/bin/python" ]; then
    exit 0
fi
if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's python3-venv ..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$PYTHON" -m venv "$VENV"
    else
        echo "'$PYTHON -m venv' failed: install the venv module (Debian: sudo apt-get install python3-venv)." >&2
        exit 1
    fi
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
