#!/usr/bin/env bash
# The local demo (`make demo`): train two versions of the example model, deploy 1.0.0, then
# roll 1.1.0 out as a gated canary under ~200 req/s of load, through every gate to 100%.
# The engine keeps running afterwards: `mlops -C build/demo status`, `mlops -C build/demo down`.
source "$(dirname "$0")/demo-lib.sh"

say "fresh workspace"
fresh_workspace
deploy_v1
mlops status

say "train 1.1.0 and plan its canary rollout"
train 1.1.0
write_spec 1.1.0 "$NAME-1.1.0.onnx" 1.1.0
mlops plan specs/ -o plans/v2.json

say "apply the canary while load runs (200 req/s): 25% -> 50% -> 100%, gates every 2s"
load_in_background 90
set +e
mlops apply plans/v2.json
code=$?
set -e
wait_load

say "status"
mlops status
echo
if [ "$code" -ne 0 ]; then echo "apply exited $code (3 rolled back, 4 paused)"; exit "$code"; fi
echo "Done. The engine is still serving on 127.0.0.1:$PORT; stop it with: mlops -C $DEMO down"
