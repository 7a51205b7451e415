"""Fast YAML 1.2 loading (libyaml, ruamel.yaml's scalar rules) that keeps the line of every key and item."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, Protocol

import yaml
from ruamel.yaml.constructor import SafeConstructor as _RuamelSafeConstructor
from ruamel.yaml.nodes import ScalarNode as _RuamelScalarNode
from ruamel.yaml.resolver import VersionedResolver

__all__ = ["LineList", "LineMap", "YamlError", "load"]

_CORE = "tag:yaml.org,2002:"
_STR = _CORE + "str"
_SEQ = _CORE + "seq"
_MAP = _CORE + "map"
# What our resolver answers for an untagged plain scalar; compared by identity, so no tag in a
# document can be mistaken for it. The real tag is decided later, with ruamel's YAML 1.2 rules.
_PLAIN = "tag:flx-meltano:plain-scalar"
# Explicitly tagged scalars we construct (ruamel's safe constructors); any other tag is an error.
_SCALAR_KINDS = frozenset({"null", "bool", "int", "float", "str", "timestamp", "binary"})
_YAML_1_1 = re.compile(r"^%YAML[ \t]+1\.1(?![0-9])", re.MULTILINE)


class YamlError(ValueError):
    """The text is not YAML we can load: ``problem`` says why, ``line`` (1-based) where, if known."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {problem}" if line is not None else problem)
        self.problem = problem
        self.line = line


class LineMap(dict[str, Any]):
    """A plain dict that also knows its own line and the line of each of its keys (1-based)."""

    __slots__ = ("key_lines", "line")

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[object, int] = {}

    def line_of(self, key: object) -> int:
        """Line of ``key`` (a merged key: where it is written in the merged mapping); else the map's."""
        return self.key_lines.get(key, self.line)


class LineList(list[Any]):
    """A plain list that also knows its own line and the line of each of its items (1-based)."""

    __slots__ = ("item_lines", "line")

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []

    def line_of(self, index: int) -> int:
        """Line of item ``index`` (negative indexes count from the end); else the list's own line."""
        if -len(self.item_lines) <= index < len(self.item_lines):
            return self.item_lines[index]
        return self.line


class _Resolver(yaml.resolver.BaseResolver):
    """Leaves every untagged plain scalar unresolved (``_PLAIN``): PyYAML's rules are YAML 1.1."""

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP


class _NodeSource(Protocol):
    def get_single_node(self) -> yaml.Node | None: ...

    def dispose(self) -> None: ...


class _PyLoader(
    yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer, _Resolver
):
    """Pure-Python composer, used only when PyYAML was built without libyaml."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Resolver.__init__(self)


_LOADER: Callable[[str], _NodeSource] = _PyLoader

if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CLoader(CParser, _Resolver):
        """libyaml's parser and composer (C) with our resolver."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _Resolver.__init__(self)

    _LOADER = _CLoader


class _Yaml12Constructor(_RuamelSafeConstructor):
    """ruamel.yaml's safe scalar constructors, pinned to YAML 1.2 and used without a loader."""

    def __init__(self) -> None:
        super().__init__()
        self._yaml12 = VersionedResolver(version=(1, 2))

    @property
    def resolver(self) -> Any:
        return self._yaml12


_CONSTRUCTOR = _Yaml12Constructor()
_RESOLVER = _CONSTRUCTOR.resolver


def _construct(tag: str, value: str) -> Any:
    """A scalar of core ``tag`` as ruamel.yaml's loader builds it (ValueError and friends if it can't)."""
    if tag == _STR:
        return value
    constructor = _Yaml12Constructor.yaml_constructors[tag]
    return constructor(_CONSTRUCTOR, _RuamelScalarNode(tag, value, None, None))


@functools.lru_cache(maxsize=16384)
def _plain_scalar(value: str) -> Any:
    """An untagged plain scalar, resolved and built exactly as ruamel.yaml's YAML 1.2 loader does."""
    tag = _RESOLVER.resolve(_RuamelScalarNode, value, (True, False)).suffix
    if tag.removeprefix(_CORE) in _SCALAR_KINDS:
        return _construct(tag, value)
    return value  # '<<' outside a key and '=' (ruamel: a TaggedScalar of the same text)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Builder:
    """Turns a composed node graph into LineMap / LineList / scalars (aliases share one object)."""

    def __init__(self) -> None:
        self._built: dict[int, Any] = {}

    def build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        built = self._built.get(id(node))
        if built is not None:
            return built
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        raise YamlError(f"unexpected node {type(node).__name__}", _line(node))  # pragma: no cover

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        value: str = node.value
        try:
            if tag is _PLAIN:
                return _plain_scalar(value)
            if tag.startswith(_CORE) and tag.removeprefix(_CORE) in _SCALAR_KINDS:
                return _construct(tag, value)
        except Exception as exc:
            kind = _RESOLVER.resolve(_RuamelScalarNode, value, (True, False)).suffix if tag is _PLAIN else tag
            raise YamlError(
                f'cannot read "{value}" as {kind.removeprefix(_CORE)}: {exc}', _line(node)
            ) from None
        raise YamlError(f"unsupported tag {tag!r}", _line(node))

    def _sequence(self, node: yaml.SequenceNode) -> LineList:
        if node.tag != _SEQ:
            raise YamlError(f"unsupported tag {node.tag!r}", _line(node))
        seq = LineList(_line(node))
        self._built[id(node)] = seq
        for item in node.value:
            seq.append(self.build(item))
            seq.item_lines.append(_line(item))
        return seq

    def _key(self, node: yaml.Node) -> Any:
        key = self.build(node)
        if isinstance(key, list):
            key = tuple(key)  # ruamel: a CommentedKeySeq (a tuple)
        try:
            hash(key)
        except TypeError:
            raise YamlError("found unhashable key", _line(node)) from None
        return key

    def _mapping(self, node: yaml.MappingNode) -> LineMap:
        if node.tag != _MAP:
            raise YamlError(f"unsupported tag {node.tag!r}", _line(node))
        mapping = LineMap(_line(node))
        self._built[id(node)] = mapping
        merged: list[LineMap] | None = None
        for key_node, value_node in node.value:
            if key_node.tag is _PLAIN and key_node.value == "<<":
                if merged is not None:
                    raise YamlError('found duplicate merge key "<<"', _line(key_node))
                merged = self._merge_sources(value_node)
                continue
            key = self._key(key_node)
            if key in mapping:
                raise YamlError(
                    f'found duplicate key "{key}" (first on line {mapping.key_lines[key]})', _line(key_node)
                )
            mapping[key] = self.build(value_node)
            mapping.key_lines[key] = _line(key_node)
        # Keys written in the mapping win; then the merged mappings, earlier ones first (as ruamel).
        for source in merged or ():
            for key, value in source.items():
                if key not in mapping:
                    mapping[key] = value
                    mapping.key_lines[key] = source.line_of(key)
        return mapping

    def _merge_sources(self, node: yaml.Node) -> list[LineMap]:
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        sources: list[LineMap] = []
        for source_node in nodes:
            if not isinstance(source_node, yaml.MappingNode):
                raise YamlError("expected a mapping or list of mappings for merging", _line(source_node))
            sources.append(self.build(source_node))
        return sources


def _error(text: str, exc: yaml.YAMLError, positions_in_bytes: bool) -> YamlError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        return YamlError(exc.problem or exc.context or "invalid YAML", line)
    problem = str(exc).split("\n", 1)[0]  # a ReaderError (bad character): an offset, no line
    position = getattr(exc, "position", None)
    if not isinstance(position, int):
        return YamlError(problem)
    if positions_in_bytes:  # libyaml counts UTF-8 bytes
        breaks = text.encode(errors="surrogatepass")[:position].count(b"\n")
    else:
        breaks = text[:position].count("\n")
    return YamlError(problem, breaks + 1)


def load(text: str) -> Any:
    """Load one YAML document: LineMap / LineList / scalars, or None for an empty document.

    Scalars follow ruamel.yaml's YAML 1.2 rules (``on``/``yes`` stay strings, ``017`` is 17); the
    core tags (``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``, ``!!timestamp``,
    ``!!binary``, ``!!map``, ``!!seq``) are honoured, any other tag is a YamlError. Anchors,
    aliases and merge keys work; duplicate keys and syntax errors are YamlErrors with a line. A
    ``%YAML 1.1`` directive (which would switch ruamel.yaml to the 1.1 rules) is a YamlError too.
    """
    if "%YAML" in text and (directive := _YAML_1_1.search(text)):
        raise YamlError("YAML 1.1 documents are not supported", text.count("\n", 0, directive.start()) + 1)
    try:
        loader = _LOADER(text)  # the pure-Python reader checks the characters here
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _error(text, exc, positions_in_bytes=_LOADER is not _PyLoader) from None
    if node is None:
        return None
    return _Builder().build(node)
