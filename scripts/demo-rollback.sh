#!/usr/bin/env bash
# Automatic rollback: 1.0.0 serves; 1.1.0 is a canary that fails on out-of-range inputs
# (an erroring model built by scripts/model_variants.py; SCENARIO=slow uses a slow one).
# Under load, its error-rate (or p99) gate fails at the first step and apply rolls it back:
# weight 0 on every replica, unloaded, aliases back on 1.0.0, 1.1.0 marked rejected, exit 3.
source "$(dirname "$0")/demo-lib.sh"
SCENARIO="${SCENARIO:-erroring}"
rollback_scenario "$SCENARIO"  # before anything is touched: an unknown name changes nothing

say "fresh workspace"
fresh_workspace
deploy_v1

say "train 1.1.0 and derive a $SCENARIO variant of it"
train 1.1.0
"$PY" "$REPO/scripts/model_variants.py" "$SCENARIO" \
  "$DEMO/models/$NAME-1.1.0.onnx" "$DEMO/models/$NAME-1.1.0-$SCENARIO.onnx"
write_spec 1.1.0 "$NAME-1.1.0-$SCENARIO.onnx" 1.1.0
mlops plan specs/ -o plans/v2.json

say "apply the canary under load ($SCENARIO_TEXT)"
load_in_background 40 "$POISON_EVERY"
set +e
mlops apply plans/v2.json
code=$?
set -e
wait_load
echo "apply exit code: $code (3 = rolled back automatically)"

say "status"
mlops status
test "$code" -eq 3
