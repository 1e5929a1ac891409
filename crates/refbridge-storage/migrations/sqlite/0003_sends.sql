-- The approval and its send to ACCloud.

-- The approved terms of a Referral Request (one row per request; replaced on change).
CREATE TABLE approvals (
    request_id   TEXT PRIMARY KEY REFERENCES referral_requests (request_id),
    terms_json   TEXT NOT NULL,
    terms_hash   TEXT NOT NULL,
    approved_by  TEXT NOT NULL,
    approved_at  TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

-- One send job per referral: the unit a worker claims. A lease (owner, until) and a fencing
-- token guard it: every write of the job or its steps checks the token.
CREATE TABLE send_jobs (
    request_id    TEXT PRIMARY KEY REFERENCES referral_requests (request_id),
    state         TEXT NOT NULL,            -- ready | paused | done
    run_at        TEXT NOT NULL,
    lease_owner   TEXT,
    lease_until   TEXT,
    fence         BIGINT NOT NULL,
    pause_reason  TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX send_jobs_due ON send_jobs (state, run_at);

-- The steps of a send, in order. `natural_key` is committed before the remote call (the
-- intent); `remote_id` after it, together with the next step's state.
CREATE TABLE send_steps (
    request_id       TEXT NOT NULL REFERENCES referral_requests (request_id),
    position         BIGINT NOT NULL,
    change_no        BIGINT NOT NULL,            -- 0: the first send; then each change
    kind             TEXT NOT NULL,          -- client | service | authorization | referral | attachment | *_update | authorization_delete | referral_cancel
    item             TEXT NOT NULL,          -- which authorization or file; '' otherwise
    state            TEXT NOT NULL,          -- pending | in_flight | unknown | done | failed
    attempts         BIGINT NOT NULL,
    natural_key      TEXT,
    remote_id        TEXT,
    result_json      TEXT,
    last_error       TEXT,
    last_attempt_at  TEXT,
    not_before       TEXT,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (request_id, position)
);

-- What was asked of a send, in order: the approval (change 0), then each change of terms,
-- cancellation or new documents, with who asked and the reasons sent to the agency.
CREATE TABLE send_changes (
    request_id    TEXT NOT NULL REFERENCES referral_requests (request_id),
    change_no     BIGINT NOT NULL,
    kind          TEXT NOT NULL,            -- approval | change | cancel | documents
    requested_by  TEXT NOT NULL,
    requested_at  TEXT NOT NULL,
    reasons_json  TEXT NOT NULL,
    comment       TEXT,
    PRIMARY KEY (request_id, change_no)
);
