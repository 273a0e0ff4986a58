"""Safe YAML reading that remembers where every key and value came from.

A YAML parser composes the node graph; we turn nodes into plain Python values ourselves,
so that we can record positions, refuse duplicate keys and non-plain tags, and bound the work
done for aliases (a "billion laughs" document composes cheaply but expands exponentially).
Nothing here raises on bad input: every problem becomes a `YamlProblem` in the result.

Composing runs on libyaml (PyYAML's C parser) when it is installed: over ten times faster than
PyYAML's pure-Python parser, with the same nodes, tags and marks. Its error messages are worded
differently, so any input the C parser cannot read is read again by the pure-Python parser,
whose result is the one reported: error messages do not depend on which parser is installed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlops.spec.yamltypes import Document, FieldPath, Mark, Positions, ReadResult, YamlProblem

try:
    from yaml import CSafeLoader as _CLoader
except ImportError:  # PyYAML built without libyaml: the pure-Python parser does everything
    _CLoader = None  # type: ignore[assignment,misc]

__all__ = ["Document", "FieldPath", "Mark", "Positions", "ReadResult", "YamlProblem"]
__all__ += ["read_bytes", "read_file", "read_text"]

MAX_FILE_BYTES = 1 << 20
# Values per file after alias expansion; a spec has a few hundred, so this is generous.
MAX_VALUES = 20_000
MAX_DEPTH = 64

_T = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_T + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_SEQ_TAG, _MAP_TAG, _MERGE_TAG = _T + "seq", _T + "map", _T + "merge"


class _ExpansionLimit(Exception):
    def __init__(self, problem: YamlProblem) -> None:
        self.problem = problem


def _mark(node: Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Converter:
    """Converts the documents a loader composes, recording positions as it goes.

    `loader` is a PyYAML loader (pure-Python or libyaml) with the safe constructors and the
    standard resolver: it composes nodes and builds plain scalars; everything else is ours.
    """

    def __init__(self, loader: yaml.SafeLoader | yaml.CSafeLoader) -> None:
        self.loader = loader
        self.budget = MAX_VALUES
        self.problems: list[YamlProblem] = []
        self._values: dict[FieldPath, Mark] = {}
        self._keys: dict[FieldPath, Mark] = {}
        self._containers: set[FieldPath] = set()
        self._active: set[int] = set()

    def next_document(self) -> Document | None:
        """Convert the next document, or None at the end of the stream."""
        if not self.loader.check_node():
            return None
        node = self.loader.get_node()
        assert node is not None
        self._values, self._keys, self._containers = {}, {}, set()
        data = self.convert(node, (), 0)
        positions = Positions(dict(self._values), dict(self._keys), frozenset(self._containers))
        return Document(data=data, positions=positions, start=_mark(node))

    def convert(self, node: Node, path: FieldPath, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _ExpansionLimit(
                YamlProblem(
                    f"more than {MAX_VALUES} values after alias expansion "
                    "(aliases that expand exponentially are refused)",
                    _mark(node),
                )
            )
        if depth > MAX_DEPTH:
            raise _ExpansionLimit(YamlProblem(f"nested deeper than {MAX_DEPTH}", _mark(node), path))
        self._values.setdefault(path, _mark(node))
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if id(node) in self._active:
            raise _ExpansionLimit(YamlProblem("recursive alias", _mark(node), path))
        self._containers.add(path)
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                self._check_tag(node, {_SEQ_TAG}, path)
                return [
                    self.convert(child, (*path, i), depth + 1) for i, child in enumerate(node.value)
                ]
            assert isinstance(node, MappingNode)
            self._check_tag(node, {_MAP_TAG}, path)
            return self._mapping(node, path, depth)
        finally:
            self._active.discard(id(node))

    def _check_tag(self, node: Node, allowed: set[str], path: FieldPath) -> bool:
        if node.tag in allowed:
            return True
        self.problems.append(
            YamlProblem(
                f"YAML tag {node.tag!r} is not allowed (plain YAML only; nothing is executed)",
                _mark(node),
                path,
            )
        )
        return False

    def _scalar(self, node: ScalarNode, path: FieldPath) -> Any:
        if not self._check_tag(node, _SCALAR_TAGS, path):
            return None
        try:
            # The tag is one of the plain scalar tags, each with a SafeConstructor method.
            return SafeConstructor.yaml_constructors[node.tag](self.loader, node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            self.problems.append(YamlProblem(f"invalid value: {exc}", _mark(node), path))
            return None

    def _mapping(self, node: MappingNode, path: FieldPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode) or not self._check_tag(
                key_node, _SCALAR_TAGS, path
            ):
                if not isinstance(key_node, ScalarNode):
                    self.problems.append(
                        YamlProblem("mapping keys must be plain strings", _mark(key_node), path)
                    )
                continue
            # Keys are field names: use the text as written (`on:` stays "on", not True).
            key = str(key_node.value)
            key_path = (*path, key)
            if key in result:
                first = self._keys.get(key_path, (0, 0))[0]
                self.problems.append(
                    YamlProblem(
                        f"duplicate key {key!r} (first at line {first})", _mark(key_node), key_path
                    )
                )
                continue
            self._keys.setdefault(key_path, _mark(key_node))
            result[key] = self.convert(value_node, key_path, depth + 1)
        for merge in merges:
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self.problems.append(
                        YamlProblem("a merge key ('<<') needs a mapping", _mark(source), path)
                    )
                    continue
                for key, value in self.convert(source, path, depth + 1).items():
                    result.setdefault(key, value)
        return result


def read_file(path: Path) -> ReadResult:
    """Read every YAML document of `path`; problems are collected, never raised."""
    result = ReadResult()
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            result.problems.append(YamlProblem("not a regular file", (1, 1)))
            return result
        if info.st_size > MAX_FILE_BYTES:
            result.problems.append(
                YamlProblem(f"file is {info.st_size} bytes; the limit is {MAX_FILE_BYTES}", (1, 1))
            )
            return result
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        result.problems.append(YamlProblem(f"cannot read: {exc.strerror or exc}", (1, 1)))
        return result
    return read_bytes(raw)


def read_bytes(raw: bytes) -> ReadResult:
    result = ReadResult()
    if len(raw) > MAX_FILE_BYTES:
        result.problems.append(YamlProblem(f"file is larger than {MAX_FILE_BYTES} bytes", (1, 1)))
        return result
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw[:nul].count(b"\n") + 1
        result.problems.append(YamlProblem("binary file (NUL byte), not YAML text", (line, 1)))
        return result
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = raw[exc.start]
        result.problems.append(
            YamlProblem(f"not UTF-8 text (byte 0x{byte:02x} at offset {exc.start})", (line, 1))
        )
        return result
    return read_text(text)


def read_text(text: str) -> ReadResult:
    if _CLoader is not None:
        fast = _read_fast(text)
        if fast is not None:
            return fast
    return _read_pure(text)


def _read_fast(text: str) -> ReadResult | None:
    """The whole stream through libyaml, or None if it raised anything at all (a syntax
    error, a nesting limit, an unreadable character, a budget exceeded): then the
    pure-Python reader reads it from the start, so every message and every partial result
    is exactly what that reader reports."""
    converter: _Converter | None = None
    try:
        converter = _Converter(_CLoader(text))
        documents: list[Document] = []
        while (document := converter.next_document()) is not None:
            documents.append(document)
    except Exception:  # RecursionError and YAMLError included
        return None
    finally:
        if converter is not None:
            converter.loader.dispose()
    return ReadResult(documents=documents, problems=converter.problems)


def _read_pure(text: str) -> ReadResult:
    result = ReadResult()
    try:
        # The reader checks for unprintable characters as soon as it is constructed.
        converter = _Converter(yaml.SafeLoader(text))
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        message = f"unreadable character {exc.character!r} (not allowed in YAML)"
        result.problems.append(YamlProblem(message, (line, 1)))
        return result
    try:
        while (document := converter.next_document()) is not None:
            result.documents.append(document)
    except _ExpansionLimit as exc:
        converter.problems.append(exc.problem)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        converter.problems.append(YamlProblem(f"YAML syntax error: {reason}", where))
    except RecursionError:
        converter.problems.append(YamlProblem(f"nested deeper than {MAX_DEPTH}", (1, 1)))
    finally:
        converter.loader.dispose()
    result.problems.extend(converter.problems)
    return result
