-- Dating profile fields, uploaded images, scheduled shows (预约) with their reservations,
-- and the operator webhook outbox (SQLite dialect).
ALTER TABLE users ADD COLUMN height_cm INTEGER;
ALTER TABLE users ADD COLUMN education TEXT;
ALTER TABLE users ADD COLUMN partner_preferences TEXT;
ALTER TABLE users ADD COLUMN photos TEXT NOT NULL DEFAULT '[]';

CREATE TABLE uploads (
    id         TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    kind       TEXT    NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX uploads_by_user ON uploads (user_id, created_at);

CREATE TABLE scheduled_shows (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id    TEXT    NOT NULL REFERENCES rooms(id),
    starts_at  INTEGER NOT NULL,
    title      TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX scheduled_shows_by_room ON scheduled_shows (room_id, starts_at);

CREATE TABLE reservations (
    schedule_id INTEGER NOT NULL REFERENCES scheduled_shows(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, user_id)
);
CREATE INDEX reservations_by_user ON reservations (user_id);

CREATE TABLE webhook_outbox (
    id              TEXT    PRIMARY KEY,
    event_type      TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    failed_at       INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (delivered_at, failed_at, next_attempt_at);
