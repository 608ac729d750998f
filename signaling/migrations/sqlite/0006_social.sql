-- Recharges through a payment provider, follows and blocks (SQLite dialect).
CREATE TABLE recharge_orders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES users(id),
    provider        TEXT    NOT NULL,
    provider_ref    TEXT    NOT NULL,
    coins           INTEGER NOT NULL CHECK (coins > 0),
    price_cents     INTEGER NOT NULL CHECK (price_cents > 0),
    idempotency_key TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    UNIQUE (user_id, idempotency_key)
);

CREATE TABLE follows (
    follower_id INTEGER NOT NULL REFERENCES users(id),
    host_id     INTEGER NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (follower_id, host_id)
);
CREATE INDEX follows_by_host ON follows (host_id);

CREATE TABLE blocks (
    user_id    INTEGER NOT NULL REFERENCES users(id),
    blocked_id INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
