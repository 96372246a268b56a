"""``python -m safekeep`` runs the command line."""

from safekeep.cli.main import main

raise SystemExit(main())
