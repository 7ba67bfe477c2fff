#!/usr/bin/env bash
# Installs the CPU PJRT plugin of tools/requirements-pjrt-plugin.txt (pinned version and SHA-256) into
# BUILD_DIR/pjrt-cpu/ and prints the plugin's path. Idempotent: does nothing when the pinned wheel is installed.
#   tools/install_pjrt_cpu_plugin.sh build
set -euo pipefail
src="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
build="$(mkdir -p "${1:?usage: install_pjrt_cpu_plugin.sh BUILD_DIR}" && cd "$1" && pwd)"
req="$src/tools/requirements-pjrt-plugin.txt"
dir="$build/pjrt-cpu"
so="$dir/lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -f "$so" ] && [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
  echo "$so"
  exit 0
fi
echo "[pjrt] downloading the CPU PJRT plugin (lammps-jax-pjrt-cpu, 63 MB, hash-pinned) into $dir" >&2
rm -rf "$dir"
mkdir -p "$dir/wheel"
if /usr/bin/python3 -m pip --version >/dev/null 2>&1; then
  pip=(/usr/bin/python3 -m pip)
else  # Debian's python3-venv brings pip into a venv
  /usr/bin/python3 -m venv "$dir/venv"
  pip=("$dir/venv/bin/python" -m pip)
fi
"${pip[@]}" download --quiet --disable-pip-version-check --no-deps --require-hashes -r "$req" -d "$dir/wheel" >&2
/usr/bin/python3 - "$dir" <<'PY'
import glob, sys, zipfile
d = sys.argv[1]
(whl,) = glob.glob(d + "/wheel/*.whl")
zipfile.ZipFile(whl).extractall(d)
PY
rm -rf "$dir/wheel" "$dir/venv"
test -f "$so"
echo "$want" > "$dir/.requirements.sha256"
echo "$so"
