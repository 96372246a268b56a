"""The ``safekeep`` program: the desktop app without arguments, the command line with them.

This module sits above both front ends (``safekeep.gui`` and ``safekeep.cli`` may not import each
other). Without a display (a server, an SSH session) or with ``SAFEKEEP_NO_GUI`` set, no arguments
print the command line's help instead of opening the app.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def has_display() -> bool:
    if os.environ.get("SAFEKEEP_NO_GUI"):
        return False
    if sys.platform == "linux":
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args and has_display():
        try:
            from safekeep.gui.app import main as gui_main  # noqa: PLC0415 - Qt only for the app
        except ImportError as exc:
            print(f"safekeep: the desktop app cannot start ({exc}); the command line works:", file=sys.stderr)
        else:
            return gui_main(sys.argv[:1])
    from safekeep.cli.main import main as cli_main  # noqa: PLC0415

    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
