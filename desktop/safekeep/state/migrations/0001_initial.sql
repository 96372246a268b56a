-- Safekeep app database, version 1: destinations, plans, run history and settings.

-- Where backups go. Secrets are not here: the keyring holds them under the destination's id.
CREATE TABLE destinations (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    location            TEXT NOT NULL,
    env                 TEXT NOT NULL DEFAULT '{}',   -- JSON object: non-secret provider settings
    secret_env          TEXT NOT NULL DEFAULT '[]',   -- JSON list: names of secrets in the keyring
    options             TEXT NOT NULL DEFAULT '{}',   -- JSON object
    removable           INTEGER NOT NULL DEFAULT 0,
    low_space_mib       INTEGER,
    upload_limit_kib    INTEGER,
    download_limit_kib  INTEGER,
    created             REAL NOT NULL,
    updated             REAL NOT NULL
);

-- What is backed up, when and for how long.
CREATE TABLE plans (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    sources     TEXT NOT NULL DEFAULT '[]',   -- JSON list of paths
    excludes    TEXT NOT NULL DEFAULT '[]',   -- JSON list of patterns
    triggers    TEXT NOT NULL DEFAULT '[]',   -- JSON list of {kind, params}
    retention   TEXT NOT NULL DEFAULT '{}',   -- JSON object (restic forget policy)
    retry       TEXT NOT NULL DEFAULT '{}',   -- JSON object
    enabled     INTEGER NOT NULL DEFAULT 1,
    created     REAL NOT NULL,
    updated     REAL NOT NULL
);
CREATE UNIQUE INDEX plans_name ON plans (name COLLATE NOCASE);

-- A plan's destinations, in the order the admin chose. A destination in use cannot be removed.
CREATE TABLE plan_destinations (
    plan_id         TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    destination_id  TEXT NOT NULL REFERENCES destinations (id) ON DELETE RESTRICT,
    position        INTEGER NOT NULL,
    PRIMARY KEY (plan_id, destination_id)
);
CREATE INDEX plan_destinations_destination ON plan_destinations (destination_id);

-- Run history. No foreign key to plans: the history outlives a removed plan.
CREATE TABLE runs (
    id           TEXT PRIMARY KEY,
    plan_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    started      REAL NOT NULL,
    finished     REAL,
    outcome      TEXT NOT NULL,
    worker_pid   INTEGER,
    worker_host  TEXT
);
CREATE INDEX runs_started ON runs (started);
CREATE INDEX runs_plan_started ON runs (plan_id, started);
CREATE INDEX runs_outcome ON runs (outcome);

-- One destination's part of a run. skipped_omitted counts skipped files beyond the stored list.
CREATE TABLE run_results (
    run_id           TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    destination_id   TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    snapshot_id      TEXT NOT NULL DEFAULT '',
    files            INTEGER NOT NULL DEFAULT 0,
    bytes            INTEGER NOT NULL DEFAULT 0,
    bytes_added      INTEGER NOT NULL DEFAULT 0,
    error            TEXT NOT NULL DEFAULT '',
    skipped_omitted  INTEGER NOT NULL DEFAULT 0,
    started          REAL,
    finished         REAL,
    PRIMARY KEY (run_id, destination_id)
);
CREATE INDEX run_results_destination ON run_results (destination_id);

-- Files a run could not back up, with the reason.
CREATE TABLE skipped_files (
    run_id          TEXT NOT NULL,
    destination_id  TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    path            TEXT NOT NULL,
    reason          TEXT NOT NULL,
    PRIMARY KEY (run_id, destination_id, seq),
    FOREIGN KEY (run_id, destination_id) REFERENCES run_results (run_id, destination_id) ON DELETE CASCADE
);

-- App-wide settings: a JSON value per key.
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
