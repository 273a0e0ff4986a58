"""The YAML reader on its own: limits hold and problems are data, never exceptions."""

from __future__ import annotations

from pathlib import Path

from mlops.spec import safeyaml


def test_keys_are_field_names_as_written() -> None:
    (document,) = safeyaml.read_text("on: yes\n1: x\nnull: ~\n").documents
    assert document.data == {"on": True, "1": "x", "null": None}


def test_deep_nesting_is_refused() -> None:
    result = safeyaml.read_text("a: " + "[" * 200 + "]" * 200 + "\n")
    assert not result.documents
    assert "nested deeper" in result.problems[0].message


def test_composition_recursion_is_a_problem_not_a_crash() -> None:
    result = safeyaml.read_text("[" * 20_000)
    assert result.problems and not result.documents


def test_alias_budget_counts_expanded_values() -> None:
    # 9 aliases of a 9-element list: 90 values after expansion, well inside the budget.
    text = (
        'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\nb: [' + ", ".join(["*a"] * 9) + "]\n"
    )
    (document,) = safeyaml.read_text(text).documents
    assert len(document.data["b"]) == 9 and document.data["b"][0] == ["x"] * 9


def test_non_printable_characters_are_reported() -> None:
    result = safeyaml.read_bytes(b"a: b\nc: \x07\n")
    assert result.problems[0].mark[0] == 2


def test_non_regular_file_is_not_read() -> None:
    result = safeyaml.read_file(Path("/dev/zero"))
    assert "not a regular file" in result.problems[0].message
