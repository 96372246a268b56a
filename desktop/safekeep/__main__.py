"""``python -m safekeep``: the desktop app without arguments, the command line with them."""

from safekeep.launcher import main

raise SystemExit(main())
