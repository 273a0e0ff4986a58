"""`mlops policy check PLANFILE`: SRE policy rules over a saved plan."""

from __future__ import annotations

import click

from mlops import api, cli, errors
from mlops.commands import common

CHECK_EPILOG = """\b
Examples:
  mlops plan specs/ -o plans/release.json
  mlops policy check plans/release.json              rules in policies/*.yaml
  mlops policy check plans/release.json --policy ops/policies --strict
  mlops policy check plans/release.json --format json | jq .violations

Rules come from policies/*.yaml in the workspace, or --policy DIR (or one file); without
either, the built-in defaults apply. The rule language is in docs/policy.md.
Exit codes: 0 pass, 1 violations (warnings only with --strict) or an error.
"""


class PolicyViolationError(errors.MlopsError):
    """The plan breaks at least one policy rule."""


@click.group(
    short_help="SRE policy rules over plans.",
    epilog="Example:\n\n  mlops policy check plans/release.json --policy policies/",
)
def command() -> None:
    """SRE policy rules over saved plans (rule language: docs/policy.md)."""


@command.command("check", epilog=CHECK_EPILOG)
@click.argument("planfile", type=click.Path(dir_okay=False))
@click.option(
    "--policy",
    "policy_dir",
    type=click.Path(),
    default=None,
    help="Policy directory or file (default: the workspace's policies/, else built-in rules).",
)
@common.format_option("text for people, json for tools (stable, documented in docs/policy.md).")
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.pass_context
def check(
    ctx: click.Context, planfile: str, policy_dir: str | None, fmt: str, strict: bool
) -> None:
    """Check a saved plan against SRE policy rules."""
    run = cli.run_context(ctx)
    outcome = api.policy_check(planfile, policy=policy_dir, workspace=run.workspace)
    if fmt == "json":
        common.echo_json(outcome.to_json(strict=strict))
    else:
        click.echo(_text(outcome, strict=strict))
    result = outcome.result
    if not result.passed(strict=strict):
        counted = f"{len(result.errors)} error(s), {len(result.warnings)} warning(s)"
        raise PolicyViolationError(f"policy check failed: {counted}")


def _text(outcome: api.PolicyOutcome, *, strict: bool) -> str:
    result = outcome.result
    sources = ", ".join(outcome.sources)
    lines = [f"Policy check of {outcome.plan}: {result.rules_checked} rule(s) from {sources}"]
    for v in result.violations:
        lines.append(f"{v.severity.upper():<8} {v.rule}  {v.model}: {v.detail}")
        lines.append(f"{'':<8} {v.message}")
    for w in result.waived:
        v = w.violation
        lines.append(f"{'WAIVED':<8} {v.rule}  {v.model}: {v.detail}")
        lines.append(f"{'':<8} by {w.by} until {w.expires}: {w.reason}")
    lines.extend(f"{'NOTE':<8} {note}" for note in result.notes)
    for a in result.approvals:
        state = "MET" if a.met else "PENDING"
        lines.append(f"{state:<8} {a.rule}: {a.describe()} (apply checks this)")
    models = len(result.models)
    if result.passed(strict=strict):
        warned = f", {len(result.warnings)} warning(s)" if result.warnings else ""
        lines.append(f"Policy check passed: {models} model(s){warned}.")
    return "\n".join(lines)
