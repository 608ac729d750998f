-- Chat, likes, gifts and the coin ledger (SQLite dialect).
CREATE TABLE gifts (
    id          TEXT PRIMARY KEY,
    name        TEXT    NOT NULL,
    price_coins INTEGER NOT NULL CHECK (price_coins > 0),
    animation   TEXT    NOT NULL,
    sort_order  INTEGER NOT NULL DEFAULT 0,
    enabled     INTEGER NOT NULL DEFAULT 1
);
INSERT INTO gifts (id, name, price_coins, animation, sort_order) VALUES
    ('rose',   '玫瑰', 1,    'rose',   1),
    ('heart',  '爱心', 10,   'heart',  2),
    ('kiss',   '飞吻', 66,   'kiss',   3),
    ('ring',   '钻戒', 520,  'ring',   4),
    ('car',    '跑车', 1314, 'car',    5),
    ('castle', '城堡', 5200, 'castle', 6);

CREATE TABLE wallets (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id),
    coins      INTEGER NOT NULL DEFAULT 0 CHECK (coins >= 0),
    earnings   INTEGER NOT NULL DEFAULT 0 CHECK (earnings >= 0),
    updated_at INTEGER NOT NULL
);

CREATE TABLE coin_topups (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES users(id),
    amount          INTEGER NOT NULL CHECK (amount > 0),
    idempotency_key TEXT    NOT NULL UNIQUE,
    admin_id        INTEGER REFERENCES users(id),
    created_at      INTEGER NOT NULL
);

CREATE TABLE gift_sends (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    sender_id       INTEGER NOT NULL REFERENCES users(id),
    idempotency_key TEXT    NOT NULL,
    room_id         TEXT    NOT NULL REFERENCES rooms(id),
    show_id         INTEGER REFERENCES shows(id),
    host_id         INTEGER NOT NULL REFERENCES users(id),
    gift_id         TEXT    NOT NULL REFERENCES gifts(id),
    quantity        INTEGER NOT NULL CHECK (quantity > 0),
    coins           INTEGER NOT NULL CHECK (coins > 0),
    created_at      INTEGER NOT NULL,
    UNIQUE (sender_id, idempotency_key)
);
CREATE INDEX gift_sends_by_room ON gift_sends (room_id, sender_id);
CREATE INDEX gift_sends_by_show ON gift_sends (show_id, sender_id);

CREATE TABLE chat_messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id    TEXT    NOT NULL REFERENCES rooms(id),
    seq        INTEGER NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    text       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER,
    UNIQUE (room_id, seq)
);

ALTER TABLE rooms ADD COLUMN likes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE shows ADD COLUMN likes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;
