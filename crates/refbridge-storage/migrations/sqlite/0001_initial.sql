-- Timestamps are UTC text in RFC 3339 with microseconds and a Z ("2026-01-02T03:04:05.000006Z"),
-- which sorts in time order. Ids are UUID text. The PostgreSQL migrations mirror this file.

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE patients (
    id          TEXT PRIMARY KEY,
    first_name  TEXT NOT NULL,
    last_name   TEXT NOT NULL,
    birthday    TEXT,
    gender      TEXT,
    email       TEXT,
    phone_main  TEXT,
    address     TEXT,
    city        TEXT,
    state       TEXT,
    zip         TEXT,
    country     TEXT,
    timezone    TEXT,
    norm_first  TEXT NOT NULL,
    norm_last   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX patients_by_person ON patients (norm_last, norm_first, birthday);

-- Which agency client is which patient: one patient per (AlayaMarket org, agency client id).
CREATE TABLE patient_agency_clients (
    org_id      TEXT NOT NULL,
    client_id   BIGINT NOT NULL,
    patient_id  TEXT NOT NULL REFERENCES patients (id),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, client_id)
);

CREATE TABLE referral_requests (
    request_id        TEXT PRIMARY KEY,
    fingerprint       TEXT NOT NULL,
    status            TEXT NOT NULL,
    agency_org_id     TEXT NOT NULL,
    agency_name       TEXT NOT NULL,
    agency_client_id  BIGINT NOT NULL,
    patient_id        TEXT NOT NULL REFERENCES patients (id),
    patient_match     TEXT NOT NULL,
    service_requested TEXT,
    warning_count     BIGINT NOT NULL,
    received_at       TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    request_json      TEXT NOT NULL,
    parsed_json       TEXT NOT NULL,
    warnings_json     TEXT NOT NULL,
    extra_json        TEXT,
    denial_reason     TEXT
);
CREATE INDEX referral_requests_newest ON referral_requests (received_at, request_id);
CREATE INDEX referral_requests_by_status ON referral_requests (status, received_at);
CREATE INDEX referral_requests_by_agency ON referral_requests (agency_org_id, received_at);

-- Content-addressed file bodies; the bytes live in the file store under their hash.
CREATE TABLE blobs (
    sha256      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    media_type  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE referral_files (
    id          TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL REFERENCES referral_requests (request_id),
    position    BIGINT NOT NULL,
    file_name   TEXT NOT NULL,
    sha256      TEXT NOT NULL REFERENCES blobs (sha256),
    UNIQUE (request_id, position)
);

CREATE TABLE status_history (
    id          TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL REFERENCES referral_requests (request_id),
    status      TEXT NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT
);
CREATE INDEX status_history_by_request ON status_history (request_id, at);

CREATE TABLE audit_events (
    id            TEXT PRIMARY KEY,
    at            TEXT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    subject_type  TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    details_json  TEXT NOT NULL
);
CREATE INDEX audit_events_by_subject ON audit_events (subject_type, subject_id, at);
