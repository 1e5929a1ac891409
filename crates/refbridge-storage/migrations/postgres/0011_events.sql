-- Events for other systems (the feed `GET /v1/events` and the webhooks): a transactional
-- outbox. Each state change that matters outside inserts its event in its own transaction,
-- with `position` NULL. One sequencer at a time (PostgreSQL: an advisory lock; SQLite: the
-- writer lock) gives the committed, unpositioned events the next positions, in id order, in
-- one transaction; readers page by `position` over positioned events only. An event that
-- commits late is positioned late, after everything a reader has seen: the cursor never
-- skips it. Data: ids and statuses, never personal data.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    position    BIGINT,
    event_type  TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    request_id  TEXT,
    patient_id  TEXT,
    data_json   TEXT NOT NULL
);
CREATE UNIQUE INDEX events_position ON events (position);
CREATE INDEX events_unpositioned ON events (id) WHERE position IS NULL;
CREATE INDEX events_occurred ON events (occurred_at);

-- Receivers of signed webhooks (Standard Webhooks). `secret` is `whsec_` + base64, kept to
-- sign; `previous_secret` still signs until `previous_secret_until` after a rotation.
-- `event_types`: comma-separated names, NULL for every type. `failing_since`: the first
-- failed attempt since the last success; the endpoint is disabled when it gets too old.
CREATE TABLE webhook_endpoints (
    id                     TEXT PRIMARY KEY,
    url                    TEXT NOT NULL UNIQUE,
    event_types            TEXT,
    secret                 TEXT NOT NULL,
    previous_secret        TEXT,
    previous_secret_until  TEXT,
    enabled                BIGINT NOT NULL,
    disabled_reason        TEXT,
    failing_since          TEXT,
    created_by             TEXT NOT NULL,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);

-- One row per (endpoint, event) to deliver, queued by the sequencer as it positions the
-- event. Claimed under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL) by any worker
-- process; an event of a referral (`order_key`: its request id, '' for events of no
-- referral) is not claimed while an earlier one of the same referral is pending for the
-- same endpoint.
CREATE TABLE webhook_deliveries (
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        TEXT NOT NULL REFERENCES events (id),
    position        BIGINT NOT NULL,
    order_key       TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_owner     TEXT,
    lease_until     TEXT,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    PRIMARY KEY (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, order_key, position)
    WHERE state = 'pending';

-- Every attempt: the delivery log (status, latency, the response's first 256 bytes).
CREATE TABLE webhook_attempts (
    id             TEXT PRIMARY KEY,
    endpoint_id    TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id       TEXT NOT NULL,
    attempt        BIGINT NOT NULL,
    at             TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    status         BIGINT,
    latency_ms     BIGINT NOT NULL,
    response_head  TEXT,
    error          TEXT
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, at);

-- PostgreSQL only: an event committed (inserted) or positioned (by the sequencer) is announced
-- on channel `refbridge_event`, at commit; every process's listener wakes its feed readers and
-- its webhook worker. Polling stays the fallback (and SQLite's single process polls).
CREATE FUNCTION refbridge_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('refbridge_event', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER events_notify AFTER INSERT OR UPDATE OF position ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refbridge_notify_event();
