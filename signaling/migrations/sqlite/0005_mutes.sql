-- Moderation: mutes in a room, held until they expire, across restarts (SQLite dialect).
CREATE TABLE room_mutes (
    room_id    TEXT    NOT NULL REFERENCES rooms(id),
    user_id    INTEGER NOT NULL REFERENCES users(id),
    until_ms   INTEGER NOT NULL,
    muted_by   INTEGER REFERENCES users(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
