-- What the agency last showed of a sent referral (assigned, processed, cancelled), as read
-- by the workers' periodic check, and when it was read. A send run that finishes resets the
-- status (its own steps read it) and restarts the clock, so a sent job always has a time.
ALTER TABLE send_jobs ADD COLUMN agency_status TEXT;
ALTER TABLE send_jobs ADD COLUMN agency_checked_at TEXT;
UPDATE send_jobs SET agency_checked_at = updated_at WHERE state = 'done';
-- The checks' scan: sent jobs by the time of their last read.
CREATE INDEX send_jobs_agency_due ON send_jobs (agency_checked_at) WHERE state = 'done';
