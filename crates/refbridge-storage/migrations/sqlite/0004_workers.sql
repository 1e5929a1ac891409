-- Several worker processes over one database (PostgreSQL; the same tables serve SQLite's
-- single process).

-- The ACCloud rate budget every process shares (one row per budget, `accloud`). Calls are
-- spaced: a caller reserves the slot `next_slot_us` (microseconds since the Unix epoch) and
-- moves it on by one interval (1 s / requests per second), so no one-second window holds more
-- than the budget. `blocked_until_us` is the latest `Retry-After` seen by any process: no call
-- starts before it.
CREATE TABLE rate_budget (
    name              TEXT PRIMARY KEY,
    next_slot_us      BIGINT NOT NULL,
    blocked_until_us  BIGINT NOT NULL
);

-- The claim query reads only due, ready jobs: sent and paused jobs stay out of its index, so
-- finished work does not slow the hot path however much of it piles up.
CREATE INDEX send_jobs_ready ON send_jobs (run_at, request_id) WHERE state = 'ready';
