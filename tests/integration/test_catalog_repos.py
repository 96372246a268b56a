"""The snapshot catalog on real repositories: one written by Safekeep, one written by restic.

The same folder is backed up three times (with changes in between) by each program. Search,
versions, deleted files, diff and folder listings must give the answers ``restic ls``,
``restic find`` and ``restic diff`` give where they overlap; the catalog must rebuild after its
file is deleted or damaged, and read every tree only once however many snapshots share it.
The ``find``, ``versions`` and ``diff`` commands run through their own ``register()`` parsers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import FAST_KDF_N, FAST_KDF_P, FAST_KDF_R, ResticRunner, settle_access_times, write_file

from safekeep.cli import diff_cmd, find_cmd, versions_cmd
from safekeep.cli.context import CliContext, GlobalOptions
from safekeep.cli.output import Output
from safekeep.common.cancel import NEVER, CancelToken
from safekeep.core.archiver import BackupOptions, backup
from safekeep.core.format.keys import KDFParams
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.state.catalog import (
    Catalog,
    Listing,
    RepositoryTrees,
    catalog_path,
    resolve,
    walk_entries,
)
from safekeep.storage.compose import open_backend

pytestmark = pytest.mark.restic


def make_v1(src: Path) -> None:
    write_file(src / "docs" / "budget-2025.xlsx", b"budget 2025")
    write_file(src / "docs" / "Budget-2026.XLSX", b"budget 2026")
    write_file(src / "docs" / "letter.txt", b"dear all\n")
    write_file(src / "docs" / "old" / "notes.txt", b"old notes\n")
    write_file(src / "docs" / "old" / "deep" / "a.txt", b"a\n")
    write_file(src / "photos" / "cat.jpg", b"\xff\xd8 a cat")
    write_file(src / "readme.txt", b"hello\n")
    for d in range(6):
        for f in range(4):
            write_file(src / "archive" / f"year{2010 + d}" / f"report{f}.txt", b"report %d %d\n" % (d, f))


def make_v2(src: Path) -> None:
    write_file(src / "docs" / "letter.txt", b"dear all, again\n")
    write_file(src / "docs" / "budget-2025.xlsx", b"budget 2025, revised")
    for p in sorted((src / "docs" / "old").rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    (src / "docs" / "old").rmdir()
    write_file(src / "new" / "x.txt", b"x\n")


def make_v3(src: Path) -> None:
    (src / "photos" / "cat.jpg").unlink()
    write_file(src / "photos" / "dog.jpg", b"\xff\xd8 a dog")


@dataclass
class Made:
    kind: str
    repo_dir: Path
    repo: Repository
    src: str  # the backed-up folder's absolute path, as paths in the snapshots start
    ids: list[str]  # snapshot IDs, oldest first


@pytest.fixture(scope="module", params=["safekeep", "restic"])
def made(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, restic_bin: str
) -> Iterator[Made]:
    """Three snapshots of the same changing folder, written by Safekeep or by restic (built once)."""
    base = tmp_path_factory.mktemp(f"catalog-{request.param}")
    src, repo_dir = base / "src", base / "repo"
    kind = request.param
    restic = ResticRunner(restic_bin, str(base / "restic-cache"))
    opts = RepositoryOptions(kdf=KDFParams(FAST_KDF_N, FAST_KDF_R, FAST_KDF_P))
    if kind == "safekeep":
        repo = Repository.init(open_backend(str(repo_dir)), "pw", options=opts)
    else:
        restic(repo_dir, "init")
    ids = []
    for step in (make_v1, make_v2, make_v3):
        step(src)
        settle_access_times(src)
        if kind == "safekeep":
            snap, _ = backup(repo, [str(src)], BackupOptions(hostname="office-pc"))
            ids.append(snap.id)
        else:
            restic(repo_dir, "backup", "--host", "office-pc", str(src))
    if kind == "restic":
        repo = Repository.open(open_backend(str(repo_dir)), "pw", options=opts)
        ids = [s["id"] for s in restic.json(repo_dir, "snapshots")]
    repo.ensure_index()
    yield Made(kind, repo_dir, repo, str(src), ids)
    repo.close()


def _restic_ls(restic: Any, made: Made, snap: str, *path: str) -> dict[str, dict[str, Any]]:
    """``restic ls --json``: path -> node."""
    out = restic(made.repo_dir, "ls", "--json", snap, *path).stdout.decode()
    nodes = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {n["path"]: n for n in nodes if n.get("struct_type") == "node"}


def _restic_diff(restic: Any, made: Made, a: str, b: str) -> dict[str, set[str]]:
    out = restic(made.repo_dir, "diff", a, b).stdout.decode()
    found: dict[str, set[str]] = {}
    for line in out.splitlines():
        m = re.fullmatch(r"([+\-MUT?]+)\s+(/.*)", line)
        if m:
            found.setdefault(m.group(1), set()).add(m.group(2))
    return found


def _under(paths: Any, src: str) -> set[str]:
    return {p for p in paths if p == src or p.startswith(src + "/")}


def test_catalog_answers_like_restic(made: Made, restic: Any, tmp_path: Path) -> None:
    s1, s2, s3 = made.ids
    src = made.src
    with Catalog(tmp_path / "cache" / "c.sqlite", made.repo) as cat:
        assert cat.update().added == 3
        assert [s.id for s in cat.snapshots()] == made.ids

        # list_dir: restic ls of a folder shows the folder and what is directly in it
        listed = cat.list_dir(s3, src + "/docs")
        ls = _restic_ls(restic, made, s3, src + "/docs")
        assert {src + "/docs/" + e.name: e.type for e in listed} == {
            p: n["type"] for p, n in ls.items() if p != src + "/docs"
        }
        for e in listed:
            if e.type == "file":
                assert e.size == ls[src + "/docs/" + e.name]["size"]

        # diff: the same added / removed / content-changed paths as restic diff
        for a, b in ((s1, s2), (s2, s3), (s1, s3)):
            d = cat.diff(a, b)
            theirs = _restic_diff(restic, made, a, b)
            shown = {
                "+": {c.path + ("/" if c.after and c.after.type == "dir" else "") for c in d.added},
                "-": {c.path + ("/" if c.before and c.before.type == "dir" else "") for c in d.removed},
                "M": {c.path for c in d.changed if c.content_changed},
            }
            for mod in ("+", "-", "M"):
                assert shown[mod] == theirs.get(mod, set()), (mod, a[:8], b[:8])

        # search: the same (path, snapshot) pairs as restic find
        found = restic.json(made.repo_dir, "find", "*.txt")
        theirs_pairs = {(m["path"], f["snapshot"]) for f in found for m in f["matches"]}
        ours = cat.search("*.txt", limit=None)
        ours_pairs = {(fv.path, s.id) for fv in ours for v in fv.versions for s in v.snapshots}
        assert ours_pairs == theirs_pairs
        assert [fv.path for fv in cat.search("budget*.xlsx")] == [
            src + "/docs/budget-2025.xlsx",
            src + "/docs/Budget-2026.XLSX",
        ]

        # versions: sizes and snapshots per version, checked against restic ls of each snapshot
        letter = src + "/docs/letter.txt"
        vs = cat.versions(letter)
        assert [[s.id for s in v.snapshots] for v in vs] == [[s1], [s2, s3]]
        assert [v.size for v in vs] == [
            _restic_ls(restic, made, s1, letter)[letter]["size"],
            _restic_ls(restic, made, s3, letter)[letter]["size"],
        ]
        assert [[s.id for s in v.snapshots] for v in cat.versions(src + "/docs/Budget-2026.XLSX")] == [
            [s1, s2, s3]
        ]

        # deleted: what s1 or s2 had and s3 has not, as the union of restic ls of the older ones
        older = set(_restic_ls(restic, made, s1)) | set(_restic_ls(restic, made, s2))
        gone = _under(older, src) - set(_restic_ls(restic, made, s3))
        deleted = cat.deleted()
        assert {d.path for d in deleted} == gone
        last = {d.path: d.last_snapshot.id for d in deleted}
        assert last[src + "/photos/cat.jpg"] == s2 and last[src + "/docs/old/deep/a.txt"] == s1


class CountingTrees(RepositoryTrees):
    def __init__(self, repo: Repository) -> None:
        super().__init__(repo, cache_entries=0)
        self.read: list[bytes] = []

    def load_listing(self, tree_id: bytes, *, cancel: CancelToken = NEVER) -> Listing:
        self.read.append(tree_id)
        return super().load_listing(tree_id, cancel=cancel)


def _trees_of(repo: Repository, root: bytes) -> set[bytes]:
    out = {root}
    out.update(e.subtree for _, e in walk_entries(RepositoryTrees(repo), root) if e.subtree is not None)
    return out


def test_catalog_reads_each_tree_once_and_rebuilds(made: Made, tmp_path: Path) -> None:
    roots = [made.repo.load_snapshot(i).tree for i in made.ids]
    per_snapshot = [_trees_of(made.repo, r) for r in roots]
    everything = set().union(*per_snapshot)
    path = catalog_path(tmp_path / "cache", made.repo.config.id)
    counting = CountingTrees(made.repo)
    with Catalog(path, made.repo, trees=counting) as cat:
        cat.update()
    # each distinct tree read exactly once, the first snapshot's in full, then only new trees
    assert sorted(counting.read) == sorted(everything)
    first = len(per_snapshot[0])
    assert set(counting.read[:first]) == per_snapshot[0]
    assert set(counting.read[first:]) == everything - per_snapshot[0]
    # the unchanged archive folder is one tree in all three snapshots, and it was read once
    archive = {resolve(RepositoryTrees(made.repo), r, made.src + "/archive").subtree for r in roots}
    assert len(archive) == 1 and counting.read.count(archive.pop() or b"") == 1

    # deleted: rebuilt from scratch
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with Catalog(path, made.repo) as cat:
        assert cat.snapshots() == []
        assert cat.update().added == 3
        assert len(cat.versions(made.src + "/docs/letter.txt")) == 2
    # damaged: rebuilt from scratch
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.write(os.urandom(min(size, 4096)))
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with Catalog(path, made.repo) as cat:
        assert cat.update().added == 3
        assert len(cat.search("*.jpg")) == 2


def _run(made: Made, cache: Path, *argv: str, json_mode: bool = True) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="safekeep")
    sub = parser.add_subparsers(dest="command")
    for module in (find_cmd, versions_cmd, diff_cmd):
        module.register(sub)
    args = parser.parse_args(list(argv))
    stdout = io.StringIO()
    out = Output(json_mode=json_mode, stdout=stdout, stderr=io.StringIO())
    options = GlobalOptions(repo=str(made.repo_dir), json=json_mode, cache_dir=str(cache))
    ctx = CliContext(options, out, CancelToken(), env={"SAFEKEEP_PASSWORD": "pw"})
    code: int = args.run(ctx, args)
    return code, stdout.getvalue()


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_cli_find_versions_diff(made: Made, restic: Any, tmp_path: Path) -> None:
    s1, s2, s3 = made.ids
    src = made.src
    cache = tmp_path / "cache"

    code, text = _run(made, cache, "find", "BUDGET*.xlsx")
    assert code == 0
    msgs = _lines(text)
    matches = [m for m in msgs if m["message_type"] == "match"]
    assert [m["path"] for m in matches] == [src + "/docs/budget-2025.xlsx", src + "/docs/Budget-2026.XLSX"]
    assert [v["snapshots"] for v in matches[0]["versions"]] == [[s1], [s2, s3]]
    assert msgs[-1] == {"message_type": "summary", "matches": 2, "truncated": False, "snapshots": 3}
    assert catalog_path(cache, made.repo.config.id).exists()

    code, text = _run(made, cache, "find", "*.jpg", "--snapshot", s3[:8])
    assert [m["path"] for m in _lines(text) if m["message_type"] == "match"] == [src + "/photos/dog.jpg"]
    code, text = _run(made, cache, "find", "*.txt", "--limit", "2")
    assert _lines(text)[-1]["truncated"] is True
    code, text = _run(made, cache, "find", "*.jpg", json_mode=False)
    assert code == 0 and src + "/photos/cat.jpg\n" in text and "2 matching paths in 3 snapshots" in text

    code, text = _run(made, cache, "versions", src + "/docs/letter.txt")
    versions = _lines(text)
    assert [(v["version"], v["first_snapshot"]["id"], v["last_snapshot"]["id"]) for v in versions] == [
        (1, s1, s1),
        (2, s2, s3),
    ]
    code, text = _run(made, cache, "versions", src + "/docs/letter.txt", json_mode=False)
    assert "Version" in text and s2[:8] in text and "2 versions" in text
    with pytest.raises(Exception, match="in none of the snapshots"):
        _run(made, cache, "versions", src + "/nothing/here.txt")

    code, text = _run(made, cache, "diff", s1, s2)
    msgs = _lines(text)
    changes = {(m["modifier"], m["path"]) for m in msgs if m["message_type"] == "change"}
    theirs = json.loads(
        "[" + ",".join(restic(made.repo_dir, "diff", "--json", s1, s2).stdout.decode().splitlines()) + "]"
    )
    assert changes == {(m["modifier"], m["path"]) for m in theirs if m["message_type"] == "change"}
    stats = msgs[-1]
    assert (
        stats["message_type"] == "statistics" and stats["added"]["files"] == 1 and stats["changed_files"] == 2
    )
    code, text = _run(made, cache, "diff", s2[:10], "latest", json_mode=False)
    assert code == 0 and f"-    {src}/photos/cat.jpg" in text and f"+    {src}/photos/dog.jpg" in text
