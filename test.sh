#!/usr/bin/env bash
# Run the test suite: creates .venv, installs pairscan with its test tools, runs pytest.
# Usage: ./test.sh [pytest options...]
set -euo pipefail
cd "$(dirname "$0")"
. ./env.sh
exec .venv/bin/python -m pytest "$@"
