"""The one property every parser of untrusted input shares: it returns a value or raises the
project's error type with one-line messages; never another exception."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from hypothesis import strategies as st

from mlops import errors

T = TypeVar("T")

MAX_MESSAGE = 2000


class Refused(Exception):
    """Raised by `parse` when the parser refused the input (properly)."""


def parse(call: Callable[[], T]) -> T:
    """`call()`, or Refused if it raised an MlopsError whose lines are all one-line
    problems; any other exception propagates (hypothesis shrinks and reports it)."""
    try:
        return call()
    except errors.MlopsError as exc:
        problems = getattr(exc, "problems", None)
        lines = [str(p) for p in problems] if problems else [exc.message]
        assert lines, f"{type(exc).__name__} without a message"
        for line in lines:
            assert line.strip(), f"{type(exc).__name__} with an empty message"
            assert "\n" not in line and "\r" not in line, f"multi-line: {line!r}"
            assert len(line) <= MAX_MESSAGE, f"{len(line)}-character message"
        raise Refused(lines[0]) from None


def refused(call: Callable[[], object]) -> bool:
    """Whether `call()` refused its input (see `parse`)."""
    try:
        parse(call)
    except Refused:
        return True
    return False


@st.composite
def mutated(draw: st.DrawFn, text: str, max_edits: int = 8) -> str:
    """`text` with a few random edits (delete, insert, replace, duplicate a slice): inputs
    that stay close to a valid document, where the interesting parser paths are."""
    for _ in range(draw(st.integers(1, max_edits))):
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        j = draw(st.integers(i, min(len(text), i + 40)))
        op = draw(st.sampled_from(("delete", "insert", "replace", "duplicate")))
        piece = draw(st.text(max_size=12))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + piece + text[i:]
        elif op == "replace":
            text = text[:i] + piece + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


# JSON values of every kind a document can hold, including numbers at the edges.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
