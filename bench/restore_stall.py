"""How long the restore window's event loop stalls while a folder of 100,000 entries opens:
``python -m bench.restore_stall``.

Options: ``--entries 100000`` (files in the big folder), ``--folders 200`` (sub-folders beside
them), ``--work DIR``, ``--before-index`` (open the folder as soon as the window shows the
backups, while the catalog is still being built: the folder is then read from the tree blob).
A snapshot with ``/data/big`` is written with the core API (cheap keys, a secrets file, a
benchmark home in the work folder, never the real one); the real :class:`Service`, the
:class:`RestoreWindow` and its background runner then open it as a person would. A
:class:`QTimer` firing every 5 ms records the gap between its ticks; the longest gap beyond 5 ms
is the longest stall a person would feel (the target is under 100 ms). Also printed: the time
from the click until every row is in the view, and until the rows are sorted by size.

It runs offscreen unless ``QT_QPA_PLATFORM`` says otherwise.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.app_home import private_app_home

TICK_MS = 5
PASSWORD = "bench-password-1234"


def build_repository(location: Path, entries: int, folders: int) -> None:
    """A snapshot of ``/data`` with ``/data/big``: ``entries`` files and ``folders`` folders."""
    from safekeep.core.format.keys import KDFParams  # noqa: PLC0415 - after the environment is set
    from safekeep.core.format.pack import BlobType  # noqa: PLC0415
    from safekeep.core.format.snapshot import Snapshot  # noqa: PLC0415
    from safekeep.core.format.tree import MODE_DIR, GoTime, Node, encode_tree  # noqa: PLC0415
    from safekeep.core.repository import Repository, RepositoryOptions  # noqa: PLC0415
    from safekeep.storage.compose import open_backend  # noqa: PLC0415

    rng = random.Random(1)
    base = 1_600_000_000

    def when() -> GoTime:
        return GoTime((base + rng.randrange(200_000_000)) * 1_000_000_000, 0)

    repo = Repository.init(
        open_backend(str(location)), PASSWORD, options=RepositoryOptions(kdf=KDFParams(1024, 8, 1))
    )
    try:

        def tree(nodes: list[Node]) -> bytes:
            nodes.sort(key=lambda n: n.name)
            return repo.save_blob(BlobType.TREE, encode_tree(nodes)).id

        def folder(name: str, subtree: bytes) -> Node:
            t = when()
            return Node(
                name=name.encode(),
                type="dir",
                mode=MODE_DIR | 0o755,
                mtime=t,
                atime=t,
                ctime=t,
                subtree=subtree,
            )

        def file(name: str) -> Node:
            t = when()
            return Node(
                name=name.encode(),
                type="file",
                mode=0o644,
                mtime=t,
                atime=t,
                ctime=t,
                size=rng.randrange(1, 50_000_000),
                content=[],
            )

        empty = tree([])
        big = tree(
            [file(f"Scan {i:06d}.pdf") for i in range(entries)]
            + [folder(f"Box {i:04d}", empty) for i in range(folders)]
        )
        small = tree([file("readme.txt")])
        data = tree([folder("big", big), folder("small", small)])
        root = tree([folder("data", data)])
        repo.flush()
        start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        for day in range(2):
            repo.save_snapshot(
                Snapshot(time=start + timedelta(days=day), tree=root, paths=["/data"], hostname="office")
            )
    finally:
        repo.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.restore_stall", description=__doc__)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--folders", type=int, default=200)
    parser.add_argument("--before-index", action="store_true")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "safekeep-restore-stall")
    args = parser.parse_args(argv)
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    run_dir = private_app_home(work)

    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer  # noqa: PLC0415
    from PySide6.QtWidgets import QApplication  # noqa: PLC0415

    from safekeep.engine.service import Service  # noqa: PLC0415
    from safekeep.gui.background import Background  # noqa: PLC0415
    from safekeep.gui.restore import RestoreWindow  # noqa: PLC0415
    from safekeep.gui.restore.contents_model import SIZE  # noqa: PLC0415

    app = QApplication([])
    started = time.perf_counter()
    build_repository(run_dir / "repo", args.entries, args.folders)
    print(f"repository with a folder of {args.entries + args.folders} entries: "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    service = Service.open(run_dir / "home")
    dest = service.add_destination("Scans", str(run_dir / "repo"), password=PASSWORD, create=False)
    background = Background()
    window = RestoreWindow(service, background, "")
    window.show()

    def wait_until(condition: Callable[[], bool], timeout_s: float = 600) -> None:
        loop = QEventLoop()
        poll = QTimer()
        poll.setInterval(2)
        deadline = time.monotonic() + timeout_s

        def check() -> None:
            if condition() or time.monotonic() > deadline:
                loop.quit()

        poll.timeout.connect(check)
        poll.start()
        if not condition():
            loop.exec()
        poll.stop()
        if not condition():
            raise SystemExit("timed out")

    def idle(seconds: float) -> None:
        end = time.monotonic() + seconds
        wait_until(lambda: time.monotonic() >= end)

    window.show_copy(dest.id)
    wait_until(lambda: window.destination_id == dest.id and window.timeline.count() == 2)
    if not args.before_index:
        wait_until(lambda: window.session is not None and window.session.complete)
    wait_until(lambda: window.shown_folder == "/data" and not window.contents.loading)
    idle(0.3)

    gaps: list[float] = []
    clock = QElapsedTimer()
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: gaps.append(clock.restart()))
    clock.start()
    timer.start()
    idle(0.2)
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    window.open_folder("/data/big")  # as a double-click on "big" does
    total = args.entries + args.folders
    wait_until(lambda: window.contents.rowCount() == total and not window.contents.loading)
    marks["all rows shown"] = time.perf_counter() - t0
    idle(0.5)
    window.table.scrollToBottom()
    idle(0.2)
    window.table.sortByColumn(SIZE, Qt.SortOrder.DescendingOrder)  # as a click on the header does
    t1 = time.perf_counter()
    wait_until(lambda: not window.contents.loading and window.contents.sorted_by == (SIZE, True))
    marks["sorted by size"] = time.perf_counter() - t1
    idle(0.5)
    timer.stop()
    shown = window.contents.entry(window.contents.index(0, 0))
    window.close()
    background.wait_for_done()
    service.close()
    app.processEvents()

    stalls = [g - TICK_MS for g in gaps]
    print(f"folder of {total} entries ({'before' if args.before_index else 'after'} indexing):")
    for what, seconds in marks.items():
        print(f"  {what}: {seconds * 1000:.0f} ms after the click")
    print(f"  largest file first: {shown.name if shown else '?'} ({shown.size if shown else 0} bytes)")
    print(f"event loop ticks: {len(gaps)} (every {TICK_MS} ms)")
    print(f"longest stall: {max(stalls):.0f} ms (target < 100 ms)")
    print(f"stalls > 50 ms: {sum(1 for s in stalls if s > 50)}; median gap: {statistics.median(gaps):.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
