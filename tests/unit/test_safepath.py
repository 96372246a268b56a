"""safe_join refuses names and symlinked parents that would escape the restore target."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from safekeep.common.errors import SafekeepError
from safekeep.core.fs.safepath import UnsafePathError, safe_join


def test_plain_join(tmp_path: Path) -> None:
    assert safe_join(str(tmp_path), [b"a", b"b\xff"]) == os.fsdecode(
        os.path.join(bytes(tmp_path), b"a", b"b\xff")
    )
    (tmp_path / "a").mkdir()
    assert safe_join(str(tmp_path), [b"a", b"c"]) == str(tmp_path / "a" / "c")
    assert safe_join(str(tmp_path), []) == str(tmp_path)


@pytest.mark.parametrize("bad", [b"", b".", b"..", b"a/b", b"/abs", b"nul\0"])
def test_bad_names(tmp_path: Path, bad: bytes) -> None:
    with pytest.raises(UnsafePathError) as info:
        safe_join(str(tmp_path), [b"ok", bad])
    assert isinstance(info.value, SafekeepError)
    assert info.value.hint
    assert "unsafe name" in str(info.value)


def test_symlinked_parent(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "evil")
    with pytest.raises(UnsafePathError, match="evil"):
        safe_join(str(target), [b"evil", b"file"])
    with pytest.raises(UnsafePathError):
        safe_join(str(target), [b"evil"])


def test_symlinked_root_is_allowed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    assert safe_join(str(tmp_path / "link"), [b"x"]) == str(tmp_path / "link" / "x")


def test_file_as_parent(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(UnsafePathError):
        safe_join(str(tmp_path), [b"f", b"g"])
