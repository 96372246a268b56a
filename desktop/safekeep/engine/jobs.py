"""What a worker is asked to do: a job, sent as one JSON document on the worker's stdin.

A job carries the secrets it needs (the repository password, provider credentials, the
destination's stored tokens) so the worker never touches the keyring; stdin is a pipe between
the two processes, never a command line or a file. ``repr`` hides them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from safekeep.state.model import Destination
from safekeep.storage.compose import StorageOptions
from safekeep.storage.registry import ProviderSettings
from safekeep.storage.secrets import SecretStore


@dataclass(frozen=True, slots=True)
class Job:
    """One job on one destination.

    ``kind``: ``backup`` (``sources``, ``excludes``, ``tags``; ``retention``: the plan's
    :class:`~safekeep.state.model.Retention` as a dict, applied to the snapshots with ``tags``
    after the backup, see :mod:`safekeep.engine.retention`), ``check`` (``read_data``) or
    ``restore`` (``snapshot_id``, ``paths``, ``target``, ``conflict``, ``decisions``, ``flatten``,
    ``verify``; see :class:`~safekeep.core.restorer.RestoreOptions`). A restore writes its report
    (:class:`~safekeep.core.restorer.RestoreReport`) to ``report_dir/<run_id>.json`` when
    ``report_dir`` is set.
    """

    kind: str
    run_id: str
    destination: Destination
    password: str = field(repr=False)
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    store: Mapping[str, str] = field(default_factory=dict, repr=False)
    sources: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    read_data: bool = False
    snapshot_id: str = ""
    paths: tuple[str, ...] = ()
    target: str = ""
    cache_dir: str | None = None
    kdf: tuple[int, int, int] | None = None  # cheap scrypt parameters for tests, else None
    audit_log: str = ""  # the audit log to append the job's entry to and copy off-site ("" = none)
    audit_target: str = ""  # how the entry names what the job worked on
    conflict: str = "overwrite"  # a ConflictPolicy value
    decisions: Mapping[str, str] = field(default_factory=dict)  # snapshot path -> ConflictPolicy value
    flatten: bool = False
    verify: bool = True
    report_dir: str = ""
    retention: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "run_id": self.run_id,
                "destination": self.destination.to_dict(),
                "password": self.password,
                "secret_env": dict(self.secret_env),
                "store": dict(self.store),
                "sources": list(self.sources),
                "excludes": list(self.excludes),
                "tags": list(self.tags),
                "read_data": self.read_data,
                "snapshot_id": self.snapshot_id,
                "paths": list(self.paths),
                "target": self.target,
                "cache_dir": self.cache_dir,
                "kdf": list(self.kdf) if self.kdf else None,
                "audit_log": self.audit_log,
                "audit_target": self.audit_target,
                "conflict": self.conflict,
                "decisions": dict(self.decisions),
                "flatten": self.flatten,
                "verify": self.verify,
                "report_dir": self.report_dir,
                "retention": dict(self.retention),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Job:
        d: dict[str, Any] = json.loads(text)
        kdf = d.get("kdf")
        return cls(
            kind=str(d["kind"]),
            run_id=str(d["run_id"]),
            destination=Destination.from_dict(d["destination"]),
            password=str(d["password"]),
            secret_env={str(k): str(v) for k, v in (d.get("secret_env") or {}).items()},
            store={str(k): str(v) for k, v in (d.get("store") or {}).items()},
            sources=tuple(d.get("sources") or ()),
            excludes=tuple(d.get("excludes") or ()),
            tags=tuple(d.get("tags") or ()),
            read_data=bool(d.get("read_data")),
            snapshot_id=str(d.get("snapshot_id") or ""),
            paths=tuple(d.get("paths") or ()),
            target=str(d.get("target") or ""),
            cache_dir=d.get("cache_dir"),
            kdf=(int(kdf[0]), int(kdf[1]), int(kdf[2])) if kdf else None,
            audit_log=str(d.get("audit_log") or ""),
            audit_target=str(d.get("audit_target") or ""),
            conflict=str(d.get("conflict") or "overwrite"),
            decisions={str(k): str(v) for k, v in (d.get("decisions") or {}).items()},
            flatten=bool(d.get("flatten")),
            verify=bool(d.get("verify", True)),
            report_dir=str(d.get("report_dir") or ""),
            retention={str(k): int(v) for k, v in (d.get("retention") or {}).items()},
        )


def storage_options(
    dest: Destination,
    secret_env: Mapping[str, str],
    store: SecretStore | None,
    *,
    read_only: bool = False,
) -> StorageOptions:
    """How to open a destination's storage: its settings and options, the secret variables'
    values, the store of its sign-in tokens, and its bandwidth limits (one place for the service
    and the worker)."""
    settings = ProviderSettings(env={**dest.env, **secret_env}, options=dict(dest.options), store=store)
    return StorageOptions(
        provider=settings,
        read_only=read_only,
        upload_limit_kib=dest.upload_limit_kib,
        download_limit_kib=dest.download_limit_kib,
    )
