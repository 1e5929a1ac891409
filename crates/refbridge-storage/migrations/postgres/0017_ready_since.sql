-- The age of the longest-waiting send (`/metrics`, `/readyz`) from one index entry, not a
-- look at the steps of every waiting send (issue 15): when each send last became ready
-- (approved, changed or resumed), set by the statements that make it ready.
ALTER TABLE send_jobs ADD COLUMN ready_since TEXT;

-- The sends waiting now: since their oldest unfinished step last moved, the figure as it
-- was computed until now.
UPDATE send_jobs SET ready_since = COALESCE(
    (SELECT MIN(s.updated_at) FROM send_steps s
     WHERE s.request_id = send_jobs.request_id AND s.state IN ('pending', 'in_flight', 'unknown')),
    updated_at)
WHERE state = 'ready';

CREATE INDEX send_jobs_ready_since ON send_jobs (ready_since) WHERE state = 'ready';

-- Read by nothing now (it served the look at each waiting send's steps).
DROP INDEX send_steps_unfinished;
