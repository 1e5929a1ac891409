-- Patients pushed by callers (PUT /v1/patients), payors mapped to ACCloud funders, patient
-- plans (PUT /v1/patient-plans) and Idempotency-Key replays. Portable SQL: the PostgreSQL
-- file is identical. Uniqueness is enforced here, never by check-then-insert.

-- The caller's id for a patient; unique among patients that have one.
ALTER TABLE patients ADD COLUMN source_id TEXT;
CREATE UNIQUE INDEX patients_source_id ON patients (source_id) WHERE source_id IS NOT NULL;

-- Payors (insurers) and their ACCloud funder. A payor without a funder is `unmapped` (1):
-- intake creates such payors from insurance names it does not know, for a reviewer to map.
CREATE TABLE payors (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    norm_name            TEXT NOT NULL UNIQUE,
    accloud_funder_id    BIGINT,
    accloud_funder_name  TEXT,
    unmapped             BIGINT NOT NULL,
    created_by           TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE INDEX payors_unmapped ON payors (unmapped, norm_name);

-- A patient's insurances. Every field is immutable but source_id; a replaced or deleted plan
-- is archived (status 'archived'), never removed.
CREATE TABLE patient_plans (
    id                          TEXT PRIMARY KEY,
    patient_id                  TEXT NOT NULL REFERENCES patients (id),
    source_id                   TEXT,
    member_number               TEXT NOT NULL,
    payor_id                    TEXT NOT NULL REFERENCES payors (id),
    plan_order_number           BIGINT NOT NULL,
    group_number                TEXT,
    start_date                  TEXT,
    end_date                    TEXT,
    insurance_type              TEXT,
    insurance_card_file_id      TEXT,
    insurance_card_back_file_id TEXT,
    status                      TEXT NOT NULL,
    archived_at                 TEXT,
    -- 'replaced' or 'deleted'
    archived_reason             TEXT,
    replaced_by                 TEXT,
    created_by                  TEXT NOT NULL,
    created_at                  TEXT NOT NULL,
    updated_at                  TEXT NOT NULL
);
-- One active plan per patient and plan order; one active plan per patient and source_id.
CREATE UNIQUE INDEX patient_plans_active_order
    ON patient_plans (patient_id, plan_order_number) WHERE status = 'active';
CREATE UNIQUE INDEX patient_plans_active_source
    ON patient_plans (patient_id, source_id) WHERE status = 'active' AND source_id IS NOT NULL;
CREATE INDEX patient_plans_by_patient ON patient_plans (patient_id, status, plan_order_number);

-- Idempotency-Key: the first answer to a POST, PUT or PATCH, replayed for 24 hours. Scoped
-- per caller (the token's name). `status` is NULL while the first request is in flight.
CREATE TABLE idempotency_keys (
    caller         TEXT NOT NULL,
    idem_key       TEXT NOT NULL,
    method         TEXT NOT NULL,
    path           TEXT NOT NULL,
    body_sha256    TEXT NOT NULL,
    status         BIGINT,
    content_type   TEXT,
    response_body  TEXT,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (caller, idem_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
