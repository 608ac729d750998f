-- Per-room RTMP stream keys (SQLite dialect). One key per room; rotating replaces it.
CREATE TABLE stream_keys (
    room_id    TEXT    PRIMARY KEY REFERENCES rooms(id),
    stream_key TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
