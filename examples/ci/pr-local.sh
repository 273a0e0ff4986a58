#!/usr/bin/env bash
# The pull-request workflow of examples/ci/github-actions.yml, run locally against a workspace.
#
#   pr-local.sh plan    WORKSPACE          validate, plan (--detailed-exitcode), policy check,
#                                          the PR comment (markdown) and the saved plan
#   pr-local.sh approve WORKSPACE NAME...  sign off the saved plan (as the reviewers would)
#   pr-local.sh comment WORKSPACE          the comment again, from the saved plan (approvals)
#   pr-local.sh apply   WORKSPACE          apply exactly the saved plan (refused when stale,
#                                          unapproved, or changed after its approvals)
#
# Environment: MLOPS (the command, default `mlops`), PLAN (the saved plan, relative to the
# workspace, default plans/pr.json), COMMENT (where the comment goes, default PLAN with .md).
# Exit codes: 0 done (plan: no changes or a passing plan), 1 an error or a failed policy
# check (the comment is still written), the apply's own codes (3 rolled back, 4 paused).
set -euo pipefail

usage() {
  echo "usage: $0 plan|approve|comment|apply WORKSPACE [NAME...]" >&2
  exit 64
}
[ $# -ge 2 ] || usage
step=$1
workspace=$2
shift 2
[ -f "$workspace/mlops.yaml" ] || { echo "error: $workspace has no mlops.yaml" >&2; exit 1; }

read -r -a mlops <<< "${MLOPS:-mlops}"
plan=${PLAN:-plans/pr.json}
case "$plan" in
  /* | *..*) echo "error: PLAN must be a path inside the workspace: $plan" >&2; exit 1 ;;
esac
comment=${COMMENT:-$workspace/${plan%.json}.md}
run() { "${mlops[@]}" -C "$workspace" "$@"; }

case "$step" in
  plan)
    [ $# -eq 0 ] || usage
    echo "== validate"
    run validate
    echo "== plan"
    mkdir -p "$workspace/$(dirname "$plan")"
    set +e
    run plan --detailed-exitcode -o "$plan" > /dev/null
    code=$?
    set -e
    case $code in
      0)
        echo "No changes: nothing to review."
        printf '<!-- mlops-plan-comment -->\n### mlops plan: no changes\n\nLive state matches the specs.\n' > "$comment"
        rm -f "$workspace/$plan"  # nothing to apply on merge
        exit 0 ;;
      2) ;;
      *) exit "$code" ;;
    esac
    echo "== policy check"
    policy=0
    run policy check "$plan" || policy=$?
    echo "== comment: $comment"
    run show "$plan" --format markdown --with-policy > "$comment"
    # A failed policy check fails the pull request, after its comment says why.
    exit "$policy" ;;
  approve)
    [ $# -ge 1 ] || usage
    for name in "$@"; do
      run approve "$plan" --by "$name"
    done ;;
  comment)
    [ $# -eq 0 ] || usage
    run show "$plan" --format markdown --with-policy > "$comment"
    echo "comment: $comment" ;;
  apply)
    [ $# -eq 0 ] || usage
    [ -f "$workspace/$plan" ] || { echo "error: no saved plan $plan: nothing was planned" >&2; exit 1; }
    run apply "$plan" ;;
  *)
    usage ;;
esac
