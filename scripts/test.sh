#!/usr/bin/env bash
# The test suite (oracle tests against fairlearn and AIF360 included); extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" requirements-test.txt
exec "$PY" -m pytest -q tests "$@"
