-- Safekeep app database, version 2: notification channels, scheduler state, run reason text.

-- Where notifications go. config never holds a secret (an SMTP password is in the keyring).
CREATE TABLE notification_channels (
    id       TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('desktop', 'email', 'webhook')),
    config   TEXT NOT NULL DEFAULT '{}',   -- JSON object: the sender's settings
    events   TEXT NOT NULL DEFAULT '[]',   -- JSON list of event names
    enabled  INTEGER NOT NULL DEFAULT 1,
    created  REAL NOT NULL,
    updated  REAL NOT NULL
);

-- What the scheduler remembers about a plan between runs of the app.
CREATE TABLE scheduler_state (
    plan_id         TEXT PRIMARY KEY REFERENCES plans (id) ON DELETE CASCADE,
    last_scheduled  REAL,
    paused_until    REAL,
    retry_attempt   INTEGER NOT NULL DEFAULT 0,
    next_retry      REAL,
    updated         REAL NOT NULL
);

-- Why a run started, in words ("file changes in Documents", "retry 2 of 4").
ALTER TABLE runs ADD COLUMN reason_text TEXT NOT NULL DEFAULT '';
