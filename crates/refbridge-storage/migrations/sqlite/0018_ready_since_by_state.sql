-- The longest-waiting send from one entry of its index whatever the planner knows (issue 15).
-- On `(ready_since)` alone, SQLite without statistics (the service never gathers them)
-- answered `MIN(ready_since) ... WHERE state = 'ready'` from `send_jobs_state_times`, the
-- index that matches `state`, and read every ready job's row for its time: 0.85 ms of
-- `/readyz` at a million referrals, where one entry is 0.02 ms. With `state` first the same
-- index matches the `WHERE` and holds the minimum at its start.
DROP INDEX send_jobs_ready_since;
CREATE INDEX send_jobs_ready_since ON send_jobs (state, ready_since) WHERE state = 'ready';
