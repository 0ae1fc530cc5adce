#!/usr/bin/env bash
# Install what this repository needs and the Python environment lacks:
# torch first (the CPU build where there is no NVIDIA GPU; a torch already
# installed is kept, whichever build it is), then this package in editable
# mode with the extras named as arguments (pytest comes with "tests").
#
#   bash tools/misc/install_missing.sh [EXTRA ...]      e.g. tests optional
#
# PYTHON names the interpreter (default: python3, or python in a virtual
# environment); SENFORMER_TORCH_VERSION the torch to install (2.13.0);
# SENFORMER_TORCH_CPU_INDEX the index with CPU builds (PyTorch's). Prints
# one line per decision; pip's own output only on failure.
set -euo pipefail
case "${1:-}" in
  -h|--help)
    echo "usage: bash tools/misc/install_missing.sh [EXTRA ...]   (extras: tests, optional)"
    exit 0 ;;
esac
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
if [ -n "${PYTHON:-}" ]; then :
elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  PYTHON="$VIRTUAL_ENV/bin/python"
else
  PYTHON=python3
fi
TORCH_VERSION=${SENFORMER_TORCH_VERSION:-2.13.0}
TORCH_CPU_INDEX=${SENFORMER_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

for extra in "$@"; do
  if [ ! -f "requirements/$extra.txt" ]; then
    echo "error: no extra named '$extra' (there are:" \
      "$(cd requirements && ls *.txt | sed 's/\.txt$//' | grep -v runtime | tr '\n' ' '| sed 's/ $//'))" >&2
    exit 2
  fi
done

pip_install() {
  local log
  log=$(mktemp)
  if ! "$PYTHON" -m pip install --quiet "$@" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    rm -f "$log"
    echo "error: pip install $* failed (its last lines are above)" >&2
    exit 1
  fi
  rm -f "$log"
}

if version=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
  echo "torch $version is installed: kept"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "installing torch==$TORCH_VERSION (an NVIDIA GPU is present: the CUDA build)"
  pip_install "torch==$TORCH_VERSION"
elif [ "$(uname -s)" = Linux ] || [[ "$(uname -s)" == MINGW* ]]; then
  # without the local version, pip would take the CUDA build on Linux
  echo "installing torch==$TORCH_VERSION+cpu (no NVIDIA GPU: the CPU build)"
  pip_install "torch==$TORCH_VERSION+cpu" --extra-index-url "$TORCH_CPU_INDEX"
else
  echo "installing torch==$TORCH_VERSION (macOS builds are CPU/MPS builds)"
  pip_install "torch==$TORCH_VERSION"
fi

# Which requirements (of runtime.txt and the extras) are not installed, and
# whether mmseg is imported from this checkout.
missing=$("$PYTHON" - "$ROOT" "$@" <<'EOF'
import os.path as osp
import re
import sys
from importlib import metadata

root, extras = sys.argv[1], sys.argv[2:]
# a script read from stdin puts the current folder, the checkout, first on
# sys.path: mmseg would seem installed although it is not
if sys.path and sys.path[0] == '':
    sys.path.pop(0)
missing = []
for name in ['runtime'] + extras:
    with open(osp.join(root, 'requirements', name + '.txt')) as f:
        for line in f:
            requirement = line.split('#')[0].strip()
            if not requirement or requirement.startswith('-r'):
                continue
            package = re.split(r'[<>=!~\[; ]', requirement, 1)[0]
            try:
                metadata.version(package)
            except metadata.PackageNotFoundError:
                missing.append(package)
try:
    import mmseg
    if osp.dirname(osp.dirname(osp.abspath(mmseg.__file__))) != root:
        missing.append('mmseg from this checkout')
except ImportError:
    missing.append('mmseg')
print(', '.join(missing))
EOF
)
if [ -z "$missing" ]; then
  echo "senformer and its requirements are installed"
else
  spec="."
  [ $# -gt 0 ] && spec=".[$(IFS=,; echo "$*")]"
  echo "installing $spec in editable mode (missing: $missing)"
  pip_install -e "$spec"
fi
