"""The command line loads only the module of the command it runs (start-up cost of every command)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from safekeep.cli.main import COMMANDS, build_parser, command_name


def _choices() -> set[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert sub.choices is not None
    return set(sub.choices)


def test_the_command_table_names_every_registered_command() -> None:
    assert _choices() == set(COMMANDS)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["backup", "/x"], "backup"),
        (["-r", "/repo", "--json", "-vv", "check", "--read-data"], "check"),
        (["--repo=/repo", "--password-file", "pw", "restore", "latest"], "restore"),
        (["-r", "backup", "snapshots"], "snapshots"),  # an option's value is not the command
        (["--password", "init", "version"], "version"),  # an abbreviated option takes its value
        (["--no-lock", "logout", "d"], "logout"),
        ([], None),
        (["--help"], None),
        (["nonsense"], None),
        (["-r"], None),
    ],
)
def test_command_name(argv: list[str], expected: str | None) -> None:
    assert command_name(argv) == expected


def test_a_command_parses_with_only_its_own_module() -> None:
    args = build_parser("check").parse_args(["-r", "/repo", "check", "--read-data-subset", "1/4"])
    assert args.command == "check" and args.read_data_subset == "1/4" and args.repo == "/repo"


def test_version_imports_neither_the_engine_nor_the_archiver() -> None:
    code = (
        "import sys\n"
        "from safekeep.cli.main import main\n"
        "assert main(['version']) == 0\n"
        "loaded = [m for m in ('safekeep.engine.service', 'safekeep.core.archiver', 'keyring') "
        "if m in sys.modules]\n"
        "print('loaded:' + ','.join(loaded))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[-1] == "loaded:"
