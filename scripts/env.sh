# Sourced by the other scripts: creates .venv on first use and (re)installs the pinned
# requirements file given as $1 whenever it changed. Sets $PY to the venv's python.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DEBIASJAX_VENV:-$root/.venv}"
requirements="$root/$1"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.installed-$(basename "$requirements")"
wanted="$(cat "$root/requirements.txt" "$requirements" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
  echo "installing $(basename "$requirements") into $venv ..." >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >&2
  echo "$wanted" > "$stamp"
fi
PY="$venv/bin/python"
cd "$root"
