-- Who read a patient's data, when, and through what: every page or API read that shows it.
-- Kept apart from the application log, which never holds personal data.
CREATE TABLE phi_access (
    id         TEXT PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    via        TEXT NOT NULL,
    what       TEXT NOT NULL,
    request_id TEXT,
    patient_id TEXT
);
CREATE INDEX phi_access_by_time ON phi_access (at, id);
CREATE INDEX phi_access_by_request ON phi_access (request_id, at);
