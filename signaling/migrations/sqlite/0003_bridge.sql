-- Bridge: show recordings (HLS VOD on disk) and RTMP push targets (SQLite dialect).
CREATE TABLE recordings (
    room_id       TEXT    NOT NULL REFERENCES rooms(id),
    id            TEXT    NOT NULL,
    show_id       INTEGER REFERENCES shows(id),
    started_at    INTEGER NOT NULL,
    ended_at      INTEGER,
    duration_ms   INTEGER NOT NULL DEFAULT 0,
    segments      INTEGER NOT NULL DEFAULT 0,
    width         INTEGER NOT NULL DEFAULT 0,
    height        INTEGER NOT NULL DEFAULT 0,
    has_video     INTEGER NOT NULL DEFAULT 0,
    has_audio     INTEGER NOT NULL DEFAULT 0,
    playlist_path TEXT    NOT NULL,
    error         TEXT,
    PRIMARY KEY (room_id, id)
);
CREATE INDEX recordings_by_room ON recordings (room_id, started_at);

CREATE TABLE rtmp_targets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id     TEXT    NOT NULL REFERENCES rooms(id),
    url         TEXT    NOT NULL,
    created_by  INTEGER REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    last_state  TEXT,
    last_error  TEXT,
    updated_at  INTEGER
);
CREATE INDEX rtmp_targets_by_room ON rtmp_targets (room_id);
