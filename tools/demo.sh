#!/usr/bin/env bash
# `make demo`: the MLIC-KD-WSD pipeline end to end, on CPU, at toy scale:
# synthetic VOC data -> EdgeBoxes proposals -> datalists -> generated nets ->
# WSDDN teacher (caffe train) -> stage-1 and stage-2 distillation -> the
# label-only baseline -> mAP of all three on the test split.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=$PWD/.venv/bin/caffe-mlic
OUT=$(realpath -m "${DEMO_DIR:-demo_run}")
IMAGES=${DEMO_IMAGES:-240}
ITERS=${DEMO_ITERS:-600}
CLASSES=4 PROPOSALS=48 TEACHER=128 STUDENT=96 POOLED=3
export GLOG_minloglevel=1

step() { echo; echo "== $*"; }
rm -rf "$OUT"; mkdir -p "$OUT"

step "caffe-mlic doctor"
$CLI doctor

step "synthetic VOC dataset: $IMAGES images, $CLASSES classes"
$CLI synth "$OUT/voc" --images "$IMAGES" --classes "$CLASSES" --image-size 192x144 --seed 0 \
  --size-range 0.3-0.6 --objects-per-image 1-3 --clutter 2 -q

step "EdgeBoxes proposals (2 processes)"
$CLI proposals "$OUT/voc/JPEGImages" -o "$OUT/proposals" --jobs 2 --max-boxes 300

step "datalists (boxes in ${TEACHER}x${TEACHER} space, $PROPOSALS proposals per image)"
for split in trainval test; do
  $CLI datalist build --voc "$OUT/voc" --set "$split" --proposals "$OUT/proposals" \
    -o "$OUT/$split.txt" --size "$TEACHER" --bbox-num "$PROPOSALS"
  $CLI datalist check "$OUT/$split.txt" --att-num "$CLASSES" --bbox-num "$PROPOSALS" --size "$TEACHER" | tail -3
done

step "generating nets (tiny VGG16-shaped backbone, trained from scratch) and $ITERS-iteration Adam solvers"
$CLI netgen -o "$OUT/nets" --classes "$CLASSES" --proposals "$PROPOSALS" --teacher-size "$TEACHER" \
  --student-size "$STUDENT" --pooled "$POOLED" --backbone tiny --scales 0.75 1.0 1.25 \
  --train-list "$OUT/trainval.txt" --test-list "$OUT/test.txt" \
  --wsddn-batch 8 8 --stage1-batch 8 8 --stage2-batch 8 8 --baseline-batch 8 8 \
  --max-iter "$ITERS" --solver-type Adam --base-lr 0.001 --input-scale 0.017 \
  --random-seed 0 >/dev/null
# Solvers are run from $OUT, so their snapshots land in $OUT/snapshots/.
mkdir -p "$OUT/snapshots/wsddn" "$OUT/snapshots/kd"
train() {  # solver [weights]
  local log="$OUT/$(basename "$1" .prototxt).log"
  ( cd "$OUT" && GLOG_minloglevel=0 GLOG_logtostderr=1 $CLI caffe train -solver "nets/$1" \
      ${2:+-weights "$2"} ) > "$log" 2>&1 || { tail -30 "$log"; exit 1; }
  grep -o "Iteration [0-9]*, loss = [-0-9.e]*" "$log" | sed -n '1p;$p'
}

step "training the WSDDN teacher"
train wsddn/solver.prototxt
TEACHER_MODEL=snapshots/wsddn/wsddn_iter_$ITERS.caffemodel

step "stage 1: feature-level distillation (teacher frozen)"
(cd "$OUT" && $CLI surgery --net nets/kd/train_stage1.prototxt --from "teacher:$TEACHER_MODEL" \
   -o stage1_init.caffemodel | tail -1)
train kd/solver_stage1.prototxt stage1_init.caffemodel

step "stage 2: prediction-level distillation"
(cd "$OUT" && $CLI surgery --net nets/kd/train_stage2.prototxt --from "teacher:$TEACHER_MODEL" \
   --from same:snapshots/kd/stage1_iter_$ITERS.caffemodel -o stage2_init.caffemodel | tail -1)
train kd/solver_stage2.prototxt stage2_init.caffemodel

step "baseline: the same student trained on labels only"
train kd/solver_baseline.prototxt

step "mAP on the test split"
evaluate() {  # label net weights blob [--sigmoid]
  printf '%-34s ' "$1"
  (cd "$OUT" && $CLI eval cls --net "$2" --weights "$3" --blob "$4" "${@:5}" | tail -1)
}
evaluate "teacher (WSDDN)" nets/wsddn/wsddn_train.prototxt "$TEACHER_MODEL" image_level_score
evaluate "student without KD (baseline)" nets/kd/student_baseline.prototxt \
  snapshots/kd/baseline_iter_$ITERS.caffemodel fc8_mscoco --sigmoid
evaluate "student with KD (stage 2)" nets/kd/train_stage2.prototxt \
  snapshots/kd/stage2_iter_$ITERS.caffemodel fc8_mscoco --sigmoid
echo
echo "Everything is in $OUT/. At this toy scale and schedule the numbers show the"
echo "pipeline working, not the paper's results (which need VGG16 from ImageNet and COCO)."
