#!/usr/bin/env bash
# Quick start on a fresh machine, without any download of data or weights:
# install what is missing (torch: the CPU build where there is no NVIDIA
# GPU; an installed torch is kept), generate the synthetic dataset, train
# the toy SenFormer, evaluate it (single scale and multi-scale + flip) and
# draw its predictions (the ensemble and each learner).
#
#   bash tools/misc/quickstart.sh [WORK_DIR] [train.py arguments ...]
#
# WORK_DIR defaults to work_dirs/quickstart; the dataset goes to data/toy
# (the toy config's data_root). Extra arguments go to tools/train.py, e.g.
# --cfg-options train_cfg.max_iters=50 for a shorter run. Outside a virtual
# (or conda) environment it installs into ./.venv, made if needed. It prints
# one line per step; everything else goes to WORK_DIR/quickstart.log.
# SENFORMER_SKIP_INSTALL=1 skips the installation step. About 2 minutes on
# 2 idle CPU cores after installation; the last lines give the mIoU of both
# evaluations.
set -euo pipefail
usage="usage: bash tools/misc/quickstart.sh [WORK_DIR] [train.py arguments ...]"
case "${1:-}" in
  -h|--help)
    echo "$usage"
    exit 0 ;;
  -*)
    echo "$usage" >&2
    echo "error: the first argument is the work dir, got option $1" >&2
    exit 2 ;;
esac
cd "$(dirname "$0")/../.."

WORK_DIR=${1:-work_dirs/quickstart}
shift || true
CONFIG=senformer_configs/senformer/toy/senformer_fpnt_r18_toy.py
DATA_ROOT=data/toy
START=$SECONDS
mkdir -p "$WORK_DIR"
LOG="$WORK_DIR/quickstart.log"
: > "$LOG"

# Runs a step with its output in the log; one line on the console.
step() {
  local title=$1 begin=$SECONDS
  shift
  printf '%-58s' "$title" | tee -a "$LOG"
  echo >> "$LOG"
  if "$@" >> "$LOG" 2>&1; then
    echo "done ($((SECONDS - begin)) s)"
  else
    echo "failed"
    echo "---- last lines of $LOG:" >&2
    tail -n 15 "$LOG" >&2
    echo "error: quick start step '$title' failed; the full log is $LOG" >&2
    exit 1
  fi
}

if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ] && \
    [ -z "${SENFORMER_SKIP_INSTALL:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    # system packages stay visible: a torch installed there is kept
    step "no virtual environment active: creating .venv" \
      python3 -m venv --system-site-packages .venv
  fi
  echo "using .venv (to use it afterwards: source .venv/bin/activate)"
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
PYTHON=${PYTHON:-python}
if [ -z "${SENFORMER_SKIP_INSTALL:-}" ]; then
  echo "[1/6] installing what is missing" | tee -a "$LOG"
  PYTHON=$(command -v "$PYTHON") bash tools/misc/install_missing.sh tests \
    2>&1 | tee -a "$LOG" | sed 's/^/      /'
fi

step "[2/6] synthetic dataset in $DATA_ROOT" \
  "$PYTHON" tools/misc/generate_toy_dataset.py "$DATA_ROOT"
step "[3/6] training the toy SenFormer" \
  "$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
CHECKPOINT=$(cat "$WORK_DIR/last_checkpoint")

evaluate() {
  local out=$1
  shift
  "$PYTHON" tools/test.py "$CONFIG" "$CHECKPOINT" "$@" > "$out" 2>&1
  local status=$?
  cat "$out"
  return $status
}
step "[4/6] evaluation" evaluate "$WORK_DIR/test.log" \
  --work-dir "$WORK_DIR/test" --out "$WORK_DIR/test/pred" \
  --show-dir "$WORK_DIR/test/overlays"
step "[5/6] evaluation, multi-scale + flip (--aug-test)" \
  evaluate "$WORK_DIR/test_aug.log" --aug-test --work-dir "$WORK_DIR/test_aug"

draw() {
  mkdir -p "$WORK_DIR/demo"
  IMAGES=("$DATA_ROOT"/images/validation/toy_validation_0000{0,1,2}.jpg)
  for img in "${IMAGES[@]}"; do
    "$PYTHON" demo/image_demo.py "$img" "$CONFIG" "$CHECKPOINT" --learners \
      --out-file "$WORK_DIR/demo/$(basename "${img%.jpg}").png" || return 1
  done
  "$PYTHON" - "$WORK_DIR/demo" "${IMAGES[@]}" <<'EOF'
import glob, os.path as osp, sys
import cv2, numpy as np
out_dir, images = sys.argv[1], sys.argv[2:]
rows = []
for img in images:
    stem = osp.join(out_dir, osp.splitext(osp.basename(img))[0])
    learners = sorted(glob.glob(stem + '_learner*.png'))
    tiles = [cv2.imread(p) for p in [img, stem + '.png'] + learners]
    tiles = [cv2.resize(t, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
             for t in tiles]
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    rows.append(np.hstack([x for t in tiles for x in (t, gap)][:-1]))
titles = ['input', 'ensemble'] + [f'learner {i + 1}'
                                   for i in range(len(tiles) - 2)]
header = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
for i, title in enumerate(titles):
    x = i * (tiles[0].shape[1] + 6) + 6
    cv2.putText(header, title, (x, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (0, 0, 0), 1, cv2.LINE_AA)
spacer = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
panel = np.vstack([header] + [x for r in rows for x in (r, spacer)][:-1])
cv2.imwrite(osp.join(out_dir, 'quickstart_demo.png'), panel)
print('wrote ' + osp.join(out_dir, 'quickstart_demo.png'))
EOF

}
step "[6/6] predictions of the ensemble and of each learner" draw

echo "done in $((SECONDS - START)) s; full log: $LOG"
echo "checkpoint:   $CHECKPOINT"
echo "single scale: $(grep -o 'mIoU: [0-9.]*' "$WORK_DIR/test.log" | tail -1)"
echo "aug-test:     $(grep -o 'mIoU: [0-9.]*' "$WORK_DIR/test_aug.log" | tail -1)"
echo "pictures:     $WORK_DIR/demo/quickstart_demo.png, $WORK_DIR/test/overlays"
