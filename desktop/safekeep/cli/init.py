"""``safekeep init``: create a new repository.

Writes the ``config`` file (format version 2 by default, 1 for very old restic) and the first key
file. Prints the repository's ID and a reminder that a lost password cannot be recovered.
With ``--json``: ``{"message_type":"initialized","id":...,"repository":...}`` (restic's form).
"""

from __future__ import annotations

import argparse
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.common.errors import UsageError
from safekeep.core.repository import Repository

REMINDER = (
    "Please note that knowledge of your password is required to access the repository.\n"
    "Losing your password means that your data is irrecoverably lost."
)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "init",
        help="create a new repository",
        description="Create a new repository at the location given by -r.",
    )
    p.add_argument(
        "--repo-version",
        type=int,
        choices=(1, 2),
        default=2,
        help="repository format version (default 2; 1 only for restic older than 0.14)",
    )
    p.set_defaults(run=run)


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    backend = ctx.open_backend(read_only=False)
    try:
        password = ctx.password(new_repository=True)
        if not password.reveal():
            raise UsageError(
                "An empty password is not allowed.", hint="Choose a password for the repository."
            )
        repo = Repository.init(
            backend,
            password.reveal(),
            version=args.repo_version,
            options=ctx.repository_options(),
            cancel=ctx.cancel,
        )
        try:
            ctx.out.json({"message_type": "initialized", "id": repo.config.id, "repository": repo.location})
            ctx.out.info(f"created repository {repo.config.id[:10]} at {repo.location}")
            ctx.out.info()
            ctx.out.info(REMINDER)
        finally:
            repo.close()
    finally:
        backend.close()
    return 0
