#!/usr/bin/env bash
# The GPU numbers of issue 14 in one command: see bench/gpu.py (--dry-run runs it at tiny sizes on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" bench/gpu.py "$@"
