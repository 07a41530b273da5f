#!/usr/bin/env bash
# Set up a virtual environment for NeuroRL on a fresh machine, then run the quickstart or the tests.
#
#   bash scripts/bootstrap.sh quickstart [neurorl train options]
#   bash scripts/bootstrap.sh test [pytest options]
#
# torch 2.13.0 is installed first and on its own: the CPU build of that version is what this
# project is tested with, and installing it first keeps pip from resolving another torch build.
# NEURORL_VENV chooses the environment folder (default .venv in the repository).
set -euo pipefail

usage() {
    echo "usage: bash scripts/bootstrap.sh quickstart|test [options]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
mode=$1
shift
case "$mode" in
    quickstart|test) ;;
    *) echo "bootstrap: unknown mode '$mode'" >&2; usage ;;
esac

cd "$(dirname "$0")/.."
venv=${NEURORL_VENV:-.venv}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    echo "bootstrap: creating $venv with $($python --version)"
    "$python" -m venv "$venv"
fi

pip_install() {
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

pip_install torch==2.13.0
extras=test
if [ "$mode" = test ]; then
    extras=test,ray
fi
pip_install -e ".[$extras]"

if [ "$mode" = quickstart ]; then
    exec "$venv/bin/neurorl" train "$@"
fi
exec "$venv/bin/python" -m pytest "$@"
