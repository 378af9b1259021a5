#!/usr/bin/env bash
# The test suite (oracle tests against fairlearn and AIF360 included) on two worker processes
# (compilation is single-threaded, so two workers use both cores), listing the 15 slowest tests;
# extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" requirements-test.txt
exec "$PY" -m pytest -q -n "${DEBIASJAX_TEST_WORKERS:-2}" --dist worksteal --durations=15 tests "$@"
