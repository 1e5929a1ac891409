-- The queue figures (`/metrics`, `/readyz`) over the sends waiting for a worker, at a million
-- referrals (issue 15; measured by `refbridge bench scale`).

-- The ready and paused jobs' counts and times from the index alone, no row read. It replaces
-- send_jobs_due, its prefix, which the claim reads as well.
CREATE INDEX send_jobs_state_times ON send_jobs (state, run_at, lease_until);
DROP INDEX send_jobs_due;

-- Each ready send's unfinished steps (the age of the oldest): only the unfinished steps are
-- in this index, those of ready and paused sends, never the done steps of every finished one.
CREATE INDEX send_steps_unfinished ON send_steps (request_id, updated_at)
    WHERE state IN ('pending', 'in_flight', 'unknown');
