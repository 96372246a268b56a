"""The restore window against real repositories: one made by Safekeep (backups through the
Service and its worker processes) and one made by the restic program.

Browse (folders, rows, details), search, version history, deleted files, compare, restoring with
each conflict policy (the "ask" dialog answered here), restoring into another folder, opening
an old version, cancelling mid-restore (nothing half-written remains), a folder of 100,000
entries (the event loop keeps turning while it loads), and errors in plain words. Screenshots of
each mode go to ``SAFEKEEP_SCREENSHOTS``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QModelIndex, Qt, QTimer, QUrl
from pytestqt.qtbot import QtBot

from safekeep.core.format.keys import KDFParams
from safekeep.core.format.pack import BlobType
from safekeep.core.format.snapshot import Snapshot
from safekeep.core.format.tree import MODE_DIR, GoTime, Node, encode_tree
from safekeep.core.repository import Repository, RepositoryOptions
from safekeep.engine.service import Service
from safekeep.gui.background import Background
from safekeep.gui.restore import RestoreWindow
from safekeep.gui.restore.contents_model import NAME, SIZE
from safekeep.gui.restore.restoring import Pick, RestoreFlow
from safekeep.state.model import PASSWORD_SECRET, Outcome, Plan, new_id
from safekeep.storage.compose import open_backend
from tests.conftest import ResticRunner, settle_access_times, write_file

WAIT_MS = 120_000
PASSWORD = "pw-1234567890-abc"


def version_1(src: Path) -> None:
    write_file(src / "letter.odt", b"dear members,\n" * 300)
    write_file(src / "budget-2025.xlsx", b"budget 2025 v1\n" * 100)
    write_file(src / "minutes" / "board-minutes-jan.txt", b"the board met in January\n")
    write_file(src / "photos" / "cat.jpg", b"\xff\xd8 a cat" * 50)
    write_file(src / "photos" / "old" / "dog.jpg", b"\xff\xd8 a dog" * 50)


def version_2(src: Path) -> None:
    write_file(src / "budget-2025.xlsx", b"budget 2025 v2, revised\n" * 120)
    write_file(src / "minutes" / "board-minutes-feb.txt", b"the board met in February\n")
    (src / "photos" / "cat.jpg").unlink()


def version_3(src: Path) -> None:
    write_file(src / "letter.odt", b"dear members and friends,\n" * 300)
    (src / "photos" / "old" / "dog.jpg").unlink()
    (src / "photos" / "old").rmdir()


@dataclass
class Backups:
    """A destination with three snapshots of ``src`` (versions 1, 2, 3), newest last."""

    kind: str
    src: Path
    destination_id: str
    plan_id: str
    snapshots: list[str]

    def path(self, name: str) -> str:
        return str(self.src / name)


def _safekeep_backups(engine: Service, tmp_path: Path) -> Backups:
    src = tmp_path / "Office"
    dest = engine.add_destination("USB disk", str(tmp_path / "repo"), password=PASSWORD)
    plan = engine.save_plan(Plan(new_id(), "Office files", (str(src),), (dest.id,)))
    for make in (version_1, version_2, version_3):
        make(src)
        settle_access_times(src)
        run = engine.wait(engine.run_plan(plan.id), 300)
        assert run.outcome is Outcome.SUCCESS, run
    snaps = [s.id for s in engine.snapshots(dest.id)]
    assert len(snaps) == 3
    return Backups("safekeep", src, dest.id, plan.id, snaps)


def _restic_backups(engine: Service, restic: ResticRunner, tmp_path: Path) -> Backups:
    src = tmp_path / "Office"
    repo = tmp_path / "restic-repo"
    restic(repo, "init", password=PASSWORD)
    for make in (version_1, version_2, version_3):
        make(src)
        settle_access_times(src)
        restic(repo, "backup", str(src), password=PASSWORD)
    dest = engine.add_destination("Made by restic", str(repo), password=PASSWORD, create=False)
    snaps = [s.id for s in engine.snapshots(dest.id)]
    assert len(snaps) == 3
    return Backups("restic", src, dest.id, "", snaps)


@pytest.fixture(params=["safekeep", pytest.param("restic", marks=pytest.mark.restic)])
def backups(request: pytest.FixtureRequest, engine: Service, tmp_path: Path) -> Backups:
    if request.param == "safekeep":
        return _safekeep_backups(engine, tmp_path)
    restic: ResticRunner = request.getfixturevalue("restic")
    return _restic_backups(engine, restic, tmp_path)


class Opened:
    """Records what the window would hand to the desktop (no file manager starts in tests)."""

    def __init__(self) -> None:
        self.urls: list[QUrl] = []

    def __call__(self, url: QUrl) -> bool:
        self.urls.append(url)
        return True


@pytest.fixture()
def opened() -> Opened:
    return Opened()


def open_window(
    qtbot: QtBot, engine: Service, background: Background, opened: Opened, plan_id: str = ""
) -> RestoreWindow:
    window = RestoreWindow(engine, background, plan_id, open_url=opened)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.loaded, timeout=WAIT_MS)
    return window


def choose_copy(qtbot: QtBot, window: RestoreWindow, b: Backups) -> None:
    """Choose the backups' plan (or "Other backups") and copy, and wait for the index."""
    i = window.plan_choice.findData(b.plan_id)
    assert i >= 0
    window.plan_choice.setCurrentIndex(i)
    window.show_copy(b.destination_id)
    qtbot.waitUntil(lambda: window.destination_id == b.destination_id and window.loaded, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.session is not None and window.session.complete, timeout=WAIT_MS)
    assert window.timeline.count() == 3


def double_click(qtbot: QtBot, window: RestoreWindow, row: int) -> None:
    """Double-click the row ``row`` of the Browse table (a press and release, then the double-click)."""
    rect = window.table.visualRect(window.contents.index(row, NAME))
    qtbot.mouseClick(window.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(window.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def rows(window: RestoreWindow) -> list[str]:
    """The names in the Browse table, top to bottom."""
    model = window.contents
    return [model.data(model.index(r, NAME)) for r in range(model.rowCount())]


def finish(qtbot: QtBot, window: RestoreWindow, flow: RestoreFlow) -> None:
    qtbot.waitUntil(lambda: flow.summary is not None, timeout=WAIT_MS)
    assert flow.summary is not None
    with qtbot.waitSignal(window.restore_finished, timeout=WAIT_MS):
        flow.summary.accept()


def close(qtbot: QtBot, window: RestoreWindow, background: Background) -> None:
    window.close()
    qtbot.waitUntil(lambda: not background.busy, timeout=WAIT_MS)


def test_browse_search_versions_deleted_compare(
    qtbot: QtBot, engine: Service, background: Background, backups: Backups, opened: Opened, screenshots: Path
) -> None:
    b = backups
    window = open_window(qtbot, engine, background, opened, b.plan_id)
    choose_copy(qtbot, window, b)
    shot = f"restore-{b.kind}"
    # the timeline: newest first, with what changed since the backup before
    assert [window.timeline.item(i).data(0x0100) for i in range(3)] == list(reversed(b.snapshots))
    qtbot.waitUntil(lambda: len(window.changes) == 2, timeout=WAIT_MS)
    newest, middle = window.changes[b.snapshots[2]], window.changes[b.snapshots[1]]
    assert (middle.added, middle.changed, middle.removed) == (1, 1, 1)
    assert (newest.added, newest.changed, newest.removed) == (0, 1, 1)
    assert "1 added, 1 changed, 1 removed" in window.timeline.item(1).text()
    assert "1 changed, 1 removed" in window.timeline.item(0).text()
    assert "the first backup" in window.timeline.item(2).text()

    # browse the newest snapshot: it opens at the folder backed up; folders on the left (the
    # tree), what the chosen folder holds on the right (the table), folders first
    qtbot.waitUntil(
        lambda: window.shown_folder == str(b.src) and not window.contents.loading, timeout=WAIT_MS
    )
    assert rows(window) == ["minutes", "photos", "budget-2025.xlsx", "letter.odt"]
    assert window.folder_label.text() == f"{b.src} — 4 items"
    qtbot.waitUntil(lambda: window.tree.currentIndex().isValid(), timeout=WAIT_MS)
    folder = window.model.node(window.tree.currentIndex())
    assert folder.path == str(b.src)
    assert [c.entry.name for c in folder.children] == []  # not read until opened
    # double-click a folder in the table: it opens there, and the tree follows
    double_click(qtbot, window, 1)
    qtbot.waitUntil(
        lambda: window.shown_folder == b.path("photos") and not window.contents.loading, timeout=WAIT_MS
    )
    assert rows(window) == []  # its files were deleted before this backup
    assert window.folder_label.text() == f"{b.path('photos')} — empty"
    qtbot.waitUntil(
        lambda: window.model.node(window.tree.currentIndex()).path == b.path("photos"), timeout=WAIT_MS
    )
    assert [c.entry.name for c in folder.children] == ["minutes", "photos"]  # folders only in the tree
    # a folder chosen in the tree opens in the table
    window.tree.setCurrentIndex(window.model.index_of(folder.children[0]))
    qtbot.waitUntil(
        lambda: window.shown_folder == b.path("minutes") and not window.contents.loading, timeout=WAIT_MS
    )
    assert rows(window) == ["board-minutes-feb.txt", "board-minutes-jan.txt"]
    assert window.picks() == [Pick(b.snapshots[2], b.path("minutes"), "dir")]  # nothing inside: the folder
    window.open_parent()  # Backspace: up, with the folder we came from selected
    qtbot.waitUntil(lambda: window.details.path == b.path("minutes"), timeout=WAIT_MS)
    assert window.shown_folder == str(b.src)
    # sorted by a click on a column's header: by size, largest first (folders after the files)
    window.table.sortByColumn(SIZE, Qt.SortOrder.DescendingOrder)
    qtbot.waitUntil(lambda: window.contents.sorted_by == (SIZE, True), timeout=WAIT_MS)
    assert rows(window) == ["letter.odt", "budget-2025.xlsx", "photos", "minutes"]
    assert window.details.path == b.path("minutes")  # the selection stays on the same item
    kept = window.contents.entry(window.table.currentIndex())
    assert kept is not None and kept.name == "minutes"
    window.table.sortByColumn(NAME, Qt.SortOrder.AscendingOrder)
    qtbot.waitUntil(lambda: window.contents.sorted_by == (NAME, False), timeout=WAIT_MS)
    # several items selected in the table feed the restore
    window.table.selectAll()
    assert [p.path for p in window.picks()] == [
        b.path(n) for n in ("minutes", "photos", "budget-2025.xlsx", "letter.odt")
    ]
    assert window.picked_label.text() == "4 items selected"

    # locate (as the search does): the folder opens in the tree, the item is selected in the table
    found: list[QModelIndex] = []
    window.locate(b.path("budget-2025.xlsx"), found.append)
    qtbot.waitUntil(lambda: bool(found), timeout=WAIT_MS)
    assert found[0].isValid() and window.table.currentIndex().row() == found[0].row()
    window.reveal(b.snapshots[2], b.path("budget-2025.xlsx"))
    qtbot.waitUntil(lambda: window.details.path == b.path("budget-2025.xlsx"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: len(window.details.versions) == 2, timeout=WAIT_MS)
    current = window.table.currentIndex()
    row = window.contents.entry(current)
    assert row is not None and row.size == len(b"budget 2025 v2, revised\n" * 120)
    assert window.contents.data(window.contents.index(current.row(), SIZE)) == "2.9 KB"
    assert window.details.size_text.text() == "2.9 KB"
    assert window.details.kind.text() == "File"
    assert [v.size for v in window.details.versions] == [2880, 1500]  # newest first
    assert len(window.details.buttons) == 2
    assert window.picks() == [Pick(b.snapshots[2], b.path("budget-2025.xlsx"), "file", 2880)]
    assert window.open_button.isEnabled()
    qtbot.wait(50)
    assert window.grab().save(str(screenshots / f"{shot}-browse.png"))

    # search across every snapshot: grouped by file, each version below
    window.modes.setCurrentWidget(window.search)
    with qtbot.waitSignal(window.search.ready, timeout=WAIT_MS):
        window.search.search("*minutes*")
    found = {fv.path: fv for fv in window.search.results}
    assert set(found) == {
        b.path("minutes"),
        b.path("minutes/board-minutes-jan.txt"),
        b.path("minutes/board-minutes-feb.txt"),
    }
    jan = found[b.path("minutes/board-minutes-jan.txt")]
    assert len(jan.versions) == 1 and len(jan.versions[0].snapshots) == 3
    with qtbot.waitSignal(window.search.ready, timeout=WAIT_MS):
        window.search.search("budget*.XLSX")
    assert [fv.path for fv in window.search.results] == [b.path("budget-2025.xlsx")]
    top = window.search.tree.topLevelItem(0)
    assert top.childCount() == 2
    assert window.grab().save(str(screenshots / f"{shot}-search.png"))
    # double-click the older version: Browse shows it in the snapshot that had it
    older = top.child(1)
    window.search.tree.itemDoubleClicked.emit(older, 0)
    qtbot.waitUntil(lambda: window.details.path == b.path("budget-2025.xlsx"), timeout=WAIT_MS)
    assert window.modes.currentWidget() is window.browse
    assert window.snapshot_id == b.snapshots[0]
    shown = window.contents.entry(window.table.currentIndex())
    assert shown is not None and shown.size == 1500

    # version history of a file
    window.show_versions(b.path("letter.odt"))
    qtbot.waitUntil(lambda: len(window.versions.versions) == 2, timeout=WAIT_MS)
    new, old = window.versions.versions
    assert [s.id for s in old.snapshots] == b.snapshots[:2]
    assert [s.id for s in new.snapshots] == b.snapshots[2:]
    assert window.versions.tree.topLevelItemCount() == 2
    window.versions.tree.topLevelItem(1).setSelected(True)
    assert window.picks() == [Pick(b.snapshots[1], b.path("letter.odt"), "file", old.size)]
    assert window.grab().save(str(screenshots / f"{shot}-versions.png"))

    # deleted files: what older snapshots have and the newest does not
    window.show_snapshot(b.snapshots[2])
    with qtbot.waitSignal(window.deleted.ready, timeout=WAIT_MS):
        window.modes.setCurrentWidget(window.deleted)
    deleted = {d.path: d.last_snapshot.id for d in window.deleted.found}
    assert deleted == {
        b.path("photos/cat.jpg"): b.snapshots[0],
        b.path("photos/old"): b.snapshots[1],
        b.path("photos/old/dog.jpg"): b.snapshots[1],
    }
    assert window.grab().save(str(screenshots / f"{shot}-deleted.png"))

    # compare the oldest and the newest
    window.modes.setCurrentWidget(window.compare)
    window.compare.older.setCurrentIndex(window.compare.older.findData(b.snapshots[0]))
    window.compare.newer.setCurrentIndex(window.compare.newer.findData(b.snapshots[2]))
    with qtbot.waitSignal(window.compare.ready, timeout=WAIT_MS):
        window.compare.go.click()
    groups = window.compare.groups
    assert groups["added"].childCount() == 1
    assert groups["added"].child(0).text(0) == b.path("minutes/board-minutes-feb.txt")
    assert sorted(groups["removed"].child(i).text(0) for i in range(groups["removed"].childCount())) == [
        b.path("photos/cat.jpg"),
        b.path("photos/old/dog.jpg"),
    ]
    assert sorted(groups["changed"].child(i).text(0) for i in range(groups["changed"].childCount())) == [
        b.path("budget-2025.xlsx"),
        b.path("letter.odt"),
    ]
    assert window.grab().save(str(screenshots / f"{shot}-compare.png"))

    # open an old version: a read-only copy elsewhere, the original untouched
    window.show_versions(b.path("letter.odt"))
    qtbot.waitUntil(lambda: len(window.versions.versions) == 2, timeout=WAIT_MS)
    before = (b.src / "letter.odt").read_bytes()
    with qtbot.waitSignal(window.opened_file, timeout=WAIT_MS) as sig:
        window.open_pick(Pick(b.snapshots[0], b.path("letter.odt")))
    copy = Path(sig.args[0])
    assert copy.read_bytes() == b"dear members,\n" * 300
    assert not os.access(copy, os.W_OK) or os.geteuid() == 0
    assert copy.parent != b.src and (b.src / "letter.odt").read_bytes() == before
    assert opened.urls[-1] == QUrl.fromLocalFile(str(copy))
    close(qtbot, window, background)


def run_restore(
    qtbot: QtBot, window: RestoreWindow, picks: list[Pick], target: str, policy: str
) -> RestoreFlow:
    flow = window.restore_to(picks, target, policy=policy)
    assert flow is not None
    return flow


def summary_counts(flow: RestoreFlow) -> dict[str, int]:
    assert flow.summary is not None
    return {k: int(label.text()) for k, label in flow.summary.counts.items()}


def test_restore_with_each_conflict_policy_and_into_another_folder(
    qtbot: QtBot,
    engine: Service,
    background: Background,
    backups: Backups,
    opened: Opened,
    screenshots: Path,
    tmp_path: Path,
) -> None:
    b = backups
    window = open_window(qtbot, engine, background, opened, b.plan_id)
    choose_copy(qtbot, window, b)
    shot = f"restore-{b.kind}"
    letter, budget = b.src / "letter.odt", b.src / "budget-2025.xlsx"
    v1_letter, v3_letter = b"dear members,\n" * 300, b"dear members and friends,\n" * 300
    assert letter.read_bytes() == v3_letter

    # overwrite: the first version replaces today's letter
    flow = run_restore(qtbot, window, [Pick(b.snapshots[0], str(letter))], "/", "overwrite")
    qtbot.waitUntil(lambda: flow.summary is not None, timeout=WAIT_MS)
    counts = summary_counts(flow)
    assert (counts["restored"], counts["overwritten"], counts["verified"], counts["failed"]) == (1, 1, 1, 0)
    assert letter.read_bytes() == v1_letter
    assert [(i.target_path, i.action) for i in flow.items()] == [(str(letter), "overwritten")]
    finish(qtbot, window, flow)

    # skip: the file in place stays as it is
    flow = run_restore(qtbot, window, [Pick(b.snapshots[2], str(letter))], "/", "skip")
    qtbot.waitUntil(lambda: flow.summary is not None, timeout=WAIT_MS)
    assert summary_counts(flow)["skipped"] == 1
    assert letter.read_bytes() == v1_letter
    finish(qtbot, window, flow)

    # keep both: the restored copy gets a "(restored DATE)" name beside the existing one
    flow = run_restore(qtbot, window, [Pick(b.snapshots[2], str(letter))], "/", "keep-both")
    qtbot.waitUntil(lambda: flow.summary is not None, timeout=WAIT_MS)
    assert summary_counts(flow)["kept-both"] == 1
    copies = list(b.src.glob("letter (restored *).odt"))
    assert len(copies) == 1 and copies[0].read_bytes() == v3_letter
    assert copies[0].name == f"letter (restored {datetime.now().date().isoformat()}).odt"
    assert letter.read_bytes() == v1_letter
    finish(qtbot, window, flow)
    copies[0].unlink()

    # ask: the dialog lists both files in the way; the letter is overwritten, the budget skipped
    budget.write_bytes(b"a newer budget, not in any backup\n")
    flow = run_restore(
        qtbot, window, [Pick(b.snapshots[2], str(letter)), Pick(b.snapshots[2], str(budget))], "/", "ask"
    )
    qtbot.waitUntil(lambda: flow.conflicts is not None, timeout=WAIT_MS)
    dialog = flow.conflicts
    assert dialog is not None
    paths = [q.conflict.target_path for q in dialog.questions]
    assert sorted(paths) == sorted([str(letter), str(budget)])
    dialog.choose_all("skip")
    dialog.choose(paths.index(str(letter)), "overwrite")
    qtbot.wait(50)
    assert dialog.grab().save(str(screenshots / f"{shot}-conflicts.png"))
    dialog.accept()
    qtbot.waitUntil(lambda: flow.summary is not None, timeout=WAIT_MS)
    counts = summary_counts(flow)
    assert (counts["overwritten"], counts["skipped"], counts["failed"]) == (1, 1, 0)
    assert letter.read_bytes() == v3_letter
    assert budget.read_bytes() == b"a newer budget, not in any backup\n"
    assert flow.summary is not None
    assert flow.summary.grab().save(str(screenshots / f"{shot}-summary.png"))
    flow.summary.open_button.click()
    assert opened.urls[-1] == QUrl.fromLocalFile(str(b.src))
    finish(qtbot, window, flow)

    # ask, declined: nothing happens
    flow = run_restore(qtbot, window, [Pick(b.snapshots[0], str(letter))], "/", "ask")
    qtbot.waitUntil(lambda: flow.conflicts is not None, timeout=WAIT_MS)
    assert flow.conflicts is not None
    with qtbot.waitSignal(window.restore_finished, timeout=WAIT_MS):
        flow.conflicts.reject()
    assert letter.read_bytes() == v3_letter

    # into another folder: each picked item lands directly in it (a folder with its contents)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    flow = run_restore(
        qtbot,
        window,
        [Pick(b.snapshots[1], b.path("minutes"), "dir"), Pick(b.snapshots[1], str(budget))],
        str(elsewhere),
        "ask",
    )
    qtbot.waitUntil(lambda: flow.summary is not None, timeout=WAIT_MS)
    assert flow.conflicts is None  # nothing in the way: no question
    assert sorted(str(p.relative_to(elsewhere)) for p in elsewhere.rglob("*")) == [
        "budget-2025.xlsx",
        "minutes",
        "minutes/board-minutes-feb.txt",
        "minutes/board-minutes-jan.txt",
    ]
    assert (elsewhere / "budget-2025.xlsx").read_bytes() == b"budget 2025 v2, revised\n" * 120
    assert summary_counts(flow)["restored"] == 3
    flow.summary.open_button.click()  # type: ignore[union-attr]
    assert opened.urls[-1] == QUrl.fromLocalFile(str(elsewhere))
    finish(qtbot, window, flow)

    # a deleted file, picked in the Deleted files mode, back to its place
    window.show_snapshot(b.snapshots[2])
    with qtbot.waitSignal(window.deleted.ready, timeout=WAIT_MS):
        window.modes.setCurrentWidget(window.deleted)
    cat = window.deleted.tree.findItems(b.path("photos/cat.jpg"), Qt.MatchFlag.MatchExactly, 0)
    assert len(cat) == 1
    cat[0].setSelected(True)
    assert window.restore_here.isEnabled()
    window.policy.setCurrentIndex(window.policy.findData("ask"))
    window.restore_here.click()
    flow = window.flow
    assert flow is not None
    qtbot.waitUntil(lambda: flow.summary is not None, timeout=WAIT_MS)
    assert (b.src / "photos" / "cat.jpg").read_bytes() == b"\xff\xd8 a cat" * 50
    finish(qtbot, window, flow)
    close(qtbot, window, background)


@pytest.mark.parametrize("kind", ["safekeep", pytest.param("restic", marks=pytest.mark.restic)])
def test_cancel_mid_restore_leaves_nothing_half_written(
    qtbot: QtBot,
    engine: Service,
    background: Background,
    opened: Opened,
    screenshots: Path,
    tmp_path: Path,
    kind: str,
    request: pytest.FixtureRequest,
) -> None:
    src = tmp_path / "Big"
    rng = random.Random(7)
    originals = {f"part{i:02d}.bin": rng.randbytes(2_000_000) for i in range(32)}
    for name, data in originals.items():
        write_file(src / name, data)
    if kind == "safekeep":
        dest = engine.add_destination("USB disk", str(tmp_path / "repo"), password=PASSWORD)
        plan = engine.save_plan(Plan(new_id(), "Big files", (str(src),), (dest.id,)))
        assert engine.wait(engine.run_plan(plan.id), 300).outcome is Outcome.SUCCESS
        plan_id = plan.id
    else:
        restic: ResticRunner = request.getfixturevalue("restic")
        repo = tmp_path / "restic-repo"
        restic(repo, "init", password=PASSWORD)
        restic(repo, "backup", str(src), password=PASSWORD)
        dest = engine.add_destination("Made by restic", str(repo), password=PASSWORD, create=False)
        plan_id = ""
    # a download limit (8 MiB/s: the 64 MB take ~8 s) so that the cancel lands mid-restore
    # however fast the machine restores
    engine.db.save_destination(replace(dest, download_limit_kib=8 * 1024))
    snap = engine.snapshots(dest.id)[-1].id
    window = open_window(qtbot, engine, background, opened, plan_id)
    window.show_copy(dest.id)
    qtbot.waitUntil(
        lambda: window.destination_id == dest.id and window.timeline.count() == 1, timeout=WAIT_MS
    )
    target = tmp_path / "restored"
    target.mkdir()
    flow = run_restore(qtbot, window, [Pick(snap, str(src), "dir")], str(target), "overwrite")
    # cancel as soon as the first file is written (the progress dialog's Cancel button)
    qtbot.waitUntil(
        lambda: (
            flow.progress is not None
            and flow.progress.bar.maximum() == 1000
            and flow.progress.bar.value() > 0
        ),
        timeout=WAIT_MS,
    )
    assert flow.progress is not None
    assert flow.progress.grab().save(str(screenshots / f"restore-{kind}-progress.png"))
    flow.progress.cancel_button.click()
    qtbot.waitUntil(lambda: flow.summary is not None, timeout=WAIT_MS)
    assert flow.cancelled
    assert flow.parts[0].run is not None and flow.parts[0].run.outcome is Outcome.CANCELLED
    assert "cancelled" in flow.summary.headline.text()  # type: ignore[union-attr]
    # nothing half-written: no temporary files, and every file there is complete
    everything = [p for p in target.rglob("*")]
    assert not [p for p in everything if p.name.startswith(".safekeep-") or p.name.endswith(".tmp")]
    restored = {p.name: p.read_bytes() for p in everything if p.is_file()}
    assert len(restored) < len(originals), "the restore was not cancelled before its end"
    for name, data in restored.items():
        assert data == originals[name], f"{name} is incomplete"
    finish(qtbot, window, flow)
    close(qtbot, window, background)


BIG_FOLDER = 100_000


def _node(name: str, *, subtree: bytes | None = None, size: int = 0) -> Node:
    t = GoTime(1_700_000_000 * 1_000_000_000, 0)
    if subtree is not None:
        return Node(
            name=name.encode(), type="dir", mode=MODE_DIR | 0o755, mtime=t, atime=t, ctime=t, subtree=subtree
        )
    return Node(name=name.encode(), type="file", mode=0o644, mtime=t, atime=t, ctime=t, size=size, content=[])


def _big_folder_repository(location: Path) -> None:
    """A snapshot with ``/data/big`` of 100,000 (empty) files, written with the core API."""
    repo = Repository.init(
        open_backend(str(location)), PASSWORD, options=RepositoryOptions(kdf=KDFParams(1024, 8, 1))
    )
    try:

        def tree(nodes: list[Node]) -> bytes:
            nodes.sort(key=lambda n: n.name)
            return repo.save_blob(BlobType.TREE, encode_tree(nodes)).id

        big = tree([_node(f"scan-{i:06d}.pdf") for i in range(BIG_FOLDER)])
        small = tree([_node("readme.txt")])
        data = tree([_node("big", subtree=big), _node("small", subtree=small)])
        root = tree([_node("data", subtree=data)])
        repo.flush()
        when = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        repo.save_snapshot(Snapshot(time=when, tree=root, paths=["/data"], hostname="office-pc"))
        repo.save_snapshot(
            Snapshot(time=when + timedelta(days=1), tree=root, paths=["/data"], hostname="office-pc")
        )
    finally:
        repo.close()


def test_a_folder_of_100000_entries_opens_without_freezing_the_window(
    qtbot: QtBot, engine: Service, background: Background, opened: Opened, tmp_path: Path, screenshots: Path
) -> None:
    _big_folder_repository(tmp_path / "repo")
    dest = engine.add_destination("Scans", str(tmp_path / "repo"), password=PASSWORD, create=False)
    window = open_window(qtbot, engine, background, opened)
    window.show_copy(dest.id)
    qtbot.waitUntil(
        lambda: window.destination_id == dest.id and window.timeline.count() == 2, timeout=WAIT_MS
    )
    # the window opens at /data (the snapshot's path): the big folder is one of its rows
    qtbot.waitUntil(lambda: window.shown_folder == "/data" and not window.contents.loading, timeout=WAIT_MS)
    assert rows(window) == ["big", "small"]
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1

    timer = QTimer()
    timer.setInterval(0)
    timer.timeout.connect(tick)
    timer.start()
    try:
        double_click(qtbot, window, 0)  # opens /data/big
        assert window.shown_folder == "/data/big"
        assert window.contents.loading  # the rows come later, from a background thread
        ticks_at_start = ticks
        qtbot.waitUntil(lambda: not window.contents.loading, timeout=WAIT_MS)
        ticks_during_load = ticks - ticks_at_start
    finally:
        timer.stop()
    # the event loop kept turning while the folder was read and sorted (a frozen window would
    # show no ticks until the end); then every row arrived at once
    assert ticks_during_load > 0
    assert window.contents.rowCount() == BIG_FOLDER
    assert window.folder_label.text() == f"/data/big — {BIG_FOLDER:,} items"
    last = f"scan-{BIG_FOLDER - 1:06d}.pdf"
    assert window.contents.data(window.contents.index(BIG_FOLDER - 1, NAME)) == last
    qtbot.waitUntil(
        lambda: window.model.node(window.tree.currentIndex()).path == "/data/big", timeout=WAIT_MS
    )
    # sorted the other way round (in the background too): the last name comes first
    ticks = 0
    timer.start()
    try:
        window.table.sortByColumn(NAME, Qt.SortOrder.DescendingOrder)
        qtbot.waitUntil(lambda: window.contents.sorted_by == (NAME, True), timeout=WAIT_MS)
    finally:
        timer.stop()
    assert ticks > 0
    assert window.contents.data(window.contents.index(0, NAME)) == last
    window.locate(f"/data/big/{last}")
    qtbot.waitUntil(lambda: window.details.path == f"/data/big/{last}", timeout=WAIT_MS)
    assert window.picks() == [Pick(window.snapshot_id, f"/data/big/{last}", "file", 0)]
    qtbot.wait(50)
    assert window.grab().save(str(screenshots / "restore-browse-100k.png"))
    close(qtbot, window, background)


def test_a_wrong_password_is_said_in_plain_words(
    qtbot: QtBot, engine: Service, background: Background, opened: Opened, tmp_path: Path
) -> None:
    dest = engine.add_destination("USB disk", str(tmp_path / "repo"), password=PASSWORD)
    engine.secrets.scope(dest.id).set(PASSWORD_SECRET, "not the password")
    window = open_window(qtbot, engine, background, opened)
    qtbot.waitUntil(window.banner.isVisible, timeout=WAIT_MS)
    text = window.banner.text()
    assert "password" in text.lower()
    assert "Traceback" not in text and "Error:" not in text
    assert window.timeline.count() == 0
    assert not window.restore_here.isEnabled()
    close(qtbot, window, background)
