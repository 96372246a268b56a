"""``safekeep cat TYPE [ID]``: print a repository object, decrypted, as restic's ``cat`` does.

- ``config`` — the repository config;
- ``index ID``, ``snapshot ID``, ``lock ID`` — the decrypted JSON file;
- ``key ID`` — the key file as stored (its master key stays encrypted under the password);
- ``pack ID`` — the pack's decrypted header: its blobs with type, ID, offset and lengths;
- ``blob ID`` — the plaintext of a data or tree blob, raw bytes on stdout;
- ``tree SNAPSHOT[:PATH]`` — the tree of a snapshot, or of a folder in it.

IDs may be shortened to a unique prefix; ``SNAPSHOT`` may be ``latest``. JSON is printed indented
whether or not ``--json`` is given. ``cat masterkey`` is refused: Safekeep never prints the master
key (anyone holding it can read every backup, whatever the passwords).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.treewalk import find_node
from safekeep.common.errors import SafekeepError, UsageError
from safekeep.core.format.pack import PackFormatError, parse_trailer, read_header
from safekeep.core.repository import Repository
from safekeep.storage.base import FileType, Handle

TYPES = ("config", "index", "snapshot", "key", "lock", "pack", "blob", "tree", "masterkey")
_FILE_TYPES = {"index": FileType.INDEX, "snapshot": FileType.SNAPSHOT, "lock": FileType.LOCK}


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "cat", help="print a repository object", description="Print a decrypted repository object as JSON."
    )
    p.add_argument("type", choices=TYPES, metavar="TYPE", help="one of: " + ", ".join(TYPES[:-1]))
    p.add_argument(
        "id", nargs="?", metavar="ID", help="object ID (or unique prefix); for tree: SNAPSHOT[:PATH]"
    )
    p.set_defaults(run=run)


def _pretty(raw: bytes) -> str:
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        return raw.decode("utf-8", "replace")


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    kind: str = args.type
    if kind == "masterkey":
        raise UsageError(
            "Safekeep never prints the master key.",
            hint="Anyone holding it can read every backup. Add a password with 'safekeep key add' instead.",
        )
    if kind != "config" and not args.id:
        raise UsageError(f"'cat {kind}' needs an ID.")
    with ctx.repository(read_only=True) as repo:
        data = _render(ctx, repo, kind, args.id or "")
    ctx.out.write_bytes(data)
    return 0


def _render(ctx: CliContext, repo: Repository, kind: str, ref: str) -> bytes:
    cancel = ctx.cancel
    if kind == "config":
        text = _pretty(repo.config.to_json())
    elif kind in _FILE_TYPES:
        ftype = _FILE_TYPES[kind]
        if kind == "snapshot":
            name = repo.find_snapshot(ref, cancel=cancel).id  # also accepts 'latest'
        else:
            name = repo.resolve_id(ftype, ref, cancel=cancel)
        text = _pretty(repo.load_unpacked(ftype, name, cancel=cancel))
    elif kind == "key":
        name = repo.resolve_id(FileType.KEY, ref, cancel=cancel)
        text = _pretty(repo.backend.load(Handle(FileType.KEY, name), cancel=cancel))
    elif kind == "pack":
        text = json.dumps(_pack_header(ctx, repo, ref), indent=2)
    elif kind == "blob":
        repo.load_index(cancel=cancel)
        return _blob(repo, ref)
    else:  # tree
        repo.load_index(cancel=cancel)
        snap_ref, _, path = ref.partition(":")
        snap = repo.find_snapshot(snap_ref, cancel=cancel)
        clean, _, tree = find_node(repo, snap.tree, path or "/", cancel=cancel)
        if tree is None:
            raise SafekeepError(f"{clean} is not a folder in snapshot {snap.id[:8]}.")
        text = _pretty(_blob(repo, tree.hex()))
    return (text + "\n").encode("utf-8")


def _pack_header(ctx: CliContext, repo: Repository, ref: str) -> list[dict[str, Any]]:
    name = repo.resolve_id(FileType.PACK, ref, cancel=ctx.cancel)
    h = Handle(FileType.PACK, name)
    size = repo.backend.stat(h, cancel=ctx.cancel).size
    try:
        hlen = parse_trailer(repo.backend.load(h, max(0, size - 4), 4, cancel=ctx.cancel), size)
        start = size - 4 - hlen
        blobs = read_header(repo.key, repo.backend.load(h, start, hlen, cancel=ctx.cancel), data_end=start)
    except PackFormatError as exc:
        raise SafekeepError(
            f"The header of pack {name[:16]} cannot be read: {exc}.",
            hint="Run 'safekeep check --read-data' to see what is affected.",
        ) from exc
    out: list[dict[str, Any]] = []
    for b in blobs:
        entry: dict[str, Any] = {
            "type": b.type.json_name,
            "id": b.id.hex(),
            "offset": b.offset,
            "length": b.length,
        }
        if b.uncompressed_length:
            entry["uncompressed_length"] = b.uncompressed_length
        out.append(entry)
    return out


def _blob(repo: Repository, ref: str) -> bytes:
    prefix = ref.lower()
    found = {(b.type, b.id) for _, b in repo.index.blobs() if b.id.hex().startswith(prefix)}
    if not found:
        raise SafekeepError(f"No blob matches {ref!r}.", hint="Check the ID (see 'safekeep cat pack ID').")
    ids = {bid for _, bid in found}
    if len(ids) > 1:
        raise SafekeepError(f"{ref!r} matches several blobs.", hint="Give more characters of the ID.")
    btype, bid = sorted(found)[0]
    return repo.load_blob(btype, bid)
