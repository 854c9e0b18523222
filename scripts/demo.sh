#!/usr/bin/env bash
# The main job on the bundled sample corpus: a small TPE + ASHA sweep (every trial in MLflow),
# export of the best trial, prediction on the sample's valid split (which no trial selected on),
# and the official scores.
# Each run is a new sweep (timestamped) in the same MLflow store; best-model is the latest one's.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PROFNER=.venv/bin/profner
OUT=$(realpath -m "${DEMO_OUT:-runs/demo}")  # absolute: the stores below take full paths
SAMPLE=$(.venv/bin/python -c "from profner_models.sample import PROFNER_SAMPLE; print(PROFNER_SAMPLE)")
mkdir -p "$OUT"

$PROFNER tune demo --num-samples 4 --max-concurrent 2 --name "demo-$(date +%Y%m%d-%H%M%S)" --storage "$OUT/ray_results" \
  --tracking-uri "sqlite:///$OUT/mlflow.db" --export "$OUT/best-model"
$PROFNER predict --model "$OUT/best-model" --input "$SAMPLE/subtask-2/brat/valid" \
  --out-7a "$OUT/pred-7a.tsv" --out-7b "$OUT/pred-7b.tsv"
echo
echo "Scores of the best model on the sample's 100 valid tweets, which no trial trained on or was"
echo "selected on (the trials selected on a seeded 20% of the 300 train tweets):"
$PROFNER evaluate --task 7a --gold "$SAMPLE/subtask-1/valid.tsv" --pred "$OUT/pred-7a.tsv"
$PROFNER evaluate --task 7b --gold "$SAMPLE/subtask-2/tsv/valid.tsv" --pred "$OUT/pred-7b.tsv"
echo
echo "MLflow runs: $PROFNER ui --tracking-uri sqlite:///$OUT/mlflow.db"
echo "Serve the best model: $PROFNER serve $OUT/best-model"
