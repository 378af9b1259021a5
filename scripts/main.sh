#!/usr/bin/env bash
# The main job on the embedded faces benchmark; extra arguments go to experiments/main.py,
# e.g. `bash scripts/main.sh --config=experiments/configs/main.py:census`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" requirements.txt
DEBIASJAX_COMMAND="bash scripts/main.sh"
if [ $# -gt 0 ]; then DEBIASJAX_COMMAND+="$(printf " %q" "$@")"; fi
export DEBIASJAX_COMMAND
exec "$PY" -m experiments.main "$@"
