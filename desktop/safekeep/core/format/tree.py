"""restic tree blobs, encoded byte-for-byte as restic 0.14 (Go 1.19 ``encoding/json``) writes them.

A *tree* is one directory: ``{"nodes":[<node>,<node>,...]}`` followed by ``"\\n"``. Its blob ID is
the SHA-256 of exactly these bytes, so Safekeep must produce the very bytes restic produces for
the same directory, or trees will not deduplicate between the two programs.

Concepts
--------
``Node``
    One directory entry (file, dir, symlink, dev, chardev, fifo, socket). Fields are kept in Go
    struct order, and the encoder writes them in that order with restic's ``omitempty`` rules:

    - always written: ``name``, ``type``, ``mtime``, ``atime``, ``ctime``, ``uid``, ``gid`` and
      ``content`` (``null`` for everything except files; an empty file has ``[]``);
    - omitted when zero/empty: ``mode``, ``user``, ``group``, ``inode``, ``device_id``, ``size``,
      ``links``, ``linktarget``, ``linktarget_raw``, ``extended_attributes``,
      ``generic_attributes``, ``device``, ``subtree``, ``error``.

    ``linktarget_raw`` and ``generic_attributes`` do not exist in restic 0.14; they were added
    later (0.17/0.18). They are read, and ``generic_attributes`` round-trip, so trees written by
    newer restic versions survive. ``linktarget_raw`` is written (as newer restic does) only for a
    link target that is not valid UTF-8: restic 0.14 stores such a target lossily (each bad byte
    becomes U+FFFD) and Safekeep does not lose data to match it; restic 0.14 ignores the field.
    ``write_linktarget_raw=False`` reproduces 0.14's lossy bytes exactly (used by tests).

Name quirk
    restic passes the name through Go ``strconv.Quote`` (outer quotes stripped) *before* JSON
    encoding, so ``"`` becomes ``\\\\\\"`` in the blob, invalid UTF-8 bytes become ``\\xNN`` and
    non-printable runes become ``\\a \\b \\f \\n \\r \\t \\v``, ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``.
    Names are therefore held as raw ``bytes`` and survive any byte sequence exactly.

Printable runes (``strconv.IsPrint``)
    Go 1.19 (which built Debian's restic 0.14) uses Unicode 13.0: a rune is printable if its
    category is L, M, N, P or S, or it is U+0020. Python 3.11's ``unicodedata`` is Unicode 14.0;
    the 836 code points assigned in 14.0 are listed in ``_GO_UNICODE13_UNASSIGNED`` and treated as
    non-printable, exactly as Go does. This table was verified empirically against
    ``/usr/bin/restic`` 0.14 for every code point U+0080..U+10FFFF. A newer Python (Unicode 15+)
    would need the table extended; ``tests/unit/test_tree_format.py`` checks the Unicode version.

Go JSON strings
    ``<``, ``>``, ``&`` become ``\\u003c``, ``\\u003e``, ``\\u0026``; U+2028/U+2029 are escaped;
    control characters other than ``\\n \\r \\t`` become ``\\u00XX`` (Go 1.19 does *not* use ``\\b``
    or ``\\f``); DEL is written raw; each invalid UTF-8 byte becomes the escape ``\\ufffd``, while
    a genuine U+FFFD is written raw. ``[]byte`` fields are standard base64 with padding.

Times
    ``GoTime`` keeps Unix nanoseconds and the UTC offset, formatted as RFC3339Nano. Years outside
    0..9999 are clamped as restic's ``FixTime`` does before encoding (approximation: Go resolves
    the zone offset again for the clamped date; we keep the original offset).

Decoding (``decode_tree``) is lenient like Go: unknown fields are ignored and missing optional
ones take zero values. Known deviations from Go's decoder: field names match case-sensitively,
and an ``extended_attributes`` value of ``null`` reads as ``b""``. Decoding does not check node
order (restic 0.14 does not either); ``encode_tree`` does.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "MODE_CHAR_DEVICE",
    "MODE_DEVICE",
    "MODE_DIR",
    "MODE_IRREGULAR",
    "MODE_NAMED_PIPE",
    "MODE_PERM",
    "MODE_SETGID",
    "MODE_SETUID",
    "MODE_SOCKET",
    "MODE_STICKY",
    "MODE_SYMLINK",
    "MODE_TYPE",
    "NODE_MODE_MASK",
    "GoTime",
    "Node",
    "NodeView",
    "TreeFormatError",
    "decode_node",
    "decode_tree",
    "decode_tree_lazy",
    "encode_node",
    "encode_tree",
    "go_mode_from_st_mode",
    "go_quote",
    "go_unquote",
    "st_mode_perm_from_go_mode",
]


class TreeFormatError(ValueError):
    """A tree blob (or a node in it) is not valid restic tree JSON."""


# --------------------------------------------------------------------------------------------
# Go fs.FileMode bits
# --------------------------------------------------------------------------------------------

MODE_DIR: Final = 1 << 31
MODE_APPEND: Final = 1 << 30
MODE_EXCLUSIVE: Final = 1 << 29
MODE_TEMPORARY: Final = 1 << 28
MODE_SYMLINK: Final = 1 << 27
MODE_DEVICE: Final = 1 << 26
MODE_NAMED_PIPE: Final = 1 << 25
MODE_SOCKET: Final = 1 << 24
MODE_SETUID: Final = 1 << 23
MODE_SETGID: Final = 1 << 22
MODE_CHAR_DEVICE: Final = 1 << 21
MODE_STICKY: Final = 1 << 20
MODE_IRREGULAR: Final = 1 << 19
MODE_PERM: Final = 0o777
MODE_TYPE: Final = (
    MODE_DIR | MODE_SYMLINK | MODE_NAMED_PIPE | MODE_SOCKET | MODE_DEVICE | MODE_CHAR_DEVICE | MODE_IRREGULAR
)
#: restic keeps ``fi.Mode() & (ModePerm | ModeType | ModeSetuid | ModeSetgid | ModeSticky)``.
NODE_MODE_MASK: Final = MODE_PERM | MODE_TYPE | MODE_SETUID | MODE_SETGID | MODE_STICKY

_S_IFMT = 0o170000
_S_IFTYPE_TO_GO = {
    0o060000: MODE_DEVICE,  # S_IFBLK
    0o020000: MODE_DEVICE | MODE_CHAR_DEVICE,  # S_IFCHR
    0o040000: MODE_DIR,  # S_IFDIR
    0o010000: MODE_NAMED_PIPE,  # S_IFIFO
    0o120000: MODE_SYMLINK,  # S_IFLNK
    0o100000: 0,  # S_IFREG
    0o140000: MODE_SOCKET,  # S_IFSOCK
}


def go_mode_from_st_mode(st_mode: int) -> int:
    """The Go ``fs.FileMode`` that ``os.Lstat`` reports on Linux, masked as restic masks it."""
    mode = (st_mode & 0o777) | _S_IFTYPE_TO_GO.get(st_mode & _S_IFMT, 0)
    if st_mode & 0o4000:
        mode |= MODE_SETUID
    if st_mode & 0o2000:
        mode |= MODE_SETGID
    if st_mode & 0o1000:
        mode |= MODE_STICKY
    return mode & NODE_MODE_MASK


def st_mode_perm_from_go_mode(mode: int) -> int:
    """The ``chmod`` bits (permissions plus setuid/setgid/sticky) of a Go ``fs.FileMode``."""
    perm = mode & 0o777
    if mode & MODE_SETUID:
        perm |= 0o4000
    if mode & MODE_SETGID:
        perm |= 0o2000
    if mode & MODE_STICKY:
        perm |= 0o1000
    return perm


# --------------------------------------------------------------------------------------------
# GoTime: RFC3339Nano with nanoseconds and a fixed UTC offset
# --------------------------------------------------------------------------------------------

_NS = 1_000_000_000
_RFC3339NANO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
# The shape Go's RFC3339Nano writes (ASCII digits, "." fraction of 1..9 digits, "Z" or "+hh:mm").
_CANONICAL_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
#: "YYYY-MM-DDTHH" → its local second (validated by a full parse first); zone text → offset
_PARSED_HOURS: dict[str, int] = {}
_PARSED_ZONES: dict[str, int] = {}
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year, including 0)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


@dataclass(frozen=True, slots=True)
class GoTime:
    """A Go ``time.Time`` as restic stores it: an instant (Unix ns) plus the zone's UTC offset."""

    ns: int
    offset: int = 0  # seconds east of UTC

    @classmethod
    def from_ns(cls, ns: int, offset: int = 0) -> GoTime:
        return cls(ns, offset)

    @classmethod
    def parse(cls, text: str) -> GoTime:
        """Parse any RFC3339 / RFC3339Nano time (as Go's ``time.Time.UnmarshalJSON`` accepts)."""
        fast = _CANONICAL_TIME.fullmatch(text)
        if fast is not None:  # the shape Go writes: cached hour and zone, no calendar arithmetic
            hour_key, minute, sec, frac, zone = fast.groups()
            base = _PARSED_HOURS.get(hour_key)
            offset = _PARSED_ZONES.get(zone)
            if base is not None and offset is not None and minute < "60" and sec < "60":
                nanos = int(frac.ljust(9, "0")) if frac else 0
                return cls((base + int(minute) * 60 + int(sec) - offset) * _NS + nanos, offset)
        parsed = cls._parse_slow(text)
        if fast is not None:
            hour_key, _, _, _, zone = fast.groups()
            offset = parsed.offset
            local = parsed.ns // _NS + offset
            if len(_PARSED_HOURS) >= _CACHE_LIMIT:
                _PARSED_HOURS.clear()
            _PARSED_HOURS[hour_key] = local - local % 3600
            _PARSED_ZONES[zone] = offset
        return parsed

    @classmethod
    def _parse_slow(cls, text: str) -> GoTime:
        m = _RFC3339NANO.fullmatch(text)
        if m is None:
            raise ValueError(f"not an RFC3339 time: {text!r}")
        year, month, day, hour, minute, sec = (int(m.group(i)) for i in range(1, 7))
        if not 1 <= month <= 12:
            raise ValueError(f"month out of range in {text!r}")
        dim = 29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month]
        if not 1 <= day <= dim or hour > 23 or minute > 59 or sec > 59:
            raise ValueError(f"field out of range in {text!r}")
        frac = m.group(7) or ""
        nanos = int((frac[:9]).ljust(9, "0")) if frac else 0
        if m.group(8):
            offset = 0
        else:
            oh, om = int(m.group(10)), int(m.group(11))
            if oh > 23 or om > 59:
                raise ValueError(f"zone offset out of range in {text!r}")
            offset = (oh * 3600 + om * 60) * (-1 if m.group(9) == "-" else 1)
        local = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + sec
        return cls((local - offset) * _NS + nanos, offset)

    def _civil(self) -> tuple[int, int, int, int, int]:
        sec, nanos = divmod(self.ns, _NS)
        days, sod = divmod(sec + self.offset, 86400)
        y, m, d = _civil_from_days(days)
        return y, m, d, sod, nanos

    @property
    def year(self) -> int:
        return self._civil()[0]

    def rfc3339nano(self) -> str:
        """Go ``t.Format(time.RFC3339Nano)`` (years must be within 0..9999)."""
        sec, nanos = divmod(self.ns, _NS)
        hour, rem = divmod(sec + self.offset, 3600)
        prefix = _HOUR_PREFIXES.get(hour)
        if prefix is None:
            prefix = _hour_prefix(hour)
        text = f"{prefix}{rem // 60:02d}:{rem % 60:02d}"
        if nanos:
            text += "." + f"{nanos:09d}".rstrip("0")
        zone = _ZONES.get(self.offset)
        if zone is None:
            zone = _zone(self.offset)
        return text + zone

    def fixed(self) -> GoTime:
        """restic's ``FixTime``: clamp the year into 0..9999 keeping everything else."""
        if _FIRST_LOCAL_SECOND <= self.ns // _NS + self.offset < _END_LOCAL_SECOND:
            return self
        y, mo, d, sod, nanos = self._civil()
        new_y = 0 if y < 0 else 9999
        days = _days_from_civil(new_y, mo, 1) + d - 1  # Feb 29 normalises to Mar 1 like Go
        return GoTime((days * 86400 + sod - self.offset) * _NS + nanos, self.offset)

    def __str__(self) -> str:
        return self.rfc3339nano()


# Formatting caches: the "YYYY-MM-DDTHH:" of a local hour and the zone suffix of an offset. Files
# of one tree mostly share a few hours and one or two offsets, so most times skip the calendar
# arithmetic. Both are bounded; losing an entry to a concurrent reset only costs a recomputation.
_HOUR_PREFIXES: dict[int, str] = {}
_ZONES: dict[int, str] = {}
_CACHE_LIMIT = 4096
_FIRST_LOCAL_SECOND: Final = _days_from_civil(0, 1, 1) * 86400
_END_LOCAL_SECOND: Final = _days_from_civil(10000, 1, 1) * 86400


def _hour_prefix(hour: int) -> str:
    y, mo, d = _civil_from_days(hour // 24)
    if not 0 <= y <= 9999:
        raise ValueError(f"year {y} cannot be written as RFC3339; use fixed() first")
    prefix = f"{y:04d}-{mo:02d}-{d:02d}T{hour % 24:02d}:"
    if len(_HOUR_PREFIXES) >= _CACHE_LIMIT:
        _HOUR_PREFIXES.clear()
    _HOUR_PREFIXES[hour] = prefix
    return prefix


def _zone(offset: int) -> str:
    if offset == 0:
        text = "Z"
    else:
        minutes = abs(offset) // 60  # Go truncates toward zero: "-00:19" for -00:19:32
        sign = "-" if offset < 0 and minutes else "+"
        text = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    if len(_ZONES) >= _CACHE_LIMIT:
        _ZONES.clear()
    _ZONES[offset] = text
    return text


#: Go's zero ``time.Time`` ("0001-01-01T00:00:00Z"), what Go decodes for a missing time.
GO_ZERO_TIME: Final = GoTime(_days_from_civil(1, 1, 1) * 86400 * _NS, 0)


# --------------------------------------------------------------------------------------------
# Go strings: UTF-8 decoding with Go's per-byte error rule, strconv.Quote/Unquote, JSON strings
# --------------------------------------------------------------------------------------------

_BAD_BYTE_MARK = "\ud800"  # never produced by decoding valid UTF-8


def _go_replace_handler(exc: UnicodeError) -> tuple[str, int]:
    # Go's utf8.DecodeRune consumes exactly one byte of an invalid sequence.
    assert isinstance(exc, UnicodeDecodeError)
    return _BAD_BYTE_MARK, exc.start + 1


codecs.register_error("safekeep-go-utf8", _go_replace_handler)

# Bytes that a Go JSON string writes verbatim (ASCII only; anything else takes the slow path).
_JSON_NEEDS_WORK = re.compile(rb"[^\x20\x21\x23-\x25\x27-\x3b\x3d\x3f-\x5b\x5d-\x7f]")
_JSON_ESCAPES: dict[int, str] = {c: f"\\u{c:04x}" for c in range(0x20)}
_JSON_ESCAPES.update(
    {
        ord("\n"): "\\n",
        ord("\r"): "\\r",
        ord("\t"): "\\t",
        ord('"'): '\\"',
        ord("\\"): "\\\\",
        ord("<"): "\\u003c",
        ord(">"): "\\u003e",
        ord("&"): "\\u0026",
        0x2028: "\\u2028",
        0x2029: "\\u2029",
        ord(_BAD_BYTE_MARK): "\\ufffd",
    }
)


def _json_str_bytes(raw: bytes) -> bytes:
    """A Go ``string`` holding ``raw`` as Go ``encoding/json`` writes it (with quotes)."""
    if _JSON_NEEDS_WORK.search(raw) is None:
        return b'"' + raw + b'"'
    text = raw.decode("utf-8", "safekeep-go-utf8")
    return b'"' + text.translate(_JSON_ESCAPES).encode("utf-8") + b'"'


def _json_str(text: str) -> bytes:
    """A Python ``str`` as a Go JSON string (lone surrogates from surrogateescape → raw bytes)."""
    return _json_str_bytes(text.encode("utf-8", "surrogateescape"))


# Code points assigned in Unicode 14.0 (Python 3.11) but not in 13.0 (Go 1.19): not printable
# for Go's strconv.IsPrint. Verified against /usr/bin/restic 0.14 over U+0080..U+10FFFF.
_GO_UNICODE13_UNASSIGNED_RANGES: Final = (
    (0x61D, 0x61D), (0x870, 0x88E), (0x898, 0x89F), (0x8B5, 0x8B5), (0x8C8, 0x8D2), (0xC3C, 0xC3C),
    (0xC5D, 0xC5D), (0xCDD, 0xCDD), (0x170D, 0x170D), (0x1715, 0x1715), (0x171F, 0x171F),
    (0x180F, 0x180F), (0x1AC1, 0x1ACE), (0x1B4C, 0x1B4C), (0x1B7D, 0x1B7E), (0x1DFA, 0x1DFA),
    (0x20C0, 0x20C0), (0x2C2F, 0x2C2F), (0x2C5F, 0x2C5F), (0x2E53, 0x2E5D), (0x9FFD, 0x9FFF),
    (0xA7C0, 0xA7C1), (0xA7D0, 0xA7D1), (0xA7D3, 0xA7D3), (0xA7D5, 0xA7D9), (0xA7F2, 0xA7F4),
    (0xFBC2, 0xFBC2), (0xFD40, 0xFD4F), (0xFDCF, 0xFDCF), (0xFDFE, 0xFDFF), (0x10570, 0x1057A),
    (0x1057C, 0x1058A), (0x1058C, 0x10592), (0x10594, 0x10595), (0x10597, 0x105A1),
    (0x105A3, 0x105B1), (0x105B3, 0x105B9), (0x105BB, 0x105BC), (0x10780, 0x10785),
    (0x10787, 0x107B0), (0x107B2, 0x107BA), (0x10F70, 0x10F89), (0x11070, 0x11075),
    (0x110C2, 0x110C2), (0x116B9, 0x116B9), (0x11740, 0x11746), (0x11AB0, 0x11ABF),
    (0x12F90, 0x12FF2), (0x16A70, 0x16ABE), (0x16AC0, 0x16AC9), (0x1AFF0, 0x1AFF3),
    (0x1AFF5, 0x1AFFB), (0x1AFFD, 0x1AFFE), (0x1B11F, 0x1B122), (0x1CF00, 0x1CF2D),
    (0x1CF30, 0x1CF46), (0x1CF50, 0x1CFC3), (0x1D1E9, 0x1D1EA), (0x1DF00, 0x1DF1E),
    (0x1E290, 0x1E2AE), (0x1E7E0, 0x1E7E6), (0x1E7E8, 0x1E7EB), (0x1E7ED, 0x1E7EE),
    (0x1E7F0, 0x1E7FE), (0x1F6DD, 0x1F6DF), (0x1F7F0, 0x1F7F0), (0x1F979, 0x1F979),
    (0x1F9CC, 0x1F9CC), (0x1FA7B, 0x1FA7C), (0x1FAA9, 0x1FAAC), (0x1FAB7, 0x1FABA),
    (0x1FAC3, 0x1FAC5), (0x1FAD7, 0x1FAD9), (0x1FAE0, 0x1FAE7), (0x1FAF0, 0x1FAF6),
    (0x2A6DE, 0x2A6DF), (0x2B735, 0x2B738),
)  # fmt: skip
_GO_UNICODE13_UNASSIGNED: Final = frozenset(
    cp for lo, hi in _GO_UNICODE13_UNASSIGNED_RANGES for cp in range(lo, hi + 1)
)
_PRINT_CATEGORIES: Final = frozenset("LMNPS")


def go_is_print(cp: int) -> bool:
    """Go 1.19 ``strconv.IsPrint``."""
    if cp <= 0xFF:
        return 0x20 <= cp <= 0x7E or (0xA1 <= cp <= 0xFF and cp != 0xAD)
    if cp in _GO_UNICODE13_UNASSIGNED:
        return False
    return unicodedata.category(chr(cp))[0] in _PRINT_CATEGORIES


_QUOTE_FAST = re.compile(rb"[ !#-%'-;=?-\[\]-~]*")  # printable ASCII without " \ < > &
_QUOTE_SIMPLE = {
    0x07: "\\a",
    0x08: "\\b",
    0x0C: "\\f",
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x0B: "\\v",
    0x22: '\\"',
    0x5C: "\\\\",
}


def go_quote(raw: bytes) -> str:
    """Go ``strconv.Quote(string(raw))`` without the outer quotes."""
    if _QUOTE_FAST.fullmatch(raw):
        return raw.decode("ascii")
    text = raw.decode("utf-8", "surrogateescape")
    out: list[str] = []
    append = out.append
    for ch in text:
        cp = ord(ch)
        simple = _QUOTE_SIMPLE.get(cp)
        if simple is not None:
            append(simple)
        elif 0xDC80 <= cp <= 0xDCFF:  # an invalid UTF-8 byte
            append(f"\\x{cp - 0xDC00:02x}")
        elif go_is_print(cp):
            append(ch)
        elif cp < 0x20 or cp == 0x7F:
            append(f"\\x{cp:02x}")
        elif cp < 0x10000:
            append(f"\\u{cp:04x}")
        else:
            append(f"\\U{cp:08x}")
    return "".join(out)


_UNQUOTE_TOKEN = re.compile(
    r'\\(?:x([0-9a-fA-F]{2})|([0-7]{3})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([abfnrtv\\"]))'
    r'|([^\\"\n]+)'
)
_UNQUOTE_SIMPLE = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}


def go_unquote(quoted: str) -> bytes:
    """Go ``strconv.Unquote('"' + quoted + '"')`` as raw bytes; ``ValueError`` on bad syntax."""
    if "\\" not in quoted and '"' not in quoted and "\n" not in quoted:
        return _utf8(quoted)
    out = bytearray()
    pos = 0
    n = len(quoted)
    while pos < n:
        m = _UNQUOTE_TOKEN.match(quoted, pos)
        if m is None:
            raise ValueError(f"invalid Go quoted string: {quoted!r}")
        pos = m.end()
        hx, octal, u4, u8, simple, plain = m.groups()
        if plain is not None:
            out += _utf8(plain)
        elif hx is not None:
            out.append(int(hx, 16))
        elif octal is not None:
            value = int(octal, 8)
            if value > 255:
                raise ValueError(f"invalid octal escape in {quoted!r}")
            out.append(value)
        elif simple is not None:
            out.append(_UNQUOTE_SIMPLE[simple])
        else:
            cp = int(u4 or u8, 16)
            if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                raise ValueError(f"invalid rune escape in {quoted!r}")
            out += chr(cp).encode("utf-8")
    return bytes(out)


def _utf8(text: str) -> bytes:
    """UTF-8 of a JSON-decoded str; lone surrogates become U+FFFD as in Go's JSON decoder."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return re.sub("[\ud800-\udfff]", "\ufffd", text).encode("utf-8")


# --------------------------------------------------------------------------------------------
# Node
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Node:
    """One entry of a tree, field for field restic's ``Node`` (Go struct order)."""

    name: bytes
    type: str
    mode: int = 0
    mtime: GoTime = GO_ZERO_TIME
    atime: GoTime = GO_ZERO_TIME
    ctime: GoTime = GO_ZERO_TIME
    uid: int = 0
    gid: int = 0
    user: str = ""
    group: str = ""
    inode: int = 0
    device_id: int = 0
    size: int = 0
    links: int = 0
    #: raw target bytes (``linktarget`` or, if present, ``linktarget_raw`` when read)
    linktarget: bytes = b""
    #: (name, value) in listxattr order; names are raw bytes
    extended_attributes: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: restic ≥ 0.17 ``generic_attributes``: key → compact raw JSON of the value
    generic_attributes: dict[str, bytes] = field(default_factory=dict)
    device: int = 0
    #: data blob IDs (32 bytes each); ``None`` is JSON ``null`` (everything but files)
    content: list[bytes] | None = None
    subtree: bytes | None = None
    error: str = ""


def _check_uint(value: int, bits: int, what: str) -> int:
    if value < 0 or value >> bits:
        raise ValueError(f"node field {what} out of range for uint{bits}: {value}")
    return value


def _id_hex(value: bytes, what: str) -> bytes:
    if len(value) != 32:
        raise ValueError(f"node {what} must be a 32-byte ID, got {len(value)} bytes")
    return b'"' + value.hex().encode("ascii") + b'"'


def _cached_json_str(text: str) -> bytes:
    """``_json_str`` for the few strings every node repeats (type, user and group names)."""
    out = _SHORT_STRINGS.get(text)
    if out is None:
        out = _json_str(text)
        if len(_SHORT_STRINGS) >= 1024:
            _SHORT_STRINGS.clear()
        _SHORT_STRINGS[text] = out
    return out


_SHORT_STRINGS: dict[str, bytes] = {}
_UINT32: Final = 1 << 32
_UINT64: Final = 1 << 64


def _time_json(t: GoTime) -> bytes:
    return t.fixed().rfc3339nano().encode("ascii")


_PLAIN_FILE = (
    b'{"name":"%s","type":"file","mode":%d,"mtime":"%s","atime":"%s","ctime":"%s","uid":%d,"gid":%d,'
    b'"user":%s,"group":%s,"inode":%d,"device_id":%d,"size":%d,"links":%d,"content":[%s]}'
)


def _plain_file(node: Node) -> bytes | None:
    """The encoding of the usual file node (every number set, plain name, nothing optional),
    in one formatting step; None when the node needs the general path."""
    name, mode, uid, gid = node.name, node.mode, node.uid, node.gid
    inode, device_id, size, links = node.inode, node.device_id, node.size, node.links
    content = node.content
    if not (
        node.type == "file"
        and content
        and 0 < mode < _UINT32
        and 0 <= uid < _UINT32
        and 0 <= gid < _UINT32
        and 0 < inode < _UINT64
        and 0 < device_id < _UINT64
        and 0 < size < _UINT64
        and 0 < links < _UINT64
        and node.user
        and node.group
        and not (node.linktarget or node.extended_attributes or node.generic_attributes)
        and not (node.device or node.subtree is not None or node.error)
        and _QUOTE_FAST.fullmatch(name)
    ):
        return None
    for c in content:
        if len(c) != 32:
            return None
    mtime = _time_json(node.mtime)
    return _PLAIN_FILE % (
        name,
        mode,
        mtime,
        mtime if node.atime is node.mtime else _time_json(node.atime),
        _time_json(node.ctime),
        uid,
        gid,
        _cached_json_str(node.user),
        _cached_json_str(node.group),
        inode,
        device_id,
        size,
        links,
        b'"' + '","'.join([c.hex() for c in content]).encode("ascii") + b'"',
    )


def encode_node(node: Node, *, write_linktarget_raw: bool = True) -> bytes:
    """One node's JSON exactly as restic's ``Node.MarshalJSON`` writes it."""
    if node.type == "file" and (plain := _plain_file(node)) is not None:
        return plain
    name = node.name
    if _QUOTE_FAST.fullmatch(name):
        name_json = b'"' + name + b'"'
    else:
        name_json = _json_str_bytes(go_quote(name).encode("utf-8"))
    parts = [b'{"name":', name_json, b',"type":', _cached_json_str(node.type)]
    mode = node.mode
    if mode:
        parts += (b',"mode":', b"%d" % (mode if 0 < mode < _UINT32 else _check_uint(mode, 32, "mode")))
    mtime = _time_json(node.mtime)
    atime = mtime if node.atime is node.mtime else _time_json(node.atime)
    uid, gid = node.uid, node.gid
    if not (0 <= uid < _UINT32 and 0 <= gid < _UINT32):
        _check_uint(uid, 32, "uid")
        _check_uint(gid, 32, "gid")
    parts += (
        b',"mtime":"',
        mtime,
        b'","atime":"',
        atime,
        b'","ctime":"',
        _time_json(node.ctime),
        b'","uid":%d,"gid":%d' % (uid, gid),
    )
    if node.user:
        parts += (b',"user":', _cached_json_str(node.user))
    if node.group:
        parts += (b',"group":', _cached_json_str(node.group))
    for key, value in ((b"inode", node.inode), (b"device_id", node.device_id), (b"size", node.size),
                       (b"links", node.links)):  # fmt: skip
        if value:
            if not 0 < value < _UINT64:
                _check_uint(value, 64, key.decode())
            parts.append(b',"%s":%d' % (key, value))
    if node.linktarget:
        parts += (b',"linktarget":', _json_str_bytes(node.linktarget))
        if write_linktarget_raw:
            try:
                node.linktarget.decode("utf-8")
            except UnicodeDecodeError:
                parts += (b',"linktarget_raw":"', base64.b64encode(node.linktarget), b'"')
    if node.extended_attributes:
        attrs = [
            b'{"name":' + _json_str_bytes(name) + b',"value":"' + base64.b64encode(value) + b'"}'
            for name, value in node.extended_attributes
        ]
        parts += (b',"extended_attributes":[', b",".join(attrs), b"]")
    if node.generic_attributes:
        keys = sorted(node.generic_attributes, key=lambda k: k.encode("utf-8", "surrogateescape"))
        items = [_json_str(k) + b":" + _compact_raw(node.generic_attributes[k]) for k in keys]
        parts += (b',"generic_attributes":{', b",".join(items), b"}")
    if node.device:
        parts.append(b',"device":%d' % _check_uint(node.device, 64, "device"))
    content = node.content
    if content is None:
        parts.append(b',"content":null')
    elif not content:
        parts.append(b',"content":[]')
    else:
        for c in content:
            if len(c) != 32:
                _id_hex(c, "content ID")
        parts += (b',"content":["', '","'.join([c.hex() for c in content]).encode("ascii"), b'"]')
    if node.subtree is not None:
        parts += (b',"subtree":', _id_hex(node.subtree, "subtree"))
    if node.error:
        parts += (b',"error":', _json_str(node.error))
    parts.append(b"}")
    return b"".join(parts)


def encode_tree(nodes: list[Node], *, write_linktarget_raw: bool = True) -> bytes:
    """The tree blob for ``nodes``, which must be strictly ascending by name bytes.

    Unsorted input or duplicate names raise ``ValueError`` (restic's ``Tree.Insert`` rejects
    duplicates; sorting is the caller's job so mistakes are not hidden).
    """
    prev: bytes | None = None
    for node in nodes:
        if prev is not None and node.name <= prev:
            kind = "duplicate" if node.name == prev else "unsorted"
            raise ValueError(f"{kind} node name in tree: {node.name!r} after {prev!r}")
        prev = node.name
    body = b",".join(encode_node(n, write_linktarget_raw=write_linktarget_raw) for n in nodes)
    return b'{"nodes":[' + body + b"]}\n"


# --------------------------------------------------------------------------------------------
# Generic JSON values (generic_attributes) in Go's compact form
# --------------------------------------------------------------------------------------------


class _RawNumber(str):
    """A JSON number kept as its source text, so it is re-emitted unchanged."""

    __slots__ = ()


def _go_json_value(value: object) -> bytes:
    if value is None:
        return b"null"
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if isinstance(value, _RawNumber):
        return value.encode("ascii")
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, float):
        return json.dumps(value).encode("ascii")
    if isinstance(value, list):
        return b"[" + b",".join(_go_json_value(v) for v in value) + b"]"
    if isinstance(value, dict):
        # RawMessage is compacted, not re-sorted: keep the source order.
        items = (_json_str(str(k)) + b":" + _go_json_value(v) for k, v in value.items())
        return b"{" + b",".join(items) + b"}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _loads(data: bytes | str) -> Any:
    return json.loads(
        data,
        parse_int=_RawNumber,
        parse_float=_RawNumber,
        parse_constant=_reject_constant,
        object_pairs_hook=dict,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _compact_raw(raw: bytes) -> bytes:
    """Go's ``compact`` of a ``json.RawMessage`` (HTML-escaped, no whitespace)."""
    try:
        return _go_json_value(_loads(raw))
    except ValueError as exc:
        raise ValueError(f"generic attribute is not valid JSON: {raw[:80]!r}") from exc


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _get_uint(obj: dict[str, Any], key: str, bits: int) -> int:
    value = obj.get(key)
    if value is None:
        return 0
    if type(value) is not int:
        raise TreeFormatError(f"node field {key!r} must be an unsigned integer, got {value!r}")
    if value < 0 or value >> bits:
        raise TreeFormatError(f"node field {key!r} out of range for uint{bits}: {value}")
    return value


def _get_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if type(value) is not str:
        raise TreeFormatError(f"node field {key!r} must be a string, got {value!r}")
    return value


def _get_time(obj: dict[str, Any], key: str) -> GoTime:
    value = obj.get(key)
    if value is None:
        return GO_ZERO_TIME
    if type(value) is not str:
        raise TreeFormatError(f"node field {key!r} must be a time string, got {value!r}")
    try:
        return GoTime.parse(value)
    except ValueError as exc:
        raise TreeFormatError(f"node field {key!r}: {exc}") from exc


def _get_id(value: object, key: str) -> bytes:
    if type(value) is not str or not _HEX64.fullmatch(value):
        raise TreeFormatError(f"node field {key!r} must be a 64-hex-digit ID, got {value!r}")
    return bytes.fromhex(value)


def _b64(value: object, key: str) -> bytes:
    if value is None:
        return b""
    if type(value) is not str:
        raise TreeFormatError(f"node field {key!r} must be base64 text, got {value!r}")
    try:
        return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TreeFormatError(f"node field {key!r} is not valid base64: {value[:80]!r}") from exc


def _node_name(obj: object) -> bytes:
    """The name of a decoded tree node; ``TreeFormatError`` unless it is an object with a valid
    Go-quoted string name."""
    if not isinstance(obj, dict):
        raise TreeFormatError(f"tree node must be a JSON object, got {type(obj).__name__}")
    raw_name = obj.get("name")
    if type(raw_name) is not str:
        raise TreeFormatError(f"node name must be a string, got {raw_name!r}")
    try:
        return go_unquote(raw_name)
    except ValueError as exc:
        raise TreeFormatError(f"node name is not a valid Go-quoted string: {raw_name!r}") from exc


def _node_from_obj(obj: object) -> Node:
    name = _node_name(obj)
    assert isinstance(obj, dict)  # checked by _node_name

    raw_target = obj.get("linktarget_raw")
    if raw_target is not None:
        linktarget = _b64(raw_target, "linktarget_raw")
    else:
        linktarget = _utf8(_get_str(obj, "linktarget"))

    xattrs: list[tuple[bytes, bytes]] = []
    raw_xattrs = obj.get("extended_attributes")
    if raw_xattrs is not None:
        if not isinstance(raw_xattrs, list):
            raise TreeFormatError("node field 'extended_attributes' must be a list")
        for attr in raw_xattrs:
            if not isinstance(attr, dict):
                raise TreeFormatError("extended attribute must be a JSON object")
            xattrs.append((_utf8(_get_str(attr, "name")), _b64(attr.get("value"), "value")))

    generic: dict[str, bytes] = {}
    raw_generic = obj.get("generic_attributes")
    if raw_generic is not None:
        if not isinstance(raw_generic, dict):
            raise TreeFormatError("node field 'generic_attributes' must be an object")
        generic = {str(k): _go_json_value(v) for k, v in raw_generic.items()}

    raw_content = obj.get("content")
    content: list[bytes] | None
    if raw_content is None:
        content = None
    elif isinstance(raw_content, list):
        content = [_get_id(c, "content") for c in raw_content]
    else:
        raise TreeFormatError("node field 'content' must be a list or null")

    raw_subtree = obj.get("subtree")
    subtree = None if raw_subtree is None else _get_id(raw_subtree, "subtree")

    return Node(
        name=name,
        type=_get_str(obj, "type"),
        mode=_get_uint(obj, "mode", 32),
        mtime=_get_time(obj, "mtime"),
        atime=_get_time(obj, "atime"),
        ctime=_get_time(obj, "ctime"),
        uid=_get_uint(obj, "uid", 32),
        gid=_get_uint(obj, "gid", 32),
        user=_get_str(obj, "user"),
        group=_get_str(obj, "group"),
        inode=_get_uint(obj, "inode", 64),
        device_id=_get_uint(obj, "device_id", 64),
        size=_get_uint(obj, "size", 64),
        links=_get_uint(obj, "links", 64),
        linktarget=linktarget,
        extended_attributes=xattrs,
        generic_attributes=generic,
        device=_get_uint(obj, "device", 64),
        content=content,
        subtree=subtree,
        error=_get_str(obj, "error"),
    )


def _plain_loads(data: bytes) -> Any:
    # ints as int (fast); floats kept as their source text (exact generic_attributes round trip;
    # a float where a node field wants an integer fails validation).
    return json.loads(data, parse_float=_RawNumber, parse_constant=_reject_constant)


def decode_node(data: bytes) -> Node:
    """Decode one node's JSON (the inverse of :func:`encode_node`)."""
    try:
        obj = _plain_loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TreeFormatError(f"node is not valid JSON: {exc}") from exc
    return _node_from_obj(obj)


def _tree_objects(data: bytes) -> list[Any]:
    try:
        obj = _plain_loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TreeFormatError(f"tree blob is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise TreeFormatError("tree blob must be a JSON object")
    raw_nodes = obj.get("nodes")
    if raw_nodes is None:
        return []
    if not isinstance(raw_nodes, list):
        raise TreeFormatError("tree field 'nodes' must be a list")
    return raw_nodes


def decode_tree(data: bytes) -> list[Node]:
    """Decode a tree blob into its nodes; ``TreeFormatError`` if it is not restic tree JSON."""
    return [_node_from_obj(item) for item in _tree_objects(data)]


class NodeView:
    """One node of a tree decoded lazily: a field is checked and converted only when read.

    For callers that look at a few fields of many nodes (the archiver comparing files with the
    parent snapshot). A malformed field raises ``TreeFormatError`` when it is read."""

    __slots__ = ("_obj",)

    def __init__(self, obj: dict[str, Any]) -> None:
        self._obj = obj

    @property
    def type(self) -> str:
        return _get_str(self._obj, "type")

    @property
    def size(self) -> int:
        return _get_uint(self._obj, "size", 64)

    @property
    def inode(self) -> int:
        return _get_uint(self._obj, "inode", 64)

    @property
    def mtime(self) -> GoTime:
        return _get_time(self._obj, "mtime")

    @property
    def ctime(self) -> GoTime:
        return _get_time(self._obj, "ctime")

    def time_text(self, key: str) -> str | None:
        """A time field as stored (``"mtime"``, ``"atime"``, ``"ctime"``), None if not a string.

        Comparing this with :meth:`GoTime.rfc3339nano` of ``GoTime.fixed()`` skips the parse:
        equal text is the same instant and zone offset as Go wrote it."""
        value = self._obj.get(key)
        return value if type(value) is str else None

    @property
    def content(self) -> list[bytes] | None:
        raw = self._obj.get("content")
        if raw is None:
            return None
        if not isinstance(raw, list):
            raise TreeFormatError("node field 'content' must be a list or null")
        return [_get_id(c, "content") for c in raw]

    @property
    def subtree(self) -> bytes | None:
        raw = self._obj.get("subtree")
        return None if raw is None else _get_id(raw, "subtree")

    def node(self) -> Node:
        """The full node."""
        return _node_from_obj(self._obj)


def decode_tree_lazy(data: bytes) -> dict[bytes, NodeView]:
    """A tree blob's nodes by name, each decoded only as far as it is read (see ``NodeView``).

    One JSON parse for the whole tree and the names checked; ``TreeFormatError`` if the blob is
    not restic tree JSON or a name is not valid. A repeated name keeps its last node."""
    out: dict[bytes, NodeView] = {}
    for obj in _tree_objects(data):
        out[_node_name(obj)] = NodeView(obj)
    return out
