"""Join names read from a repository onto a restore target without escaping it.

Names in a tree come from whoever wrote the repository, so they are untrusted: a name of ``..``
or one containing ``/`` would write outside the target, and a directory that is (or was replaced
by) a symlink inside the target would redirect everything below it. :func:`safe_join` refuses
both. It checks existing components with ``lstat``; the caller must still create directories and
files with no-follow semantics (``O_NOFOLLOW``/``O_EXCL``) to close the race with a concurrent
writer.
"""

from __future__ import annotations

import os
import stat

from safekeep.common.errors import SafekeepError

__all__ = ["UnsafePathError", "check_name", "safe_join"]


class UnsafePathError(SafekeepError):
    """A path from the repository would land outside the restore target."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(
            message,
            hint="The backup contains a suspicious file name; it was skipped. If you trust this "
            "backup, restore to an empty folder.",
        )
        self.path = path


def _show(components: list[bytes]) -> str:
    return "/".join(os.fsdecode(c) for c in components) or "."


def check_name(name: bytes, *, where: str = "") -> None:
    """Refuse a single path component that is empty, ``.``, ``..`` or contains ``/`` or NUL."""
    if name in (b"", b".", b"..") or b"/" in name or b"\0" in name:
        shown = repr(os.fsdecode(name))
        raise UnsafePathError(
            f"Refusing unsafe name {shown} in {where or 'the backup'}", path=f"{where}/{shown}"
        )


def safe_join(target_root: str, rel_components: list[bytes]) -> str:
    """``target_root`` joined with ``rel_components`` after checking every component.

    Raises :class:`UnsafePathError` if a component is not a plain name, or if an existing
    component *below* ``target_root`` (a parent or the final path) is a symlink. The target root
    itself may be a symlink: the user chose it.
    """
    root = os.fsencode(target_root)
    current = root
    for i, comp in enumerate(rel_components):
        check_name(comp, where=_show(rel_components[:i]))
        current = os.path.join(current, comp)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            # Nothing exists below here yet; remaining names only need the name check.
            for j in range(i + 1, len(rel_components)):
                check_name(rel_components[j], where=_show(rel_components[:j]))
            return os.fsdecode(os.path.join(current, *rel_components[i + 1 :]))
        except NotADirectoryError as exc:
            raise UnsafePathError(
                f"Cannot restore {_show(rel_components)}: a parent is not a folder", path=os.fsdecode(current)
            ) from exc
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(
                f"Refusing to restore through symlink {os.fsdecode(current)!r} inside the target "
                f"(restoring {_show(rel_components)!r})",
                path=os.fsdecode(current),
            )
    return os.fsdecode(current)
