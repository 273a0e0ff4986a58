# Shared by scripts/demo.sh and scripts/demo-rollback.sh (sourced, not run).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
DEFAULT_DEMO="$REPO/build/demo"  # build/ is git-ignored
DEMO="${DEMO_DIR:-$DEFAULT_DEMO}"
PORT="${DEMO_PORT:-8480}"
NAME=fraud-scorer

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
mlops() { "$PY" -c 'from mlops.cli import main; main()' -C "$DEMO" "$@"; }

baseline() {  # the accuracy examples/train.py measured for a version
  "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["value"])' \
    "$DEMO/models/$NAME-$1.json"
}

MARKER=.mlops-demo-workspace  # written into every workspace these scripts create

fresh_workspace() {
  # Only a directory these scripts made is replaced, and never silently: DEMO_DIR may point
  # anywhere, and rm -rf of someone's own directory must not happen.
  if [ -e "$DEMO" ] && [ ! -f "$DEMO/$MARKER" ] && [ "$DEMO" != "$DEFAULT_DEMO" ]; then
    if [ -z "$(ls -A "$DEMO" 2>/dev/null)" ] && [ -d "$DEMO" ]; then
      rmdir "$DEMO"
    else
      echo "error: $DEMO exists and is not a demo workspace (no $MARKER): not deleting it;" \
        "remove it yourself or set DEMO_DIR to another directory" >&2
      return 1
    fi
  fi
  if [ -e "$DEMO" ]; then
    echo "replacing the previous demo workspace $DEMO (its engine is stopped first)"
    if [ -d "$DEMO/.mlops" ]; then
      mlops down >/dev/null 2>&1 || true
    fi
    rm -rf "$DEMO"
  fi
  mkdir -p "$DEMO/specs" "$DEMO/plans"
  echo "created by scripts/demo-lib.sh; make demo and make demo-rollback replace it" \
    >"$DEMO/$MARKER"
  local metrics=builtin
  if command -v prometheus >/dev/null 2>&1; then metrics=prometheus; fi
  cat >"$DEMO/mlops.yaml" <<YAML
target: local
metrics: $metrics
serve: {host: 127.0.0.1, port: $PORT}
YAML
  echo "workspace $DEMO (metrics: $metrics, engine on 127.0.0.1:$PORT)"
}

train() {  # train VERSION [VARIANT]
  "$PY" "$REPO/examples/train.py" --version "$1" --variant "${2:-good}" --out "$DEMO" >/dev/null
  echo "trained $NAME $1 (${2:-good}): accuracy $(baseline "$1")"
}

write_spec() {  # write_spec VERSION ARTIFACT BASELINE_VERSION
  cat >"$DEMO/specs/$NAME.yaml" <<YAML
apiVersion: mlops/v1
kind: ModelDeployment
metadata: {name: $NAME}
spec:
  model:
    version: $1
    artifact: ../models/$2
    signature:
      inputs: [{name: input, dtype: FP32, shape: [-1, 30]}]
      outputs:
        - {name: label, dtype: INT64, shape: [-1]}
        - {name: probabilities, dtype: FP32, shape: [-1, 2]}
    baseline: {metric: accuracy, value: $(baseline "$3"), p99_ms: 25}
    validation: {data: ../data/$NAME-val.npz, tolerance: 0.005}
  serving:
    replicas: {min: 2, max: 2}
    batching: {max_batch_size: 64, max_queue_delay_ms: 2}
  rollout:
    strategy: canary
    steps: [{weight: 25, hold: 8s}, {weight: 50, hold: 8s}, {weight: 100}]
    interval: 2s
    # p99 may grow 200%: the demo shares two cores with its own load generator.
    gates:
      - {metric: error_rate, max: 0.01}
      - {metric: latency_p99, max_increase: 2.0}
    min_requests: 40
    consecutive_errors: 4
    keep_previous: 2s
YAML
}

deploy_v1() {
  train 1.0.0
  write_spec 1.0.0 "$NAME-1.0.0.onnx" 1.0.0
  say "validate and plan 1.0.0"
  mlops validate specs/
  mlops plan specs/ -o plans/v1.json
  say "apply 1.0.0 (first deployment: register, verify, conformance test, load, 100%)"
  mlops apply --auto-approve plans/v1.json
}

rollback_scenario() {  # rollback_scenario NAME: sets POISON_EVERY and SCENARIO_TEXT
  case "$1" in
    erroring)
      POISON_EVERY=20
      SCENARIO_TEXT="every 20th request carries an out-of-range row, on which the erroring"
      SCENARIO_TEXT+=" canary fails: its error-rate gate rolls it back"
      ;;
    slow)
      POISON_EVERY=0
      SCENARIO_TEXT="the slow canary answers every request, late: its latency_p99 gate"
      SCENARIO_TEXT+=" (p99 vs the stable version's) rolls it back"
      ;;
    *)
      echo "error: SCENARIO must be erroring or slow, not '$1'" >&2
      return 1
      ;;
  esac
}

load_in_background() {  # load_in_background SECONDS [POISON_EVERY]
  "$PY" -m mlops.loadgen --url "http://127.0.0.1:$PORT" --model "$NAME" --rate 200 \
    --duration "$1" --poison-every "${2:-0}" >"$DEMO/loadgen.txt" 2>&1 &
  LOADGEN_PID=$!
  sleep 1
}

wait_load() {
  kill -TERM "$LOADGEN_PID" 2>/dev/null || true   # stop early: the rollout is over
  wait "$LOADGEN_PID" 2>/dev/null || true
  cat "$DEMO/loadgen.txt"
}
