-- Accounts, rooms, show history and server secrets (SQLite dialect).
CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    username       TEXT,
    username_key   TEXT UNIQUE,
    phone          TEXT UNIQUE,
    password_hash  TEXT    NOT NULL,
    role           TEXT    NOT NULL DEFAULT 'viewer',
    nickname       TEXT    NOT NULL,
    avatar_url     TEXT,
    gender         TEXT,
    birth_year     INTEGER,
    city           TEXT,
    bio            TEXT,
    tags           TEXT    NOT NULL DEFAULT '[]',
    banned_at      INTEGER,
    ban_reason     TEXT,
    token_version  INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE rooms (
    id              TEXT PRIMARY KEY,
    host_id         INTEGER REFERENCES users(id),
    title           TEXT    NOT NULL,
    cover_url       TEXT,
    tags            TEXT    NOT NULL DEFAULT '[]',
    city            TEXT,
    scheduled_start INTEGER,
    visibility      TEXT    NOT NULL DEFAULT 'public',
    status          TEXT    NOT NULL DEFAULT 'open',
    live            INTEGER NOT NULL DEFAULT 0,
    viewers         INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX rooms_by_host ON rooms (host_id);
CREATE INDEX rooms_listing ON rooms (status, live, viewers);

CREATE TABLE room_tags (
    room_id TEXT NOT NULL REFERENCES rooms(id),
    tag     TEXT NOT NULL,
    PRIMARY KEY (room_id, tag)
);
CREATE INDEX room_tags_by_tag ON room_tags (tag);

CREATE TABLE room_grants (
    room_id    TEXT    NOT NULL REFERENCES rooms(id),
    user_id    INTEGER NOT NULL REFERENCES users(id),
    granted_by INTEGER REFERENCES users(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

CREATE TABLE shows (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id      TEXT    NOT NULL REFERENCES rooms(id),
    started_at   INTEGER NOT NULL,
    ended_at     INTEGER,
    peak_viewers INTEGER NOT NULL DEFAULT 0,
    end_reason   TEXT
);
CREATE INDEX shows_by_room ON shows (room_id, started_at);

CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
