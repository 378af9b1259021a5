#!/usr/bin/env bash
# The main job on the embedded faces benchmark; extra arguments go to experiments/main.py,
# e.g. `bash scripts/main.sh --data=census`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" requirements.txt
exec "$PY" -m experiments.main "$@"
