#!/usr/bin/env bash
# Run pairscan on its built-in sample: creates .venv, installs pairscan, runs the pipeline.
# Usage: ./demo.sh [pairscan run options...]   (e.g. ./demo.sh --executor processes)
set -euo pipefail
cd "$(dirname "$0")"
. ./env.sh
exec .venv/bin/pairscan run --workdir pairscan-work "$@"
