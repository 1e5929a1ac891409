-- People who sign in to the console (the JSON API keeps its bearer tokens).
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled_at   TEXT,
    created_at    TEXT NOT NULL
);

-- Console sessions, by the SHA-256 of the cookie's value (the value itself is never kept).
CREATE TABLE console_sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    csrf_token   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    ended_at     TEXT
);
CREATE INDEX console_sessions_by_user ON console_sessions (user_id);

-- Failed sign-ins, to slow down guessing per user name and per address.
CREATE TABLE sign_in_failures (
    id        TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    address   TEXT NOT NULL,
    at        TEXT NOT NULL
);
CREATE INDEX sign_in_failures_by_user ON sign_in_failures (user_name, at);
CREATE INDEX sign_in_failures_by_address ON sign_in_failures (address, at);
