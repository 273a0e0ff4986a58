"""Read policy files with the spec loader's safe YAML reader; every problem reported at once.

Safe means: no Python tags, duplicate keys refused, size and alias-expansion caps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from mlops import errors
from mlops.policy import rules
from mlops.spec import safeyaml

DEFAULT_DIR = "policies"
BUILTIN = "builtin:default.yaml"


class PolicyFileError(errors.MlopsError):
    """A policy file is unreadable or invalid; `problems` lists each as `file: field: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# (`rules` is also a field of PolicySet: inside the class body the name means the field.)
_Waiver = rules.Waiver


@dataclass(frozen=True)
class PolicySet:
    rules: tuple[rules.Rule, ...]
    sources: tuple[str, ...]  # files read, or BUILTIN
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # approver groups
    waivers: tuple[_Waiver, ...] = ()


def policy_files(path: Path) -> list[Path]:
    """The YAML files of a policy directory (not recursive, sorted), or the file itself."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise errors.UsageError(f"policy path {str(path)!r} does not exist")
    return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_policies(path: Path) -> PolicySet:
    files = policy_files(path)
    if not files:
        raise errors.UsageError(f"no policy files (*.yaml) in {str(path)!r}")
    return parse_policies({str(f): safeyaml.read_file(f) for f in files})


def load_builtin() -> PolicySet:
    """The default rules shipped with mlops (same content as the repository's policies/)."""
    text = resources.files("mlops.policy").joinpath("default.yaml").read_text(encoding="utf-8")
    return parse_policies({BUILTIN: safeyaml.read_text(text)})


def parse_policies(sources: dict[str, safeyaml.ReadResult]) -> PolicySet:
    """Parse {source name: YAML read result} into one rule set; ids are unique across files."""
    problems: list[str] = []
    found: list[rules.Rule] = []
    first_seen: dict[str, str] = {}
    groups: dict[str, tuple[str, ...]] = {}
    waivers: list[tuple[str, rules.Waiver]] = []
    for source, read in sources.items():
        problems.extend(f"{source}:{p.mark[0]}:{p.mark[1]}: {p.message}" for p in read.problems)
        if not read.documents and not read.problems:
            problems.append(f"{source}: empty policy file")
        for doc in read.documents:
            if not isinstance(doc.data, dict):
                line, column = doc.start
                problems.append(f"{source}:{line}:{column}: a policy is a mapping with 'rules'")
                continue
            try:
                policy = rules.PolicyFile.model_validate(doc.data)
            except ValidationError as exc:
                problems.extend(_describe(source, doc, exc))
                continue
            for index, rule in enumerate(policy.rules):
                if rule.id in first_seen:
                    line, column = doc.positions.of(("rules", index, "id"))
                    problems.append(
                        f"{source}:{line}:{column}: rules[{index}].id: duplicate id "
                        f"{rule.id!r} (also in {first_seen[rule.id]})"
                    )
                    continue
                first_seen[rule.id] = source
                found.append(rule)
            for name, members in policy.groups.items():
                if name in groups:
                    problems.append(f"{source}: groups.{name}: defined more than once")
                groups[name] = tuple(members)
            waivers.extend((source, waiver) for waiver in policy.waivers)
    problems.extend(_references(found, groups, waivers, first_seen))
    if problems:
        raise PolicyFileError(problems)
    if not found:
        raise errors.UsageError(f"the policy files define no rules: {', '.join(sources)}")
    return PolicySet(
        rules=tuple(found),
        sources=tuple(sources),
        groups=groups,
        waivers=tuple(w for _, w in waivers),
    )


def _references(
    found: list[rules.Rule],
    groups: Mapping[str, tuple[str, ...]],
    waivers: list[tuple[str, rules.Waiver]],
    ids: Mapping[str, str],
) -> list[str]:
    """Names that must exist: the group of an approval rule, the rule of a waiver."""
    problems = []
    for rule in found:
        need = rule.require_approvals
        if need is not None and need.group is not None and need.group not in groups:
            problems.append(
                f"rule {rule.id}: require_approvals.group {need.group!r} is not defined"
            )
    for source, waiver in waivers:
        if waiver.rule not in ids:
            problems.append(f"{source}: waivers: rule {waiver.rule!r} is not defined")
    return problems


def _describe(source: str, doc: safeyaml.Document, exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
        line, column = doc.positions.of(loc)
        # repr() for a key with a line break in it: each problem stays one line (tests/fuzz)
        shown = [p if isinstance(p, int) or p.isprintable() else repr(p) for p in loc]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in shown).lstrip(".")
        message = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{source}:{line}:{column}: {where or 'policy'}: {message}")
    return lines
