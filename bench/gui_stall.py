"""How long the app's event loop stalls while a large backup runs: ``python -m bench.gui_stall``.

Options: ``--size-mib 1024`` (the generated tree), ``--work DIR`` (kept between runs: the tree
is generated once). The app's real pieces run as in the app: the :class:`Service` (the backup
in its worker process), the main window and the tray, all fed by the service's job events through
the background runner. A :class:`QTimer` firing every 10 ms records the gap between its ticks;
the longest gap beyond 10 ms is the longest stall a person would feel. The target is under 100 ms.

It runs offscreen unless ``QT_QPA_PLATFORM`` says otherwise, with a secrets file instead of the
keyring and cheap repository keys (a benchmark home in the work folder, never the real one).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.app_home import private_app_home

TICK_MS = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gui_stall", description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "safekeep-gui-stall")
    args = parser.parse_args(argv)
    work: Path = args.work
    data = work / f"data-{args.size_mib}"
    if not (data / ".complete").exists():
        print(f"generating a {args.size_mib} MiB tree in {data} …", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from pathlib import Path; from bench.dataset import generate, DatasetSpec; "
                f"generate(Path({str(data)!r}), DatasetSpec(total_mib={args.size_mib}))",
            ],
            check=True,
        )
        (data / ".complete").write_text("")
    run_dir = private_app_home(work)

    from PySide6.QtCore import QElapsedTimer, QTimer  # noqa: PLC0415 - after the environment is set
    from PySide6.QtWidgets import QApplication  # noqa: PLC0415

    from safekeep.engine.service import Service  # noqa: PLC0415
    from safekeep.gui.background import Background  # noqa: PLC0415
    from safekeep.gui.main_window import MainWindow  # noqa: PLC0415
    from safekeep.gui.tray import Tray  # noqa: PLC0415
    from safekeep.state.model import Plan, new_id  # noqa: PLC0415

    app = QApplication([])
    service = Service.open(run_dir / "home")
    dest = service.add_destination("bench", str(run_dir / "repo"), password="bench-password-1234")
    plan = service.save_plan(Plan(new_id(), "Bench", (str(data),), (dest.id,)))
    background = Background()
    window = MainWindow(service, background)
    window.show()
    tray = Tray(service, background)
    tray.notifier.use_dbus = False
    tray.show()

    gaps: list[float] = []
    clock = QElapsedTimer()
    timer = QTimer()
    timer.setInterval(TICK_MS)
    state = {"run": "", "started": 0.0, "events": 0}

    def tick() -> None:
        gaps.append(clock.restart())

    def count(_event: object) -> None:
        state["events"] = int(state["events"]) + 1

    service.subscribe(count)

    def start() -> None:
        clock.start()
        timer.start()
        state["started"] = time.monotonic()
        window.back_up_now(plan.id)

    def check_done() -> None:
        if gaps and not service.running() and time.monotonic() - float(state["started"]) > 2:
            timer.stop()
            app.quit()

    timer.timeout.connect(tick)
    QTimer.singleShot(500, start)
    done = QTimer()
    done.setInterval(500)
    done.timeout.connect(check_done)
    done.start()
    app.exec()
    elapsed = time.monotonic() - float(state["started"])
    (run,) = service.history(plan.id, 1)
    tray.close()
    window.shutdown()
    background.wait_for_done()
    service.close()
    stalls = [g - TICK_MS for g in gaps]
    print(
        f"backup of {args.size_mib} MiB: {run.outcome.value} in {elapsed:.1f} s, {state['events']} job events"
    )
    print(f"event loop ticks: {len(gaps)} (every {TICK_MS} ms)")
    print(f"longest stall: {max(stalls):.0f} ms (target < 100 ms)")
    print(f"stalls > 50 ms: {sum(1 for s in stalls if s > 50)}; p99 gap: {_p99(gaps):.0f} ms")
    print(f"median gap: {statistics.median(gaps):.0f} ms")
    return 0


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


if __name__ == "__main__":
    raise SystemExit(main())
