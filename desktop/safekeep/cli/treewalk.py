"""Walking a snapshot's directory trees, for ``ls`` and ``cat tree``.

Paths inside a snapshot are absolute and ``/``-separated, as restic shows them
(``/home/anna/Documents/letter.odt``); names are raw bytes in the trees and decoded with the
file-system encoding (``os.fsdecode``) for display. The repository's index must be loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.errors import SafekeepError
from safekeep.core.format.pack import BlobType
from safekeep.core.format.tree import Node, TreeFormatError, decode_tree
from safekeep.core.repository import Repository


class PathNotInSnapshot(SafekeepError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is not in the snapshot.",
            hint="Use 'safekeep ls SNAPSHOT' to see the paths it contains.",
        )


def load_tree(repo: Repository, tree_id: bytes, *, cancel: CancelToken = NEVER) -> list[Node]:
    data = repo.load_blob(BlobType.TREE, tree_id, cancel=cancel)
    try:
        return decode_tree(data)
    except TreeFormatError as exc:
        raise SafekeepError(
            f"The tree {tree_id.hex()[:16]} is damaged: {exc}",
            hint="Run 'safekeep check' to see what is affected.",
        ) from exc


def clean_path(path: str) -> str:
    """``/a/b`` for any of ``a/b``, ``/a/b/``, ``/a//b``; ``/`` for the root."""
    parts = [p for p in path.split("/") if p and p != "."]
    return "/" + "/".join(parts)


def find_node(
    repo: Repository, root: bytes, path: str, *, cancel: CancelToken = NEVER
) -> tuple[str, Node | None, bytes | None]:
    """Resolve ``path`` from the tree ``root``: (clean path, its node or None for ``/``, its tree)."""
    clean = clean_path(path)
    tree: bytes | None = root
    node: Node | None = None
    for part in [p for p in clean.split("/") if p]:
        if tree is None:
            raise PathNotInSnapshot(clean)
        name = os.fsencode(part)
        node = next((n for n in load_tree(repo, tree, cancel=cancel) if n.name == name), None)
        if node is None:
            raise PathNotInSnapshot(clean)
        tree = node.subtree if node.type == "dir" else None
    return clean, node, tree


def walk(
    repo: Repository,
    tree_id: bytes,
    prefix: str = "/",
    *,
    descend: Callable[[str, Node], bool] | None = None,
    cancel: CancelToken = NEVER,
) -> Iterator[tuple[str, Node]]:
    """Every (path, node) below ``tree_id`` depth-first in name order; ``descend`` prunes folders."""
    for node in load_tree(repo, tree_id, cancel=cancel):
        cancel.raise_if_cancelled()
        path = prefix.rstrip("/") + "/" + os.fsdecode(node.name)
        yield path, node
        if node.type == "dir" and node.subtree is not None and (descend is None or descend(path, node)):
            yield from walk(repo, node.subtree, path, descend=descend, cancel=cancel)
