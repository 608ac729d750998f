-- Access: kicks out of a room, held until they expire (SQLite dialect).
CREATE TABLE room_kicks (
    room_id    TEXT    NOT NULL REFERENCES rooms(id),
    user_id    INTEGER NOT NULL REFERENCES users(id),
    until_ms   INTEGER NOT NULL,
    kicked_by  INTEGER REFERENCES users(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
