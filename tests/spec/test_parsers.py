"""libyaml and the pure-Python parser give the reader the same result for every input.

The reader composes on libyaml when it is installed and reads again with the pure-Python
parser when libyaml raises; these tests hold both paths to the same documents, positions and
problems, so nothing a user sees depends on which parser is installed.
"""

from __future__ import annotations

import pytest
import yaml

from mlops.spec import safeyaml
from tests.spec.conftest import GOOD
from tests.spec.test_bad_specs import CASES, Case, billion_laughs

# The reader composes on yaml.CSafeLoader exactly when PyYAML was built with libyaml.
needs_libyaml = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")

TRICKY = [
    GOOD,
    GOOD + "---\n" + GOOD,
    "on: yes\n1: x\nnull: ~\n",
    "a: &a {x: 1, y: [1, 2]}\nb: *a\nc: {<<: *a, z: 3}\n",
    "a: &r [*r]\n",  # recursive alias: composes, then refused while converting
    "a: !!python/object:os.system x\n",
    "a: !custom {b: 1}\n",
    "a: 1\na: 2\n",
    "when: 2026-01-01\nf: 1e3\ng: .inf\nh: 0x1F\ni: '007'\nj: |\n  text\n  more\n",
    "? [a, b]\n: complex key\n",
    "\u00e9t\u00e9: caf\u00e9\nx:    \u4e2d\u6587: [1]\n",
    "a: 'unterminated\n",
    "a: [1, 2\n",
    "a:\n\t- tab\n",
    "a: \x07\n",
    "- " * 2000 + "x\n",
    "[" * 2000 + "]" * 2000 + "\n",
    billion_laughs(),
    "",
    "# only a comment\n",
    "--- 1\n--- [2]\n--- {a: 3}\n...\n",
    "a: x\u2028y\nb:\n  c: 1\n",  # Unicode line breaks: lines must count the same
    'a: "x\x85y"\nb: 2\n',
    "a: 1\r\nb:\r\n  - 2\r\n",
    "\ufeffa: 1\n",
    "a: 'x\n\n  y'\nb: 3\n",
    "a:   # c\n  b: [1,\n    2]\n",
]


def _both(text: str) -> tuple[safeyaml.ReadResult | None, safeyaml.ReadResult]:
    return safeyaml._read_fast(text), safeyaml._read_pure(text)


@needs_libyaml
@pytest.mark.parametrize("text", TRICKY, ids=range(len(TRICKY)))
def test_fast_reader_agrees_or_defers(text: str) -> None:
    fast, pure = _both(text)
    if fast is not None:
        assert fast == pure
    assert safeyaml.read_text(text) == pure


@needs_libyaml
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_bad_spec_reads_the_same(case: Case) -> None:
    content = case.content
    if not isinstance(content, str):
        return  # bytes and absent files never reach a parser (see test_bad_specs)
    fast, pure = _both(content)
    if fast is not None:
        assert fast == pure
    assert safeyaml.read_text(content) == pure


@needs_libyaml
def test_valid_specs_take_the_fast_path() -> None:
    fast = safeyaml._read_fast(GOOD)
    assert fast is not None and fast.documents and not fast.problems
    assert fast.documents[0].positions.of(("spec", "model", "version")) != (1, 1)
