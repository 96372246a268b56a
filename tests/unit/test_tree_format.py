"""Tree blob JSON: byte-exact goldens from restic 0.14 and round-trip properties."""

from __future__ import annotations

import hashlib
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekeep.core.format.tree import (
    MODE_CHAR_DEVICE,
    MODE_DEVICE,
    MODE_DIR,
    MODE_NAMED_PIPE,
    MODE_SETGID,
    MODE_SETUID,
    MODE_SOCKET,
    MODE_STICKY,
    MODE_SYMLINK,
    GoTime,
    Node,
    TreeFormatError,
    decode_node,
    decode_tree,
    encode_node,
    encode_tree,
    go_mode_from_st_mode,
    go_quote,
    go_unquote,
    st_mode_perm_from_go_mode,
)

# Written by /usr/bin/restic 0.14.0 (go1.19.8) with TZ=Europe/Berlin.
GOLDEN_TREE = (
    b'{"nodes":[{"name":"bad\\\\xffname","type":"file","mode":420,'
    b'"mtime":"2026-11-22T04:09:59.786008842+01:00","atime":"2026-11-22T04:09:59.786008842+01:00",'
    b'"ctime":"2026-11-22T04:09:59.786008842+01:00","uid":0,"gid":0,"user":"root","group":"root",'
    b'"inode":2146505,"device_id":65024,"size":1,"links":1,'
    b'"content":["2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"]},'
    b'{"name":"empty","type":"file","mode":420,"mtime":"2026-11-22T04:09:59.661866268+01:00",'
    b'"atime":"2026-11-22T04:09:59.661866268+01:00","ctime":"2026-11-22T04:09:59.661866268+01:00",'
    b'"uid":0,"gid":0,"user":"root","group":"root","inode":2146500,"device_id":65024,"links":1,'
    b'"content":[]},'
    b'{"name":"fifo","type":"fifo","mode":33554852,"mtime":"2026-11-22T04:09:59.664261179+01:00",'
    b'"atime":"2026-11-22T04:09:59.664261179+01:00","ctime":"2026-11-22T04:09:59.664261179+01:00",'
    b'"uid":0,"gid":0,"user":"root","group":"root","inode":2146503,"device_id":65024,"content":null},'
    b'{"name":"link","type":"symlink","mode":134218239,"mtime":"2026-11-22T04:09:59.661866268+01:00",'
    b'"atime":"2026-11-22T04:09:59.661866268+01:00","ctime":"2026-11-22T04:09:59.661866268+01:00",'
    b'"uid":0,"gid":0,"user":"root","group":"root","inode":2146502,"device_id":65024,"links":1,'
    b'"linktarget":"small","content":null},'
    b'{"name":"q\\\\\\"\\\\\\\\\\u003c\\u003e\\u0026\\\\tx","type":"file","mode":420,'
    b'"mtime":"2026-11-22T04:09:59.786008842+01:00","atime":"2026-11-22T04:09:59.786008842+01:00",'
    b'"ctime":"2026-11-22T04:09:59.786008842+01:00","uid":0,"gid":0,"user":"root","group":"root",'
    b'"inode":2146506,"device_id":65024,"links":1,"content":[]},'
    b'{"name":"small","type":"file","mode":420,"mtime":"2026-11-22T04:09:59.661866268+01:00",'
    b'"atime":"2026-11-22T04:09:59.661866268+01:00","ctime":"2026-11-22T04:09:59.665691581+01:00",'
    b'"uid":0,"gid":0,"user":"root","group":"root","inode":2146499,"device_id":65024,"size":5,'
    b'"links":2,"extended_attributes":[{"name":"user.b","value":"Mg=="},{"name":"user.a","value":"MQ=="}],'
    b'"content":["2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"]},'
    b'{"name":"sub","type":"dir","mode":2147484141,"mtime":"2026-11-22T04:09:59.661866268+01:00",'
    b'"atime":"2026-11-22T04:09:59.661866268+01:00","ctime":"2026-11-22T04:09:59.661866268+01:00",'
    b'"uid":0,"gid":0,"user":"root","group":"root","inode":2146501,"device_id":65024,"content":null,'
    b'"subtree":"ac08ce34ba4f8123618661bef2425f7028ffb9ac740578a3ee88684d2523fee8"}]}\n'
)


def test_golden_tree_round_trips_byte_exact() -> None:
    nodes = decode_tree(GOLDEN_TREE)
    assert [n.name for n in nodes] == [
        b"bad\xffname",
        b"empty",
        b"fifo",
        b"link",
        b'q"\\<>&\tx',
        b"small",
        b"sub",
    ]
    assert nodes[1].content == [] and nodes[2].content is None
    assert nodes[5].extended_attributes == [(b"user.b", b"2"), (b"user.a", b"1")]
    assert nodes[5].content == [hashlib.sha256(b"hello").digest()]
    assert nodes[0].mtime == GoTime(1795316999786008842, 3600)
    assert encode_tree(nodes) == GOLDEN_TREE


def test_invalid_utf8_linktarget_kept_raw_by_default() -> None:
    node = Node(name=b"badlink", type="symlink", linktarget=b"\xff\xfe")
    raw = encode_node(node)
    assert b'"linktarget":"\\ufffd\\ufffd","linktarget_raw":"//4="' in raw
    assert decode_node(raw).linktarget == b"\xff\xfe"
    # restic 0.14's own (lossy) form, byte for byte
    lossy = encode_node(node, write_linktarget_raw=False)
    assert b'"linktarget":"\\ufffd\\ufffd"' in lossy
    assert b"linktarget_raw" not in lossy
    assert decode_node(lossy).linktarget == "\ufffd\ufffd".encode()
    # a valid UTF-8 target never gets linktarget_raw
    assert b"linktarget_raw" not in encode_node(Node(name=b"ok", type="symlink", linktarget=b"t"))


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        (b"plain.txt", "plain.txt"),
        (b'a"b\\c', 'a\\"b\\\\c'),
        (b"\x07\x08\x0c\n\r\t\x0b", "\\a\\b\\f\\n\\r\\t\\v"),
        (b"\x01\x7f", "\\x01\\x7f"),
        (b"\xff\xc3", "\\xff\\xc3"),
        (b"\xe2\x82x", "\\xe2\\x82x"),
        ("é😀 ".encode(), "é😀 "),
        ("\u00a0\u00ad\u200d\u2028".encode(), "\\u00a0\\u00ad\\u200d\\u2028"),
        ("\ue000\U000f0000".encode(), "\\ue000\\U000f0000"),
        ("\u0870\U0001faf0".encode(), "\\u0870\\U0001faf0"),  # new in Unicode 14: Go 1.19 escapes
        ("\ufffd".encode(), "\ufffd"),
        (b"\xed\xa0\x80", "\\xed\\xa0\\x80"),  # encoded surrogate is invalid UTF-8
    ],
)
def test_go_quote_golden(name: bytes, quoted: str) -> None:
    assert go_quote(name) == quoted
    assert go_unquote(quoted) == name


def test_json_escapes_like_go_119() -> None:
    node = Node(name=b"x", type="file", user="a<b>&\x08\x0c\x7f\u2028\u2029\n", content=[])
    assert b'"user":"a\\u003cb\\u003e\\u0026\\u0008\\u000c\x7f\\u2028\\u2029\\n"' in encode_node(node)


def test_unicode_version_matches_table() -> None:
    # The non-printable table in tree.py bridges Unicode 14 (Python 3.11) to 13 (Go 1.19).
    assert unicodedata.unidata_version == "14.0.0"


def test_omitempty_rules() -> None:
    node = Node(name=b"d", type="dir", mtime=GoTime(0), atime=GoTime(0), ctime=GoTime(0))
    assert encode_node(node) == (
        b'{"name":"d","type":"dir","mtime":"1970-01-01T00:00:00Z","atime":"1970-01-01T00:00:00Z",'
        b'"ctime":"1970-01-01T00:00:00Z","uid":0,"gid":0,"content":null}'
    )


def test_generic_attributes_round_trip() -> None:
    raw = (
        b'{"name":"f","type":"file","mtime":"1970-01-01T00:00:00Z","atime":"1970-01-01T00:00:00Z",'
        b'"ctime":"1970-01-01T00:00:00Z","uid":0,"gid":0,"linktarget_raw":"//4=",'
        b'"generic_attributes":{"a":{"x":1.50,"y":[true,null]},"b":"Zm9v"},"content":[]}'
    )
    node = decode_node(raw)
    assert node.generic_attributes == {"a": b'{"x":1.50,"y":[true,null]}', "b": b'"Zm9v"'}
    assert node.linktarget == b"\xff\xfe"


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-22T04:09:59.786008842+01:00",
        "2026-11-22T04:09:59.7+01:00",
        "1969-12-31T23:59:59.999999999Z",
        "0001-01-01T00:00:00Z",
        "0000-02-29T12:00:00-05:30",
        "9999-12-31T23:59:59.999999999+14:00",
    ],
)
def test_gotime_parse_format(text: str) -> None:
    assert GoTime.parse(text).rfc3339nano() == text


def test_gotime_fixtime_and_truncated_offset() -> None:
    far = GoTime.parse("9999-06-01T00:00:00Z")
    later = GoTime(far.ns + 400 * 365 * 86400 * 10**9, 0)
    assert later.fixed().rfc3339nano().startswith("9999-")
    assert GoTime(0, -(19 * 60 + 32)).rfc3339nano() == "1969-12-31T23:40:28-00:19"


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"[]",
        b'{"nodes":{}}',
        b'{"nodes":[1]}',
        b'{"nodes":[{"type":"file"}]}',
        b'{"nodes":[{"name":"a\\\\q"}]}',
        b'{"nodes":[{"name":"a","uid":-1}]}',
        b'{"nodes":[{"name":"a","mode":1.5}]}',
        b'{"nodes":[{"name":"a","mtime":"yesterday"}]}',
        b'{"nodes":[{"name":"a","content":["abc"]}]}',
        b'{"nodes":[{"name":"a","extended_attributes":[{"name":"x","value":"!!"}]}]}',
    ],
)
def test_decode_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(TreeFormatError):
        decode_tree(bad)


def test_decode_lenient() -> None:
    nodes = decode_tree(b'{"nodes":[{"name":"a","type":"file","unknown":[1,{"x":2}]}]}')
    assert nodes[0].name == b"a" and nodes[0].content is None
    assert decode_tree(b'{"nodes":null}') == []


def test_encode_rejects_unsorted_and_duplicates() -> None:
    a, b = Node(name=b"a", type="file"), Node(name=b"b", type="file")
    with pytest.raises(ValueError, match="unsorted"):
        encode_tree([b, a])
    with pytest.raises(ValueError, match="duplicate"):
        encode_tree([a, a])


def test_mode_conversions() -> None:
    assert go_mode_from_st_mode(0o040755) == MODE_DIR | 0o755
    assert go_mode_from_st_mode(0o120777) == MODE_SYMLINK | 0o777 == 134218239
    assert go_mode_from_st_mode(0o020620) == MODE_DEVICE | MODE_CHAR_DEVICE | 0o620
    assert go_mode_from_st_mode(0o060660) == MODE_DEVICE | 0o660
    assert go_mode_from_st_mode(0o010644) == MODE_NAMED_PIPE | 0o644
    assert go_mode_from_st_mode(0o140755) == MODE_SOCKET | 0o755
    assert go_mode_from_st_mode(0o107755) == MODE_SETUID | MODE_SETGID | MODE_STICKY | 0o755
    assert st_mode_perm_from_go_mode(MODE_SETUID | MODE_SETGID | MODE_STICKY | MODE_DIR | 0o751) == 0o7751


# ----------------------------------------------------------------------------- properties

_ns = st.integers(
    min_value=GoTime.parse("0000-01-01T00:00:00Z").ns + 86400 * 10**9,
    max_value=GoTime.parse("9999-12-30T00:00:00Z").ns,
)
_offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(lambda m: m * 60)
_times = st.builds(GoTime, _ns, _offsets)
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_ids = st.binary(min_size=32, max_size=32)
_u32 = st.integers(min_value=0, max_value=2**32 - 1)
_u64 = st.integers(min_value=0, max_value=2**64 - 1)
_names = st.one_of(st.binary(min_size=1, max_size=80), _text.filter(bool).map(str.encode))


@st.composite
def _nodes(draw: st.DrawFn, *, raw_targets: bool = False) -> Node:
    kind = draw(st.sampled_from(["file", "dir", "symlink", "dev", "chardev", "fifo", "socket"]))
    target = draw(st.binary(max_size=40)) if raw_targets else draw(_text).encode()
    return Node(
        name=draw(_names),
        type=kind,
        mode=draw(_u32),
        mtime=draw(_times),
        atime=draw(_times),
        ctime=draw(_times),
        uid=draw(_u32),
        gid=draw(_u32),
        user=draw(_text),
        group=draw(_text),
        inode=draw(_u64),
        device_id=draw(_u64),
        size=draw(_u64),
        links=draw(_u64),
        linktarget=target if kind == "symlink" else b"",
        extended_attributes=draw(
            st.lists(st.tuples(_text.map(str.encode), st.binary(max_size=20)), max_size=3)
        ),
        device=draw(_u64),
        content=draw(st.lists(_ids, max_size=3)) if kind == "file" else None,
        subtree=draw(_ids) if kind == "dir" else None,
        error=draw(_text),
    )


@given(_times)
def test_gotime_round_trip(t: GoTime) -> None:
    assert GoTime.parse(t.rfc3339nano()) == t


@given(_times, st.integers(min_value=0, max_value=3599), st.integers(min_value=0, max_value=10**9 - 1))
def test_gotime_cached_parse_and_format_agree_with_calendar(t: GoTime, within: int, nanos: int) -> None:
    # a second time in the same hour takes the cached path; it must agree with the full parse
    text = t.rfc3339nano()
    first = GoTime.parse(text)
    hour_start = (first.ns // 10**9 + first.offset) // 3600 * 3600 - first.offset
    other = GoTime((hour_start + within) * 10**9 + nanos, first.offset)
    other_text = other.rfc3339nano()
    assert GoTime.parse(other_text) == other
    assert GoTime._parse_slow(other_text) == other
    assert GoTime._parse_slow(text).rfc3339nano() == text


def test_gotime_cached_parse_still_validates() -> None:
    assert GoTime.parse("2026-03-01T10:00:00+01:00").rfc3339nano() == "2026-03-01T10:00:00+01:00"
    for bad in ("2026-03-01T10:60:00+01:00", "2026-03-01T10:00:60+01:00", "2026-03-01T10:00:00+24:00"):
        with pytest.raises(ValueError):
            GoTime.parse(bad)


@given(_names)
def test_quote_round_trip(name: bytes) -> None:
    quoted = go_quote(name)
    assert go_unquote(quoted) == name
    assert quoted.isprintable() or "\\" in quoted or not quoted


@settings(max_examples=200)
@given(_nodes())
def test_node_round_trip(node: Node) -> None:
    data = encode_node(node)
    assert decode_node(data) == node
    assert encode_node(decode_node(data)) == data


@settings(max_examples=100)
@given(_nodes(raw_targets=True))
def test_node_round_trip_raw_linktarget(node: Node) -> None:
    data = encode_node(node, write_linktarget_raw=True)
    assert decode_node(data) == node


@settings(max_examples=50)
@given(st.lists(_nodes(), max_size=8, unique_by=lambda n: n.name))
def test_tree_round_trip(nodes: list[Node]) -> None:
    nodes.sort(key=lambda n: n.name)
    data = encode_tree(nodes)
    assert data.endswith(b"]}\n")
    assert decode_tree(data) == nodes
    assert encode_tree(decode_tree(data)) == data
