-- File bodies in the database (the `postgres` blob backend, the default on PostgreSQL): one
-- row per body, its bytes in 1 MiB chunks, written in one transaction. `stored_at` is when the
-- body was last stored or stored again: a prune of bodies no referral refers to spares the
-- recent ones (an intake still in flight).
CREATE TABLE blob_contents (
    sha256     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    chunks     BIGINT NOT NULL,
    stored_at  TEXT NOT NULL
);

CREATE TABLE blob_chunks (
    sha256  TEXT NOT NULL,
    idx     BIGINT NOT NULL,
    data    BYTEA NOT NULL,
    PRIMARY KEY (sha256, idx)
);

-- Periodic maintenance (retention) runs in one process at a time: the holder of a row's lease.
CREATE TABLE maintenance_leases (
    name         TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    lease_until  TEXT NOT NULL
);

CREATE INDEX referral_files_sha256 ON referral_files (sha256);
