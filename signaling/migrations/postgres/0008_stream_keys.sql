-- Per-room RTMP stream keys (PostgreSQL dialect). One key per room; rotating replaces it.
CREATE TABLE stream_keys (
    room_id    TEXT   PRIMARY KEY REFERENCES rooms(id),
    stream_key TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
