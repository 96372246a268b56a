"""Run the benchmark: ``python -m bench [--size-mib 1024] [--rounds 3] [--work DIR]``.

Safekeep and restic run on the same dataset in the same run, alternating which goes first, for
several rounds. Each round, for each program: initial backup into a new repository, a backup
with no changes, a backup after the 1 % mutation, a full restore, and ``check --read-data``.
Each step runs as a separate process; wall time, CPU time (user+system) and peak RSS come from
``wait4``. The table shows medians and the Safekeep/restic ratio of each.

``--many-small N`` instead measures the initial backup of N tiny files (peak memory).

``--steps initial,no-change`` reports only some steps (the backups a chosen step depends on still
run, unreported); ``--tools safekeep`` runs one program only; ``--py-spy DIR`` records a
``py-spy`` profile (all threads, ``--idle`` excluded) of each Safekeep step into ``DIR`` — its
timings then include the profiler's overhead, so use it to see where time goes, not for figures.

Each restore goes to a folder of its own, and the restored folders are removed only at the end
of the run: on ext4 without a journal (as on these machines) creating a file right after many were
deleted scans past every inode deleted in the last minute (``recently_deleted`` in the kernel),
which made each restore pay for the previous one's clean-up: 40 % of a restore's CPU time.

Safekeep's package is byte-compiled (``python -m compileall``) once at the start, so each step
measures the app as installed rather than compiling its sources again.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.dataset import generate_many_small, tree_bytes

PASSWORD = "bench-password"
STEPS = ("initial backup", "no-change backup", "backup after 1% change", "full restore", "check --read-data")
STEP_KEYS = {
    "initial": STEPS[0],
    "no-change": STEPS[1],
    "change": STEPS[2],
    "restore": STEPS[3],
    "check": STEPS[4],
}


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mib: float


@dataclass
class Results:
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)
    repo_size: dict[str, list[int]] = field(default_factory=dict)

    def add(self, tool: str, step: str, s: Sample) -> None:
        self.samples.setdefault((tool, step), []).append(s)


def _profiled(cmd: list[str], out: Path | None, step: str) -> list[str]:
    if out is None:
        return cmd
    name = step.replace(" ", "-").replace("%", "pct").replace("--", "")
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return [spy, "record", "--threads", "--nonblocking", "-r", "250", "-f", "raw",
            "-o", str(out / f"{name}.txt"), "--", *cmd]  # fmt: skip


def run(cmd: list[str], env: dict[str, str]) -> Sample:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0,):
        sys.stderr.write(err.decode(errors="replace"))
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


class Tool:
    def __init__(self, name: str, argv: list[str], work: Path, profile: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.work = work
        self.profile = profile
        self.env = dict(os.environ)
        self.env.update(
            RESTIC_PASSWORD=PASSWORD,
            SAFEKEEP_PASSWORD=PASSWORD,
            RESTIC_CACHE_DIR=str(work / f"{name}-cache"),
            XDG_CACHE_HOME=str(work / f"{name}-cache"),
        )

    @property
    def repo(self) -> Path:
        return self.work / f"{self.name}-repo"

    def cmd(self, *args: str) -> list[str]:
        return [*self.argv, "-r", str(self.repo), *args]

    def init(self) -> None:
        for p in (self.repo, self.work / f"{self.name}-cache"):
            shutil.rmtree(p, ignore_errors=True)
        run(self.cmd("init"), self.env)

    def step(self, step: str, *args: str) -> Sample:
        return run(_profiled(self.cmd(*args), self.profile, step), self.env)

    def backup(self, src: Path, step: str) -> Sample:
        return self.step(step, "backup", "--host", "bench", str(src))

    def restore(self, target: Path) -> Sample:
        shutil.rmtree(target, ignore_errors=True)
        return self.step(STEPS[3], "restore", "latest", "--target", str(target))

    def check(self) -> Sample:
        return self.step(STEPS[4], "check", "--read-data")


def compile_app() -> None:
    """Write Safekeep's bytecode once, as an installed app has it: with PYTHONDONTWRITEBYTECODE
    set (as it may be here), every benchmarked command would otherwise compile its sources again."""
    spec = importlib.util.find_spec("safekeep")  # found, not imported: the harness stays small
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the safekeep package is not importable here")
    package = Path(next(iter(spec.submodule_search_locations)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True, env=env)
    print(f"compiled {package} to bytecode (python -m compileall -q)", flush=True)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def remove_restored(work: Path) -> None:
    """Remove the restored copies (``restored-<round>-<tool>``; see the module docstring)."""
    for old in work.glob("restored-*"):
        shutil.rmtree(old, ignore_errors=True)


def warm(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with p.open("rb") as f:
                while f.read(1 << 20):
                    pass


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("bench/out"))
    ap.add_argument("--restic", default=shutil.which("restic") or "restic")
    ap.add_argument("--many-small", type=int, default=0, help="measure N tiny files instead")
    ap.add_argument(
        "--steps",
        default=",".join(STEP_KEYS),
        help=f"comma-separated steps to report, of: {', '.join(STEP_KEYS)} (default: all)",
    )
    ap.add_argument("--tools", default="safekeep,restic", help="comma-separated: safekeep, restic")
    ap.add_argument("--py-spy", type=Path, metavar="DIR", help="profile each Safekeep step into DIR")
    args = ap.parse_args()
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEP_KEYS]
    if unknown:
        ap.error(f"unknown step(s): {', '.join(unknown)}; choose from {', '.join(STEP_KEYS)}")
    names = [t.strip() for t in args.tools.split(",") if t.strip()]
    if not names or any(n not in ("safekeep", "restic") for n in names):
        ap.error("--tools takes safekeep and/or restic")
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if "safekeep" in names:
        compile_app()
    profile: Path | None = args.py_spy.resolve() if args.py_spy else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    all_tools = {
        "safekeep": Tool("safekeep", [sys.executable, "-m", "safekeep"], work, profile),
        "restic": Tool("restic", [args.restic], work),
    }
    tools = [all_tools[n] for n in ("safekeep", "restic") if n in names]
    if args.many_small:
        return many_small(tools, work, args.many_small)
    pristine = work / f"dataset-{args.size_mib}"
    if not pristine.exists():
        print(f"generating a {args.size_mib} MiB dataset in {pristine} ...", flush=True)
        partial = pristine.with_suffix(".partial")
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from pathlib import Path; from bench.dataset import generate, DatasetSpec; "
                f"generate(Path({str(partial)!r}), DatasetSpec(total_mib={args.size_mib}))",
            ],
            check=True,
        )
        partial.rename(pristine)
    results = Results()
    src = work / "src"
    total = tree_bytes(pristine)
    wanted = {STEP_KEYS[s] for s in steps}
    need_change = bool(wanted & set(STEPS[2:]))

    def record(tool: str, step: str, sample: Sample) -> None:
        if step in wanted:
            results.add(tool, step, sample)

    remove_restored(work)  # left by an interrupted run
    for rnd in range(args.rounds):
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(pristine, src, symlinks=True)
        warm(src)
        order = tools if rnd % 2 == 0 else tools[::-1]
        for t in order:
            t.init()
            record(t.name, STEPS[0], t.backup(src, STEPS[0]))
            if STEPS[1] in wanted:
                record(t.name, STEPS[1], t.backup(src, STEPS[1]))
        if not need_change:
            print(f"round {rnd + 1}/{args.rounds} done", flush=True)
            continue
        # in a child process: the harness must stay small, or its memory would show up in the
        # children's peak RSS (ru_maxrss counts the pages a child inherits when forked)
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from pathlib import Path; from bench.dataset import mutate; "
                f"mutate(Path({str(src)!r}), seed={rnd + 1})",
            ],
            check=True,
        )
        warm(src)
        for t in order:
            record(t.name, STEPS[2], t.backup(src, STEPS[2]))
        if STEPS[3] in wanted:
            for t in order:
                record(t.name, STEPS[3], t.restore(work / f"restored-{rnd}-{t.name}"))
        if STEPS[4] in wanted:
            for t in order:
                record(t.name, STEPS[4], t.check())
        for t in order:
            results.repo_size.setdefault(t.name, []).append(du(t.repo))
        print(f"round {rnd + 1}/{args.rounds} done", flush=True)
    print_table(results, total, args)
    remove_restored(work)
    return 0


def many_small(tools: list[Tool], work: Path, count: int) -> int:
    src = work / f"small-{count}"
    if not src.exists():
        print(f"creating {count} small files ...", flush=True)
        generate_many_small(src.with_suffix(".partial"), count)
        src.with_suffix(".partial").rename(src)
    print(f"{'':10s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MiB':>13s}   ({count:,} files)")
    for t in tools:
        t.init()
        s = t.backup(src, STEPS[0])
        print(f"{t.name:10s} {s.wall:8.2f} {s.cpu:8.2f} {s.rss_mib:13.0f}")
    return 0


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def print_table(r: Results, total: int, args: argparse.Namespace) -> None:
    mb = total / 1e6
    print()
    print(f"dataset: {total / 2**20:.0f} MiB, {args.rounds} rounds, medians; ratio = Safekeep / restic")
    head = f"{'step':24s} {'tool':9s} {'wall s':>8s} {'MB/s':>8s} {'CPU s':>7s} {'RSS MiB':>8s}"
    print(head)
    print("-" * len(head))
    for step in STEPS:
        rows = {}
        for tool in ("safekeep", "restic"):
            ss = r.samples.get((tool, step), [])
            if not ss:
                continue
            rows[tool] = (med([s.wall for s in ss]), med([s.cpu for s in ss]), med([s.rss_mib for s in ss]))
            w, c, m = rows[tool]
            print(f"{step:24s} {tool:9s} {w:8.2f} {mb / w:8.0f} {c:7.2f} {m:8.0f}")
        if len(rows) == 2:
            (sw, sc, sm), (rw, rc, rm) = rows["safekeep"], rows["restic"]
            print(f"{'':24s} {'ratio':9s} {sw / rw:8.2f} {rw / sw:8.2f} {sc / rc:7.2f} {sm / rm:8.2f}")
    sizes = {t: med([float(x) for x in xs]) for t, xs in r.repo_size.items() if xs}
    if sizes:
        line = "  ".join(f"{t} {v / 2**20:.1f}" for t, v in sizes.items())
        if len(sizes) == 2:
            line += f"  ratio {sizes['safekeep'] / sizes['restic']:.3f}"
        print(f"{'repository size MiB':24s} {line}")
    print("(MB/s ratio is throughput: restic time / Safekeep time; other ratios: Safekeep / restic)")


if __name__ == "__main__":
    raise SystemExit(main())
