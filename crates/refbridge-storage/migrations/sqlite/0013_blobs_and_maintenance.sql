-- The `postgres` blob backend's tables (blob_contents, blob_chunks) exist on PostgreSQL only:
-- on SQLite, bodies live in the folder (or S3).

-- Periodic maintenance (retention) runs in one process at a time: the holder of a row's lease.
CREATE TABLE maintenance_leases (
    name         TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    lease_until  TEXT NOT NULL
);

CREATE INDEX referral_files_sha256 ON referral_files (sha256);
