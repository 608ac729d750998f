-- Moderation: mutes in a room, held until they expire, across restarts (PostgreSQL dialect).
CREATE TABLE room_mutes (
    room_id    TEXT   NOT NULL REFERENCES rooms(id),
    user_id    BIGINT NOT NULL REFERENCES users(id),
    until_ms   BIGINT NOT NULL,
    muted_by   BIGINT REFERENCES users(id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
