"""yaml_lines.load against ruamel.yaml's round-trip loader: same values, same lines, same errors."""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from flx_meltano.integration import yaml_lines
from flx_meltano.integration.yaml_lines import LineList, LineMap, YamlError, load

ROOT = Path(__file__).resolve().parents[1]
REPO_YAML = sorted(
    p
    for p in [ROOT / "meltano.yml", *ROOT.glob("tests/fixtures/projects/*/meltano.yml")]
    if "broken" not in p.parent.name
)


@pytest.fixture(params=["libyaml", "pure-python"])
def loader(request, monkeypatch):
    """Run a test with the C composer and again with the pure-Python fallback."""
    if request.param == "libyaml":
        if not yaml.__with_libyaml__:
            pytest.skip("PyYAML built without libyaml")
    else:
        monkeypatch.setattr(yaml_lines, "_LOADER", yaml_lines._PyLoader)
    return request.param


def ruamel_load(text: str) -> Any:
    return YAML(typ="rt").load(text)


def norm(value: Any) -> Any:
    """A value with its kind spelled out, so True != 1, 1 != 1.0, NaN == NaN and key order counts."""
    if isinstance(value, Mapping):
        return ("map", [(norm(k), norm(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [norm(v) for v in value])
    if isinstance(value, tuple):
        return ("tuple", tuple(norm(v) for v in value))
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", bool(value))
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else float(value))
    if isinstance(value, str):
        return ("str", str(value))
    if isinstance(value, bytes):
        return ("bytes", bytes(value))
    if isinstance(value, datetime.datetime):
        fields = (value.year, value.month, value.day, value.hour, value.minute, value.second)
        return ("datetime", (*fields, value.microsecond, value.utcoffset()))
    if isinstance(value, datetime.date):
        return ("date", value.isoformat())
    raise TypeError(f"unexpected {type(value).__name__}: {value!r}")


def as_key(value: Any) -> Any:
    normalised = norm(value)
    return normalised if normalised[0] != "list" else ("tuple", tuple(normalised[1]))


# --- scalars ---------------------------------------------------------------------------------------

PLAIN = [
    "on",
    "On",
    "ON",
    "off",
    "yes",
    "Yes",
    "no",
    "NO",
    "y",
    "n",
    "true",
    "True",
    "TRUE",
    "false",
    "False",
    "FALSE",
    "tRUE",
    "~",
    "null",
    "Null",
    "NULL",
    "",
    "nULL",
    "1:20",
    "12:30:00",
    "190:20:30.15",
    "017",
    "0o17",
    "-0o17",
    "0b101",
    "0x1F",
    "-0x1f",
    "0x1f_ff",
    "1_000",
    "+12",
    "-0",
    "0",
    "00",
    "1e3",
    "1E3",
    "-1.5",
    ".5",
    "+.5",
    "0.",
    "1.0e+3",
    "6.8523015e+5",
    "685_230.15",
    "1.2.3",
    ".inf",
    "-.inf",
    "+.Inf",
    ".INF",
    ".nan",
    ".NaN",
    ".NAN",
    "nan",
    "inf",
    "2024-01-01",
    "2024-1-1",
    "2024-01-01 10:00:00",
    "2024-01-01T10:00:00Z",
    "2024-01-01t10:00:00.123456789+02:00",
    "2001-12-14 21:59:43.10 -5",
    "20240101",
    "0o",
    "0b",
    "0x",
    "1e",
    "_",
    "1,000",
    "3.14.15",
    "hello world",
    "$MELTANO_PROJECT_ROOT/output",
    "-e ./taps/tap-x",
    "héllo ✓ 😀",
    "a # not a comment",
]
QUOTED = [
    '"on"',
    "'017'",
    '"null"',
    "''",
    '""',
    '"1e3"',
    "'true'",
    '"2024-01-01"',
    '"~"',
    '"\\u00e9\\t\\x41\\/"',
    "'it''s'",
    '"@daily"',
    '"0 */6 * * *"',
    "'<<'",
]
BLOCKS = [
    "|\n  line one\n  line two\n",
    "|-\n  stripped\n",
    "|+\n  kept\n\n",
    ">\n  folded\n  text\n\n  new paragraph\n",
    ">-\n  folded stripped\n    more indented\n  back\n",
    "|2\n    indented explicitly\n",
    "plain\n  folded over\n  lines\n",
    '"double\n  quoted\n\n  lines"\n',
]
TAGGED = [
    "!!int '5'",
    "!!float 42",
    "!!float '1'",
    "!!bool yes",
    "!!bool 'false'",
    "!!null ''",
    "!!timestamp 2024-01-01",
    "!!binary aGVsbG8=",
    "! 5",
    "! '5'",
    "!!int 0o17",
]


def scalar_document(values: list[str]) -> str:
    return "".join(f"k{i}: {value}\n" for i, value in enumerate(values))


@pytest.mark.parametrize(
    "group", [PLAIN, QUOTED, BLOCKS, TAGGED], ids=["plain", "quoted", "blocks", "tagged"]
)
def test_scalars_resolve_as_ruamel_yaml_1_2_does(loader, group):
    text = scalar_document(group)
    assert norm(load(text)) == norm(ruamel_load(text))


def test_scalars_as_sequence_items_and_in_flow_collections(loader):
    in_flow = [v for v in PLAIN if v and not any(c in v for c in ",#")]
    text = "items:\n" + "".join(f"- {v}\n" for v in PLAIN + QUOTED) + "flow: [" + ", ".join(in_flow) + "]\n"
    assert norm(load(text)) == norm(ruamel_load(text))


def test_scalar_keys_resolve_too(loader):
    keys = ["1", "on", "017", "0x10", "1.5", "false", "~", "2024-01-01", '"1"', "'off'", "[a, b]", "? c\n"]
    text = "".join(f"{k}: v{i}\n" for i, k in enumerate(keys))
    ours = load(text)
    assert norm(ours) == norm(ruamel_load(text))
    assert {as_key(k) for k in ours} == {as_key(k) for k in ruamel_load(text)}
    assert ours[("a", "b")] == "v10"


def test_the_yaml_1_2_rules_the_reader_relies_on(loader):
    ours = load(
        "a: on\nb: yes\nc: 1:20\nd: 017\ne: 0o17\nf: 1_000\ng: .inf\nh: ~\ni:\nj: 2024-01-01\nk: '5'\n"
    )
    assert ours == {
        "a": "on",
        "b": "yes",
        "c": "1:20",
        "d": 17,
        "e": 15,
        "f": 1000,
        "g": math.inf,
        "h": None,
        "i": None,
        "j": datetime.date(2024, 1, 1),
        "k": "5",
    }
    when = load("t: 2024-01-01T10:00:00Z")["t"]
    assert when == datetime.datetime(2024, 1, 1, 10, tzinfo=datetime.UTC)


def test_where_ruamel_answers_a_tagged_scalar_we_answer_its_text(loader):
    text = "a: !!str 5\nb: !!str true\nc: =\nd: <<\n"
    assert load(text) == {"a": "5", "b": "true", "c": "=", "d": "<<"}
    theirs = ruamel_load(text)
    assert {k: type(v).__name__ for k, v in theirs.items()} == dict.fromkeys("abcd", "TaggedScalar")
    assert {k: v.value for k, v in theirs.items()} == load(text)


# --- whole documents -------------------------------------------------------------------------------


def big_project(streams: int = 1000) -> str:
    """A meltano.yml-like document: one extractor with ``streams`` streams' select and metadata."""
    out = [
        "# generated\n",
        "version: 1\n",
        "default_environment: dev\n",
        "project_id: 0a1b-generated\n",
        "send_anonymous_usage_stats: false\n",
        "environments:\n- name: dev\n- name: prod\n  config:\n    plugins:\n      extractors:\n",
        "      - name: tap-big\n        config: {scale: 2000, start_date: 2024-01-01}\n",
        "plugins:\n  extractors:\n  - name: tap-big\n    namespace: tap_big\n",
        "    pip_url: -e ./taps/tap-big\n",
        "    capabilities: [catalog, discover, state, about]\n",
        "    settings:\n",
        "    - {name: api_key, kind: string, sensitive: true}\n",
        "    - name: start_date\n      kind: date_iso8601\n      value: 2024-01-01T00:00:00Z\n",
        "    config:\n      start_date: '2024-01-01'\n      on: yes\n      retries: 017\n      ratio: .5\n",
        "    select:\n",
    ]
    out += [f"    - stream_{i:04d}.*\n" for i in range(streams)]
    out.append("    metadata:\n")
    for i in range(streams):
        out.append(f"      stream_{i:04d}:  # stream {i}\n")
        if i % 3 == 0:
            out.append("        replication-method: INCREMENTAL\n        replication-key: updated_at\n")
        else:
            out.append(f"        replication-method: FULL_TABLE\n        key-properties: [id, 'k{i}']\n")
    out.append("  loaders:\n  - name: target-jsonlines\n    config:\n      destination_path: $ROOT/out\n")
    out.append("jobs:\n")
    out += [f"- name: job-{i}\n  tasks:\n  - tap-big target-jsonlines\n" for i in range(0, streams, 50)]
    out.append("schedules:\n")
    out += [f"- name: s-{i}\n  interval: '0 */6 * * *'\n  job: job-{i}\n" for i in range(0, streams, 50)]
    return "".join(out)


TRICKY = """\
# comment at the top

top: &top
  name: x   # trailing comment
  list:
  - a
  -   b
  - - nested
    - seq
  - {flow: map, other: [1, 2]}
  -
    late: item
  text: |
    literal
    block

  after: 1
flow: {a: 1,
  b: [x,
      y],
  c: 3}
"quoted key": 1
? complex key
: value
alias: *top
empty:
last: [
  1, 2,
  3,
]
"""


def documents() -> Iterator[tuple[str, str]]:
    for path in REPO_YAML:
        yield str(path.relative_to(ROOT)), path.read_text()
    yield "big", big_project(300)
    yield "tricky", TRICKY


@pytest.mark.parametrize(("name", "text"), list(documents()), ids=[n for n, _ in documents()])
def test_whole_documents_load_as_ruamel_does(loader, name, text):
    assert norm(load(text)) == norm(ruamel_load(text))


def test_the_repositorys_meltano_yml_is_one_of_them():
    assert ROOT / "meltano.yml" in REPO_YAML


# --- lines -----------------------------------------------------------------------------------------


def compare_lines(theirs: Any, ours: Any, where: str, counted: list[int]) -> None:
    """Every container, key and item: ours report ruamel's .lc line, plus one."""
    if isinstance(theirs, CommentedMap):
        assert isinstance(ours, LineMap), where
        assert ours.line == theirs.lc.line + 1, where
        for key in theirs:
            try:
                expected = theirs.lc.key(key)[0] + 1
            except KeyError:  # a merged key: ruamel keeps no line for it
                continue
            assert ours.line_of(key) == expected, f"{where}.{key}"
            counted.append(1)
            compare_lines(theirs[key], ours[key], f"{where}.{key}", counted)
    elif isinstance(theirs, CommentedSeq):
        assert isinstance(ours, LineList), where
        assert ours.line == theirs.lc.line + 1, where
        assert len(ours.item_lines) == len(theirs)
        for index, item in enumerate(theirs):
            assert ours.line_of(index) == theirs.lc.item(index)[0] + 1, f"{where}[{index}]"
            counted.append(1)
            compare_lines(item, ours[index], f"{where}[{index}]", counted)


@pytest.mark.parametrize(("name", "text"), list(documents()), ids=[n for n, _ in documents()])
def test_every_key_and_item_has_ruamels_line(loader, name, text):
    counted: list[int] = []
    compare_lines(ruamel_load(text), load(text), "$", counted)
    assert len(counted) > 10


def test_lines_by_hand():
    ours = load(TRICKY)
    assert ours.line == 3
    assert ours.line_of("top") == 3
    assert ours["top"].line == 3  # an anchored node starts at its anchor, in ruamel too
    assert ours["top"].line_of("list") == 5
    assert ours["top"]["list"].line_of(1) == 7
    assert ours["top"]["list"].line_of(2) == 8
    assert ours["top"]["list"].line_of(4) == 12  # "-" alone on line 11: the item starts below
    assert ours["top"]["list"][4].line_of("late") == 12
    assert ours["top"].line_of("after") == 17
    assert ours["flow"].line_of("b") == 19
    assert ours["flow"]["b"].line_of(1) == 20
    assert ours.line_of("quoted key") == 22
    assert ours.line_of("complex key") == 23
    assert ours.line_of("last") == 27
    assert ours["last"].line_of(2) == 29
    assert ours["last"].line_of(-1) == 29


def test_unknown_keys_and_indexes_fall_back_to_the_containers_line():
    ours = load("a: 1\nb:\n  c: [x, y]\n")
    assert ours["b"].line_of("missing") == 3
    assert ours["b"]["c"].line_of(7) == 3
    assert ours["b"]["c"].line_of(-3) == 3
    assert LineMap().line_of("x") == 0
    assert LineList(5).line_of(0) == 5


def test_containers_are_plain_dicts_and_lists():
    ours = load("a: [1, {b: 2}]")
    assert isinstance(ours, dict)
    assert isinstance(ours["a"], list)
    assert ours == {"a": [1, {"b": 2}]}
    assert dict(ours) == {"a": [1, {"b": 2}]}


# --- anchors, aliases, merge keys ------------------------------------------------------------------

MERGES = """\
base: &base
  a: 1
  b: [x, y]
other: &other {b: 2, c: 3}
one:
  <<: *base
  a: 10
many:
  z: 0
  <<: [*base, *other]
  c: 30
chain: &chain
  <<: *base
  d: 4
chained:
  <<: *chain
  e: 5
inline:
  k: 1
  <<: {k: 2, l: 3}
ref: *base
seq: &s [1, 2]
seq_ref: *s
scalar: &sc hello
scalar_ref: *sc
"""


def test_anchors_aliases_and_merges_as_ruamel(loader):
    assert norm(load(MERGES)) == norm(ruamel_load(MERGES))


def test_merge_semantics(loader):
    ours = load(MERGES)
    assert ours["one"] == {"a": 10, "b": ["x", "y"]}  # the key written in the mapping wins
    assert list(ours["one"]) == ["a", "b"]
    assert ours["many"] == {"z": 0, "c": 30, "a": 1, "b": ["x", "y"]}  # earlier merged mapping wins
    assert list(ours["many"]) == ["z", "c", "a", "b"]
    assert ours["chained"] == {"e": 5, "d": 4, "a": 1, "b": ["x", "y"]}
    assert ours["inline"] == {"k": 1, "l": 3}
    assert ours["ref"] is ours["base"]
    assert ours["seq_ref"] is ours["seq"]
    assert ours["scalar_ref"] == "hello"


def test_a_merged_key_reports_where_it_is_written(loader):
    ours = load(MERGES)
    assert ours["one"].line_of("a") == 7
    assert ours["one"].line_of("b") == 3
    assert ours["many"].line_of("c") == 11
    assert ours["many"].line_of("b") == 3
    assert ours["chained"].line_of("a") == 2


def test_quoted_double_less_than_is_an_ordinary_key(loader):
    assert load("'<<': {a: 1}\n") == {"<<": {"a": 1}}


def test_recursive_alias_is_the_same_object(loader):
    ours = load("a: &a\n  - 1\n  - *a\n")
    assert ours["a"][1] is ours["a"]


# --- errors ----------------------------------------------------------------------------------------


def ruamel_error_line(text: str) -> int:
    with pytest.raises(MarkedYAMLError) as caught:
        ruamel_load(text)
    mark = caught.value.problem_mark or caught.value.context_mark
    assert mark is not None
    return int(mark.line) + 1


def test_duplicate_key_is_an_error_at_its_line(loader):
    text = "a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n"
    with pytest.raises(YamlError) as caught:
        load(text)
    assert caught.value.line == 5 == ruamel_error_line(text)
    assert caught.value.problem == 'found duplicate key "c" (first on line 3)'
    assert isinstance(caught.value, ValueError)


def test_duplicate_merge_key_is_an_error(loader):
    text = "a: &a {x: 1}\nb:\n  <<: *a\n  <<: *a\n"
    with pytest.raises(YamlError) as caught:
        load(text)
    assert caught.value.line == 4 == ruamel_error_line(text)


def test_merging_a_scalar_is_an_error(loader):
    with pytest.raises(YamlError, match="expected a mapping or list of mappings for merging") as caught:
        load("a:\n  <<: 5\n")
    assert caught.value.line == 2


SYNTAX_ERRORS = {
    "indent": "a:\n  b: 1\n   c: 2\n",
    "unclosed_flow": "a: [1, 2\nb: 3\n",
    "unterminated_quote": "a: 1\nb: 'oops\nc: 2\n",
    "tab": "a:\n\tb: 1\n",
    "undefined_alias": "a: 1\nb: *nope\n",
    "two_documents": "a: 1\n---\nb: 2\n",
    "sequence_in_mapping": "a: 1\n- b\n",
    "unclosed_key": "a: 1\n[b: 2\n",
}


@pytest.mark.parametrize("text", SYNTAX_ERRORS.values(), ids=SYNTAX_ERRORS.keys())
def test_syntax_errors_name_ruamels_line(loader, text):
    with pytest.raises(YamlError) as caught:
        load(text)
    assert caught.value.line == ruamel_error_line(text)
    assert caught.value.problem
    assert str(caught.value) == f"line {caught.value.line}: {caught.value.problem}"


def test_the_broken_fixture_fails_at_line_10(loader):
    with pytest.raises(YamlError) as caught:
        load((ROOT / "tests/fixtures/projects/broken_indent/meltano.yml").read_text())
    assert caught.value.line == 10
    assert "mapping values are not allowed" in caught.value.problem


def test_a_control_character_is_an_error_at_its_line(loader):
    with pytest.raises(YamlError, match="unacceptable character") as caught:
        load("a: é\nb: ü\nc: \x07\n")
    assert caught.value.line == 3


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a:\n  b: !Ref x\n", 2, "unsupported tag '!Ref'"),
        ("a: 1\nb: !!set {x}\n", 2, "unsupported tag 'tag:yaml.org,2002:set'"),
        ("a: !!str {x: 1}\n", 1, "unsupported tag 'tag:yaml.org,2002:str'"),
        ("a: 1\nb: 2\nc: 0x_\n", 3, 'cannot read "0x_" as int'),
        ("a: 2024-13-45\n", 1, 'cannot read "2024-13-45" as timestamp'),
        ("a:\n- !!int nope\n", 2, 'cannot read "nope" as int'),
        ("a: 1\n? {a: 1}\n: v\n", 2, "found unhashable key"),
    ],
)
def test_what_cannot_be_loaded_is_a_yaml_error_with_a_line(loader, text, line, message):
    with pytest.raises(YamlError, match=message) as caught:
        load(text)
    assert caught.value.line == line


def test_a_yaml_1_1_directive_is_refused_not_silently_read_as_1_2(loader):
    text = "# old\n%YAML 1.1\n---\na: on\n"
    assert ruamel_load(text) == {"a": True}
    with pytest.raises(YamlError, match=r"YAML 1\.1 documents are not supported") as caught:
        load(text)
    assert caught.value.line == 2
    assert load("%YAML 1.2\n---\na: on\n") == {"a": "on"} == ruamel_load("%YAML 1.2\n---\na: on\n")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "--- \n...\n"])
def test_an_empty_document_is_none(loader, text):
    assert load(text) is None
    assert ruamel_load(text) is None


def test_a_scalar_document(loader):
    assert load("hello") == "hello"
    assert load("017") == 17
