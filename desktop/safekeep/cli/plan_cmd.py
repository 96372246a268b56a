"""``safekeep plan list | add | edit | remove | show``: the backup plans the app runs.

A plan is what to back up (``--source``), where to (``--to``, one or more destinations: a USB disk
and a cloud bucket, say), when (``--daily 22:00``, ``--every 60``, ``--on-change``, ...) and how
long to keep snapshots (``--keep-daily 7`` ...). Destinations get their repository password from
``--password-file``/``SAFEKEEP_PASSWORD`` or a prompt, and provider credentials from the
environment under restic's names; the secrets go to the keyring.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from typing import Any

from safekeep.cli.context import CliContext
from safekeep.cli.login_cmd import sign_in
from safekeep.common.errors import UsageError
from safekeep.engine import control
from safekeep.engine.credentials import credentials_from_env
from safekeep.engine.service import Service
from safekeep.state import paths
from safekeep.state.model import Plan, Retention, Trigger, new_id
from safekeep.storage.registry import ProviderSettings, parse_location
from safekeep.storage.secrets import MemorySecretStore
from safekeep.triggers.rules import SCHEDULE_KINDS, InvalidSchedule, parse_rule

SIGN_IN_SCHEMES = frozenset({"gdrive", "onedrive", "dropbox"})

_WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_KEEP = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("plan", help="list, add, change or remove backup plans", description=__doc__)
    psub = p.add_subparsers(dest="plan_command", metavar="ACTION", required=True)

    ls = psub.add_parser("list", help="list the plans")
    ls.set_defaults(run=run_list)

    show = psub.add_parser("show", help="show one plan in full")
    show.add_argument("name")
    show.set_defaults(run=run_show)

    add = psub.add_parser("add", help="add a plan")
    add.add_argument("name")
    add.add_argument("--source", action="append", required=True, metavar="PATH", help="a folder to back up")
    add.add_argument(
        "--to",
        action="append",
        required=True,
        metavar="[NAME=]LOCATION",
        help="a destination: a repository location, optionally named (repeatable)",
    )
    add.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a storage option for the new destinations, as in restic (e.g. s3.storage-class=STANDARD_IA)",
    )
    add.add_argument(
        "--existing",
        action="store_true",
        help="the repositories exist already: connect to them instead of creating them",
    )
    _plan_options(add)
    add.set_defaults(run=run_add)

    edit = psub.add_parser("edit", help="change a plan")
    edit.add_argument("name")
    edit.add_argument("--rename", metavar="NEW")
    edit.add_argument("--source", action="append", default=None, metavar="PATH", help="replace the folders")
    edit.add_argument("--clear-triggers", action="store_true", help="remove every trigger first")
    edit.add_argument("--disable", action="store_true", help="stop running the plan automatically")
    edit.add_argument("--enable", action="store_true", help="run the plan automatically again")
    _plan_options(edit)
    edit.set_defaults(run=run_edit)

    rm = psub.add_parser("remove", help="remove a plan (its backups stay in the repositories)")
    rm.add_argument("name")
    rm.set_defaults(run=run_remove)


def _plan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-e", "--exclude", action="append", default=None, metavar="PATTERN")
    p.add_argument("--every", type=int, metavar="MINUTES", help="run every MINUTES minutes")
    p.add_argument("--daily", action="append", metavar="HH:MM", help="run every day at HH:MM")
    p.add_argument("--weekly", metavar="DAYS@HH:MM", help="e.g. mon,thu@18:00")
    p.add_argument("--monthly", metavar="DAY@HH:MM", help="e.g. 1@09:00 or last@18:00")
    p.add_argument("--cron", metavar="EXPRESSION", help="a 5-field cron expression")
    p.add_argument("--on-change", action="store_true", help="run when files in the folders change")
    p.add_argument("--quiet-seconds", type=int, default=60, help="with --on-change: wait for this much quiet")
    p.add_argument(
        "--max-delay-seconds", type=int, default=900, help="with --on-change: but never longer than this"
    )
    p.add_argument("--when-connected", action="store_true", help="run when a removable destination appears")
    for k in _KEEP:
        p.add_argument(f"--keep-{k}", type=int, default=None, metavar="N")


def _time(value: str, what: str) -> str:
    if not _TIME.match(value):
        raise UsageError(f"{what}: {value!r} is not a time like 22:00.")
    h, m = value.split(":")
    return f"{int(h):02d}:{m}"


def triggers_from(args: argparse.Namespace) -> list[Trigger]:
    out: list[Trigger] = []
    if args.every is not None:
        if args.every < 1:
            raise UsageError("--every needs a number of minutes of at least 1.")
        out.append(Trigger("interval", {"minutes": args.every}))
    if args.daily:
        out.append(Trigger("daily", {"times": [_time(t, "--daily") for t in args.daily]}))
    if args.weekly:
        days, _, at = args.weekly.partition("@")
        try:
            weekdays = sorted({_WEEKDAYS[d.strip().lower()[:3]] for d in days.split(",") if d.strip()})
        except KeyError as exc:
            raise UsageError(f"--weekly: unknown day {exc.args[0]!r}; use mon, tue, ...") from None
        out.append(Trigger("weekly", {"weekdays": weekdays, "times": [_time(at or "00:00", "--weekly")]}))
    if args.monthly:
        day, _, at = args.monthly.partition("@")
        if day.strip().lower() == "last":
            n = -1
        elif day.strip().isdigit() and 1 <= int(day) <= 31:
            n = int(day)
        else:
            raise UsageError("--monthly: the day is 1 to 31 or 'last', e.g. last@18:00.")
        out.append(Trigger("monthly", {"days": [n], "times": [_time(at or "00:00", "--monthly")]}))
    if args.cron:
        out.append(Trigger("cron", {"expression": args.cron}))
    if args.on_change:
        out.append(
            Trigger(
                "file-change",
                {"quiet_seconds": args.quiet_seconds, "max_delay_seconds": args.max_delay_seconds},
            )
        )
    if args.when_connected:
        out.append(Trigger("disk-connected", {}))
    return out


def retention_from(args: argparse.Namespace, base: Retention | None = None) -> Retention:
    values = (base or Retention()).to_dict()
    for k in _KEEP:
        v = getattr(args, f"keep_{k}")
        if v is not None:
            values[f"keep_{k}"] = v
    return Retention.from_dict(values)


def parse_options(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"-o {v!r}: write options as NAME=VALUE.")
        out[name.strip()] = value
    return out


def _dest_spec(spec: str) -> tuple[str, str]:
    name, sep, location = spec.partition("=")
    if sep and name and ":" not in name and "/" not in name and "\\" not in name:
        return name, location
    return spec, spec


def run_add(ctx: CliContext, args: argparse.Namespace) -> int:
    service = ctx.service()
    if service.db.find_plan(args.name) is not None:
        raise UsageError(f"A plan called {args.name!r} exists already.", hint="Choose another name.")
    dest_ids: list[str] = []
    password = None
    for spec in args.to:
        name, location = _dest_spec(spec)
        existing = next(
            (
                d
                for d in service.destinations()
                if d.name.casefold() == name.casefold() or d.location == location
            ),
            None,
        )
        if existing is not None:
            dest_ids.append(existing.id)
            continue
        if password is None:
            password = ctx.password(new_repository=not args.existing)
        env, secrets = credentials_from_env(location, ctx.env)
        options = parse_options(args.option)
        store = None
        if parse_location(location).scheme in SIGN_IN_SCHEMES:
            store = MemorySecretStore()
            account = sign_in(ctx, location, store, ProviderSettings(env=env, options=options, store=store))
            ctx.out.info(f"signed in as {account}")
        dest = service.add_destination(
            name,
            location,
            password=password.reveal(),
            env=env,
            secrets=secrets,
            options=options,
            create=not args.existing,
            store=store,
            cancel=ctx.cancel,
        )
        ctx.out.info(f"destination {dest.name} ready at {dest.location}")
        dest_ids.append(dest.id)
    plan = Plan(
        id=new_id(),
        name=args.name,
        sources=tuple(args.source),
        destination_ids=tuple(dest_ids),
        excludes=tuple(args.exclude or ()),
        triggers=tuple(triggers_from(args)),
        retention=retention_from(args),
    )
    service.save_plan(plan)
    ctx.out.json({"message_type": "plan", **plan.to_dict()})
    tell_host()
    ctx.out.result(f"plan {plan.name} saved")
    return 0


def run_edit(ctx: CliContext, args: argparse.Namespace) -> int:
    service = ctx.service()
    plan = service.plan(args.name)
    changes: dict[str, Any] = {}
    if args.rename:
        changes["name"] = args.rename
    if args.source:
        changes["sources"] = tuple(args.source)
    if args.exclude is not None:
        changes["excludes"] = tuple(args.exclude)
    new_triggers = triggers_from(args)
    if args.clear_triggers or new_triggers:
        base = () if args.clear_triggers else plan.triggers
        kinds = {t.kind for t in new_triggers}
        changes["triggers"] = tuple(t for t in base if t.kind not in kinds) + tuple(new_triggers)
    changes["retention"] = retention_from(args, plan.retention)
    if args.disable and args.enable:
        raise UsageError("--enable and --disable cannot be used together.")
    if args.disable or args.enable:
        changes["enabled"] = bool(args.enable)
    updated = plan.with_changes(**changes)
    service.save_plan(updated)
    ctx.out.json({"message_type": "plan", **updated.to_dict()})
    tell_host()
    ctx.out.result(f"plan {updated.name} saved")
    return 0


def run_remove(ctx: CliContext, args: argparse.Namespace) -> int:
    service = ctx.service()
    plan = service.plan(args.name)
    service.remove_plan(plan.id)
    ctx.out.json({"message_type": "plan_removed", "id": plan.id, "name": plan.name})
    tell_host()
    ctx.out.result(f"plan {plan.name} removed; its snapshots stay in the repositories")
    return 0


def tell_host() -> None:
    """Let a running app or daemon read the plans again (it also does so every minute)."""
    control.send(paths.data_dir(), {"op": "reload"}, timeout=5)


def describe_trigger(t: Trigger) -> str:
    """A trigger in plain English; schedules are described by their rule."""
    if t.kind in SCHEDULE_KINDS:
        try:
            return parse_rule(t.kind, t.params).describe()
        except InvalidSchedule as exc:
            return f"an unusable {t.kind} schedule ({exc.message})"
    if t.kind == "file-change":
        return f"when files change (after {t.params.get('quiet_seconds', 60)} s of quiet)"
    if t.kind == "disk-connected":
        return "when the disk is connected"
    return t.kind


def _last_run_text(service: Service, plan: Plan) -> str:
    runs = service.db.runs(plan_id=plan.id, limit=1)
    if not runs:
        return "never run"
    r = runs[0]
    when = datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M")
    return f"{r.outcome.value} ({when})"


def run_list(ctx: CliContext, args: argparse.Namespace) -> int:
    service = ctx.service()
    plans = service.plans()
    dests = {d.id: d for d in service.destinations()}
    for plan in plans:
        ctx.out.json({"message_type": "plan", **plan.to_dict()})
    if not plans:
        ctx.out.result("no plans yet: add one with 'safekeep plan add NAME --source DIR --to LOCATION'")
        return 0
    for plan in plans:
        to = ", ".join(dests[i].name if i in dests else i for i in plan.destination_ids)
        when = "; ".join(describe_trigger(t) for t in plan.triggers) or "manual only"
        state = "" if plan.enabled else " [paused]"
        last = _last_run_text(service, plan)
        ctx.out.result(f"{plan.name}{state}: {len(plan.sources)} folder(s) -> {to}; {when}; last run {last}")
    return 0


def run_show(ctx: CliContext, args: argparse.Namespace) -> int:
    service = ctx.service()
    plan = service.plan(args.name)
    dests = {d.id: d for d in service.destinations()}
    ctx.out.json(
        {
            "message_type": "plan",
            **plan.to_dict(),
            "destinations": [dests[i].to_dict() for i in plan.destination_ids if i in dests],
        }
    )
    r = ctx.out.result
    r(f"plan:         {plan.name} ({plan.id}){'' if plan.enabled else ' [paused]'}")
    r("folders:      " + ", ".join(plan.sources))
    if plan.excludes:
        r("excluded:     " + ", ".join(plan.excludes))
    for i in plan.destination_ids:
        d = dests.get(i)
        r(f"destination:  {d.name} at {d.location}" if d else f"destination:  {i} (missing)")
    r("when:         " + ("; ".join(describe_trigger(t) for t in plan.triggers) or "manual only"))
    keep = {k: v for k, v in plan.retention.to_dict().items() if v}
    r(
        "keep:         "
        + (", ".join(f"{k.removeprefix('keep_')} {v}" for k, v in keep.items()) or "everything")
    )
    r(f"last run:     {_last_run_text(service, plan)}")
    return 0
