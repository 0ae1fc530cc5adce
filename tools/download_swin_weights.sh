#!/usr/bin/env bash
# Download the official Swin Transformer ImageNet weights that the Swin
# configs start from, and convert them into pretrain/ (see pretrain/README.md).
#
#   bash tools/download_swin_weights.sh [NAME ...]
#
# NAME is one of the four files below without .pth (default: all four).
# Files already in pretrain/ are kept. Environment:
#   PRETRAIN_DIR   where the converted files go (default: pretrain)
#   SWIN_BASE_URL  where the official files are downloaded from (default:
#                  the v1.0.0 release of github.com/SwinTransformer/storage;
#                  a mirror, or file:///folder for files already on disk)
set -euo pipefail

NAMES=(
  swin_tiny_patch4_window7_224           # Swin-T, ImageNet-1k
  swin_small_patch4_window7_224          # Swin-S, ImageNet-1k
  swin_base_patch4_window12_384_22k      # Swin-B, ImageNet-22k
  swin_large_patch4_window12_384_22k     # Swin-L, ImageNet-22k
)
BASE_URL=${SWIN_BASE_URL:-https://github.com/SwinTransformer/storage/releases/download/v1.0.0}
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PRETRAIN_DIR=${PRETRAIN_DIR:-pretrain}

usage() {
  echo "usage: bash tools/download_swin_weights.sh [NAME ...]"
  echo "NAME: ${NAMES[*]} (default: all)"
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
esac
if [ $# -eq 0 ]; then
  set -- "${NAMES[@]}"
fi
for name in "$@"; do
  name=${name%.pth}
  if [[ ! " ${NAMES[*]} " == *" $name "* ]]; then
    echo "error: unknown Swin weights '$name' (known: ${NAMES[*]})" >&2
    exit 2
  fi
done

download() {  # URL FILE
  if command -v curl >/dev/null; then
    curl -fL --retry 3 --progress-bar -o "$2" "$1"
  elif command -v wget >/dev/null; then
    wget -q --show-progress -O "$2" "$1"
  else
    python -c 'import sys, urllib.request; urllib.request.urlretrieve(*sys.argv[1:])' "$1" "$2"
  fi
}

cd "$REPO_ROOT"
mkdir -p "$PRETRAIN_DIR"
# the official files are only needed until they are converted
STAGING=$(mktemp -d "${TMPDIR:-/tmp}/swin_weights.XXXXXX")
trap 'rm -rf "$STAGING"' EXIT

for name in "$@"; do
  name=${name%.pth}
  target="$PRETRAIN_DIR/$name.pth"
  if [ -f "$target" ]; then
    echo "$target exists, skipped"
    continue
  fi
  echo "downloading $BASE_URL/$name.pth"
  if ! download "$BASE_URL/$name.pth" "$STAGING/$name.pth"; then
    echo "error: could not download $BASE_URL/$name.pth; download it by" \
         "hand and run: python tools/model_converters/swin2mmseg.py" \
         "$name.pth $target" >&2
    exit 1
  fi
  # convert to a temporary name so an interrupted run leaves no bad file
  python tools/model_converters/swin2mmseg.py \
    "$STAGING/$name.pth" "$STAGING/$name.converted.pth"
  mv "$STAGING/$name.converted.pth" "$target"
  rm -f "$STAGING/$name.pth"
  echo "wrote $target"
done
