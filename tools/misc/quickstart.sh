#!/usr/bin/env bash
# Quick start on a CPU, without any download: generate the synthetic dataset,
# train the toy SenFormer, evaluate it (single scale and multi-scale + flip)
# and draw its predictions (the ensemble and each learner).
#
#   bash tools/misc/quickstart.sh [WORK_DIR] [train.py arguments ...]
#
# WORK_DIR defaults to work_dirs/quickstart; the dataset goes to data/toy
# (the toy config's data_root). Extra arguments go to tools/train.py, e.g.
# --cfg-options train_cfg.max_iters=50 for a shorter run. About 3 minutes on
# 2 idle CPU cores; the last lines give the mIoU of both evaluations.
set -euo pipefail
case "${1:-}" in
  -h|--help)
    echo "usage: bash tools/misc/quickstart.sh [WORK_DIR] [train.py arguments ...]"
    exit 0 ;;
  -*)
    echo "usage: bash tools/misc/quickstart.sh [WORK_DIR] [train.py arguments ...]" >&2
    echo "error: the first argument is the work dir, got option $1" >&2
    exit 2 ;;
esac
cd "$(dirname "$0")/../.."

WORK_DIR=${1:-work_dirs/quickstart}
shift || true
CONFIG=senformer_configs/senformer/toy/senformer_fpnt_r18_toy.py
DATA_ROOT=data/toy
START=$SECONDS

step() { echo; echo "== $* ($((SECONDS - START)) s)"; }

step "1/5 synthetic dataset in $DATA_ROOT"
python tools/misc/generate_toy_dataset.py "$DATA_ROOT"

step "2/5 training $CONFIG"
python tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
CHECKPOINT=$(cat "$WORK_DIR/last_checkpoint")

step "3/5 evaluation of $CHECKPOINT"
python tools/test.py "$CONFIG" "$CHECKPOINT" --work-dir "$WORK_DIR/test" \
  --out "$WORK_DIR/test/pred" --show-dir "$WORK_DIR/test/overlays" \
  2>&1 | tee "$WORK_DIR/test.log"

step "4/5 evaluation with multi-scale + flip (--aug-test)"
python tools/test.py "$CONFIG" "$CHECKPOINT" --aug-test \
  --work-dir "$WORK_DIR/test_aug" 2>&1 | tee "$WORK_DIR/test_aug.log"

step "5/5 predictions of the ensemble and of each learner"
mkdir -p "$WORK_DIR/demo"
IMAGES=("$DATA_ROOT"/images/validation/toy_validation_0000{0,1,2}.jpg)
for img in "${IMAGES[@]}"; do
  python demo/image_demo.py "$img" "$CONFIG" "$CHECKPOINT" --learners \
    --out-file "$WORK_DIR/demo/$(basename "${img%.jpg}").png"
done
# one picture: input | ensemble | learner 1..N, a row per image
python - "$WORK_DIR/demo" "${IMAGES[@]}" <<'EOF'
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

step "done"
echo "checkpoint:   $CHECKPOINT"
echo "single scale: $(grep -o 'mIoU: [0-9.]*' "$WORK_DIR/test.log" | tail -1)"
echo "aug-test:     $(grep -o 'mIoU: [0-9.]*' "$WORK_DIR/test_aug.log" | tail -1)"
echo "pictures:     $WORK_DIR/demo/quickstart_demo.png, $WORK_DIR/test/overlays"
