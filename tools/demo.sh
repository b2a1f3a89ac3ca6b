#!/usr/bin/env bash
# `make demo`: MLIC-KD-WSD in miniature, on the CPU, through the caffe-mlic
# commands a user types. A synthetic single-label set stands in for ImageNet
# (the backbone is pretrained on it once, shared by the seeds); a synthetic
# multi-label detection set stands in for MS-COCO. For each seed: the WSDDN
# teacher (192 px, 96 EdgeBoxes proposals), stage 1 (features), stage 2
# (predictions), the label-only baseline student (64 px: a third of the
# teacher's resolution, as 224 vs 672 in the paper), then evaluation on the
# test split (eval cls, detect + eval det against a random control, speed),
# and at the end `caffe-mlic report`: results.json, report.html, the table.
#
#   SEEDS=3 (default)    seeds 1..SEEDS, DEMO_JOBS (3) of them side by side
#   DEMO_DIR=runs/demo   where everything goes
#   DEMO_MINI=1          a miniature (few images and iterations) for CI:
#                        well-formed outputs, no claim about the gain
#   ABLATION=1           also the paper's ablation rows for each seed: stage 1
#                        only (then labels, stage 2's budget), stage 2 only, and
#                        its control (labels only, stage 2's budget, same start)
#   STUDY=1              also stage 2 with one setting changed at a time
#                        (validation split only; README: "Why stage 2 ...")
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=$PWD/.venv/bin/caffe-mlic
OUT=$(realpath -m "${DEMO_DIR:-runs/demo}")
SEEDS=${SEEDS:-3}
JOBS=${DEMO_JOBS:-3}
# One BLAS thread per process: these nets' matrices are too small for two
# threads to help, and seeds then train side by side on the two cores.
export OPENBLAS_NUM_THREADS=1 GLOG_minloglevel=2

CLASSES=6 PROPOSALS=96 TEACHER=192 STUDENT=64 POOLED=2
if [ "${DEMO_MINI:-0}" = 1 ]; then
  IMAGES=60 PRE_IMAGES=160 PRE_ITERS=30 ITERS="24 12 12 24" STRICT=
else
  IMAGES=1000 PRE_IMAGES=7200 PRE_ITERS=2000 ITERS="1200 600 300 900" STRICT=--strict
fi
read -r TEACHER_ITERS STAGE1_ITERS STAGE2_ITERS BASELINE_ITERS <<<"$ITERS"
# The preprocessing of the pretrained backbone, shared by every net after it.
PREPROCESS=(--set "mean=[128,128,128]" --input-scale 0.017)
# Every solver: Adam, step (x0.1) at 70 %, a test every eighth of the run; base
# learning rates chosen on the validation split (README: "How the demo's
# settings were chosen"): 1e-3, except stage 1's mimic, 3e-3.
SOLVER=(--solver-type Adam)

step() { echo; echo "== $*"; }
rm -rf "$OUT"
mkdir -p "$OUT/data/lists"
LISTS=$OUT/data/lists

step "caffe-mlic doctor"
$CLI doctor

step "synthetic data: $PRE_IMAGES single-object images of 8 shapes (pretraining, 64 px), $IMAGES multi-label images of $CLASSES shapes (192 px)"
# the two sets are drawn side by side, one a core
$CLI synth "$OUT/data/voc" --images "$IMAGES" --classes "$CLASSES" --objects-per-image 1-3 \
  --size-range 0.2-0.45 --image-size 192x192 --clutter 1 --seed 0 --split 0.4,0.15,0.45 -q &
SYNTH_PID=$!
$CLI synth "$OUT/data/pretrain" --images "$PRE_IMAGES" --classes 8 --objects-per-image 1-1 \
  --size-range 0.4-0.85 --image-size 64x64 --clutter 2 --seed 100 --split 0.9,0.1,0 -q
wait $SYNTH_PID
for split in train val; do
  $CLI datalist build --voc "$OUT/data/pretrain" --set $split --whole-image -o "$LISTS/pretrain_$split.txt" \
    --size 64 --bbox-num 1 >/dev/null
done

step "pretraining the backbone on the single-object set (the demo's ImageNet), while EdgeBoxes runs on the detection set"
CAFFE_MLIC_PROGRESS=never $CLI proposals "$OUT/data/voc/JPEGImages" -o "$OUT/data/proposals" --jobs 1 \
  --max-boxes 200 > "$OUT/data/proposals.log" 2>&1 &
PROPOSALS_PID=$!
$CLI netgen -o "$OUT/pretrain/nets" --classes 8 --proposals 1 --teacher-size 64 --student-size 64 \
  --pooled 2 --backbone mini --set dropout_ratio=0 --student-fc8 fc8_pretrain "${PREPROCESS[@]}" \
  --train-list "$LISTS/pretrain_train.txt" --test-list "$LISTS/pretrain_val.txt" \
  --baseline-batch 32 32 --max-iter "$PRE_ITERS" "${SOLVER[@]}" --base-lr 0.001 --random-seed 0 >/dev/null
(cd "$OUT/pretrain" && $CLI train nets/kd/solver_baseline.prototxt --run-dir run)
cp "$OUT/pretrain/snapshots/kd/baseline_iter_$PRE_ITERS.caffemodel" "$OUT/pretrain/pretrain.caffemodel"
PRETRAIN=$OUT/pretrain/pretrain.caffemodel
wait $PROPOSALS_PID || { cat "$OUT/data/proposals.log"; exit 1; }
tail -1 "$OUT/data/proposals.log"

step "datalists: train / val (carved from the training images, for curves and choices) / test"
for split in train val test; do
  $CLI datalist build --voc "$OUT/data/voc" --set $split --proposals "$OUT/data/proposals" \
    -o "$LISTS/$split.txt" --size "$TEACHER" --bbox-num "$PROPOSALS"
done
$CLI datalist check "$LISTS/train.txt" --att-num "$CLASSES" --bbox-num "$PROPOSALS" --size "$TEACHER" | tail -2

# eval_cls NAME NET WEIGHTS BLOB [--sigmoid]: a model on the test split, at 0.5
# (eval/NAME.json, scores eval/NAME.npy) and at per-class thresholds fitted on
# the validation split (eval/NAME_thresholds.json), applied unchanged to the
# test scores (eval/NAME_fitted.json)
eval_cls() {
  local name=$1 net=$2 weights=$3 blob=$4; shift 4
  $CLI eval cls --net "$net" --weights "$weights" --blob "$blob" "$@" --list "$LISTS/val.txt" \
    --classes "$LISTS/val.classes.txt" --fit-thresholds "eval/${name}_thresholds.json" >/dev/null
  $CLI eval cls --net "$net" --weights "$weights" --blob "$blob" "$@" --list "$LISTS/test.txt" \
    --classes "$LISTS/test.classes.txt" --json "eval/$name.json" --save-scores "eval/$name.npy" | tail -1
  $CLI eval cls --scores "eval/$name.npy" --labels "eval/$name.labels.npy" --classes "$LISTS/test.classes.txt" \
    --thresholds "eval/${name}_thresholds.json" --json "eval/${name}_fitted.json" >/dev/null
}

# seed_netgen OUT SEED [NETGEN ARGS]: the nets and solvers of a seed (the
# arguments after SEED override the demo's)
seed_netgen() {
  local out=$1 seed=$2; shift 2
  $CLI netgen -o "$out" --classes "$CLASSES" --proposals "$PROPOSALS" --teacher-size "$TEACHER" \
    --student-size "$STUDENT" --pooled "$POOLED" --backbone mini --set dropout_ratio=0 \
    --scales 0.75 1.0 1.25 "${PREPROCESS[@]}" --train-list "$LISTS/train.txt" --test-list "$LISTS/val.txt" \
    --wsddn-batch 8 8 --stage1-batch 8 8 --stage2-batch 8 8 --baseline-batch 8 8 \
    --iters $TEACHER_ITERS $STAGE1_ITERS $STAGE2_ITERS $BASELINE_ITERS "${SOLVER[@]}" \
    --base-lrs 0.001 0.003 0.001 0.001 \
    --random-seed "$seed" --set data_seed="$seed" "$@" >/dev/null
}

seed_pipeline() {  # SEED: everything of one seed, in $OUT/seed$SEED
  local seed=$1 dir=$OUT/seed$1
  mkdir -p "$dir/init" "$dir/eval"
  cd "$dir"
  seed_netgen nets "$seed"
  echo "seed $seed: teacher"
  $CLI train nets/wsddn/solver.prototxt --weights "$PRETRAIN" --run-dir runs/teacher
  local teacher=snapshots/wsddn/wsddn_iter_$TEACHER_ITERS.caffemodel
  echo "seed $seed: stage 1 (the student's region features regress the teacher's)"
  $CLI surgery --net nets/kd/train_stage1.prototxt --from same:"$PRETRAIN" --from teacher:$teacher \
    -o init/stage1.caffemodel | tail -1
  $CLI train nets/kd/solver_stage1.prototxt --weights init/stage1.caffemodel --run-dir runs/stage1
  echo "seed $seed: stage 2 (labels + the teacher's soft image scores)"
  $CLI surgery --net nets/kd/train_stage2.prototxt --from teacher:$teacher \
    --from same:snapshots/kd/stage1_iter_$STAGE1_ITERS.caffemodel -o init/stage2.caffemodel | tail -1
  # what stage 2 distils: the teacher's soft targets (as loaded, at stage 2's temperature) on val
  $CLI eval cls --net nets/kd/train_stage2.prototxt --weights init/stage2.caffemodel --blob image_level_score \
    --list "$LISTS/val.txt" --classes "$LISTS/val.classes.txt" --json eval/soft_targets_val.json \
    --save-scores eval/soft_targets_val.npy | tail -1
  $CLI train nets/kd/solver_stage2.prototxt --weights init/stage2.caffemodel --run-dir runs/stage2
  echo "seed $seed: baseline student (labels only, from the same pretrained backbone)"
  $CLI train nets/kd/solver_baseline.prototxt --weights "$PRETRAIN" --run-dir runs/baseline

  echo "seed $seed: evaluation on the test split"
  local kd=snapshots/kd/stage2_iter_$STAGE2_ITERS.caffemodel base=snapshots/kd/baseline_iter_$BASELINE_ITERS.caffemodel
  eval_cls teacher nets/wsddn/wsddn_train.prototxt $teacher image_level_score
  eval_cls student_kd nets/kd/train_stage2.prototxt $kd fc8_mscoco --sigmoid
  eval_cls student_baseline nets/kd/student_baseline.prototxt $base fc8_mscoco --sigmoid
  local test_images; test_images=$(sed 's/$/.jpg/; s|^|'"$OUT"'/data/voc/JPEGImages/|' "$OUT/data/voc/ImageSets/Main/test.txt")
  $CLI detect --net nets/wsddn/wsddn_deploy.prototxt --weights $teacher --proposals "$OUT/data/proposals" \
    --classes "$LISTS/test.classes.txt" --scales 144 192 240 --flip -o det -q $test_images | tail -1
  $CLI detect --net nets/wsddn/wsddn_deploy.prototxt --control random --seed "$seed" \
    --proposals "$OUT/data/proposals" --classes "$LISTS/test.classes.txt" --scales 144 192 240 --flip \
    -o det_control -q $test_images | tail -1
  $CLI eval det --gt "$LISTS/test.gt.json" --results det --json eval/det.json | tail -1
  $CLI eval det --gt "$LISTS/test.gt.json" --results det_control --json eval/det_control.json | tail -1
  # the student deploy net is the stage-2 student's layers alone
  $CLI surgery --net nets/kd/student_deploy.prototxt --from same:$kd -o student_deploy.caffemodel | tail -1
  if [ "${ABLATION:-0}" = 1 ]; then seed_ablation "$seed" "$teacher"; fi
  if [ "${STUDY:-0}" = 1 ]; then seed_study "$seed" "$teacher"; fi
}

# STUDY=1: why stage 2 does or does not help, on the validation split only:
# stage 2 again from stage 2's start with one thing changed; each run's
# validation mAP is in runs/study_<name>/log.jsonl. Each variant gets its own
# init/study_<name>.caffemodel by the same surgery as init/stage2 (the same
# values, but for the teacher's temperature, which the caffemodel holds: a
# T = 1 net loaded from init/stage2 would run at T = 0.5).
STUDY_VARIANTS=(
  "teacher_T1 --set teacher_temperature=1.0"
  "scale_lr1 --set student_scale_lr_mult=1"
  "scale_fixed --set student_scale_lr_mult=0"
  "soft_weight_half --set soft_loss_weight=0.5"
  "stage2_x2 --iters $TEACHER_ITERS $STAGE1_ITERS $((2 * STAGE2_ITERS)) $BASELINE_ITERS"
)
seed_study() {  # SEED TEACHER: the stage-2 variants, in the seed's folder
  local seed=$1 teacher=$2 variant name
  for variant in "${STUDY_VARIANTS[@]}"; do
    read -r name args <<<"$variant"
    echo "seed $seed: study: stage 2 with $args"
    # shellcheck disable=SC2086  # the variant's arguments split on purpose
    seed_netgen "study/$name" "$seed" $args
    $CLI surgery --net "study/$name/kd/train_stage2.prototxt" --from teacher:$teacher \
      --from same:snapshots/kd/stage1_iter_$STAGE1_ITERS.caffemodel -o "init/study_$name.caffemodel" | tail -1
    $CLI train "study/$name/kd/solver_stage2.prototxt" --weights "init/study_$name.caffemodel" \
      --run-dir "runs/study_$name" --set snapshot_prefix="snapshots/study/$name"
  done
  seed_study_stage1 "$seed" "$teacher"
  # the soft targets at T = 1, as at the release's T = 0.5 (eval/soft_targets_val)
  $CLI eval cls --net study/teacher_T1/kd/train_stage2.prototxt --weights init/study_teacher_T1.caffemodel \
    --blob image_level_score --list "$LISTS/val.txt" --classes "$LISTS/val.classes.txt" \
    --json eval/soft_targets_val_T1.json --save-scores eval/soft_targets_val_T1.npy | tail -1
}

# STUDY=1, settings chosen before the teacher was frozen (README: "How the
# demo's settings were chosen"), measured again: stage 1 half as long, and the
# python distillation losses; each variant runs its own stage 1 (from the
# same pretrained backbone and teacher; run folder runs/stage1_of_<name>),
# then its stage 2 into runs/study_<name>, scored on the validation split.
STAGE1_VARIANTS=(
  "stage1_half --iters $TEACHER_ITERS $((STAGE1_ITERS / 2)) $STAGE2_ITERS $BASELINE_ITERS"
  "kd_python --set kd_losses=python --set mimic_top_k=16"
)
seed_study_stage1() {  # SEED TEACHER
  local seed=$1 teacher=$2 variant name stage1_iters
  for variant in "${STAGE1_VARIANTS[@]}"; do
    read -r name args <<<"$variant"
    echo "seed $seed: study: stages 1 and 2 with $args"
    # shellcheck disable=SC2086  # the variant's arguments split on purpose
    seed_netgen "study/$name" "$seed" $args
    stage1_iters=$(sed -n 's/^max_iter: //p' "study/$name/kd/solver_stage1.prototxt")
    $CLI surgery --net "study/$name/kd/train_stage1.prototxt" --from same:"$PRETRAIN" --from teacher:$teacher \
      -o "init/study_${name}_stage1.caffemodel" | tail -1
    $CLI train "study/$name/kd/solver_stage1.prototxt" --weights "init/study_${name}_stage1.caffemodel" \
      --run-dir "runs/stage1_of_$name" --set snapshot_prefix="snapshots/study/${name}_stage1"
    $CLI surgery --net "study/$name/kd/train_stage2.prototxt" --from teacher:$teacher \
      --from same:"snapshots/study/${name}_stage1_iter_$stage1_iters.caffemodel" -o "init/study_$name.caffemodel" | tail -1
    $CLI train "study/$name/kd/solver_stage2.prototxt" --weights "init/study_$name.caffemodel" \
      --run-dir "runs/study_$name" --set snapshot_prefix="snapshots/study/$name"
  done
}

seed_ablation() {  # SEED TEACHER: the paper's ablation rows, in the seed's folder
  # Each row is trained from exactly the weights of the row it is compared
  # with, with the same solver for stage 2's iterations (README: the ablation).
  local seed=$1 teacher=$2
  local short=(--max-iter "$STAGE2_ITERS")   # netgen's schedule for stage 2's iterations
  echo "seed $seed: ablation: stage 1 only, then $STAGE2_ITERS iterations on labels (stage 2's start and budget)"
  $CLI train nets/kd/solver_baseline.prototxt --weights init/stage2.caffemodel \
    --run-dir runs/ablation_stage1_only "${short[@]}" --set snapshot_prefix=snapshots/ablation/stage1_only
  echo "seed $seed: ablation: stage 2 only (from the pretrained backbone, no stage 1)"
  $CLI surgery --net nets/kd/train_stage2.prototxt --from same:"$PRETRAIN" --from teacher:$teacher \
    -o init/stage2_only.caffemodel | tail -1
  $CLI train nets/kd/solver_stage2.prototxt --weights init/stage2_only.caffemodel \
    --run-dir runs/ablation_stage2_only --set snapshot_prefix=snapshots/ablation/stage2_only
  echo "seed $seed: ablation: labels only for $STAGE2_ITERS iterations from stage 2 only's start (its control)"
  $CLI train nets/kd/solver_baseline.prototxt --weights init/stage2_only.caffemodel \
    --run-dir runs/ablation_labels_short "${short[@]}" --set snapshot_prefix=snapshots/ablation/labels_short
  local name net
  for name in stage1_only stage2_only labels_short; do
    net=nets/kd/student_baseline.prototxt; [ $name = stage2_only ] && net=nets/kd/train_stage2.prototxt
    eval_cls ablation_$name $net snapshots/ablation/${name}_iter_$STAGE2_ITERS.caffemodel fc8_mscoco --sigmoid
  done
}

seed_speed() {  # SEED: time its teacher and student; run when no seed trains
  local seed=$1 dir=$OUT/seed$1
  cd "$dir"
  local test_images; test_images=$(sed 's/$/.jpg/; s|^|'"$OUT"'/data/voc/JPEGImages/|' "$OUT/data/voc/ImageSets/Main/test.txt")
  echo -n "seed $seed: "
  $CLI speed --teacher nets/wsddn/wsddn_deploy.prototxt snapshots/wsddn/wsddn_iter_$TEACHER_ITERS.caffemodel \
    --student nets/kd/student_deploy.prototxt student_deploy.caffemodel --max-images 20 \
    --json eval/speed.json $test_images
}

step "seeds 1..$SEEDS: teacher, stage 1, stage 2, baseline, evaluation (up to $JOBS seeds side by side)"
# Each seed's stages run one after another in one process with one BLAS
# thread; the seeds share the two cores (three side by side keep both busy
# while one of them is between stages).
first=1
while [ "$first" -le "$SEEDS" ]; do
  last=$((first + JOBS - 1)); [ "$last" -le "$SEEDS" ] || last=$SEEDS
  pids=()
  for ((s = first + 1; s <= last; s++)); do
    mkdir -p "$OUT/seed$s"
    echo "(seed $s runs beside seed $first; its output: $OUT/seed$s/log.txt)"
    ( CAFFE_MLIC_PROGRESS=never seed_pipeline "$s" ) > "$OUT/seed$s/log.txt" 2>&1 &
    pids+=($!)
  done
  ( seed_pipeline "$first" )
  for ((s = first + 1; s <= last; s++)); do
    wait "${pids[$((s - first - 1))]}" || { tail -30 "$OUT/seed$s/log.txt"; exit 1; }
    echo "seed $s done:"; grep -E "^mAP|^AP07" "$OUT/seed$s/log.txt" || true
  done
  first=$((last + 1))
done

step "speed: each seed's teacher and student on the same 20 test images, one after another on idle cores"
# Timed here, not in the seed's pipeline: there the other seeds' training
# would share the cores and the ratio would depend on when it ran.
for ((s = 1; s <= SEEDS; s++)); do ( seed_speed "$s" ); done

step "report"
$CLI report "$OUT" $STRICT
