-- What the agency last showed of a sent referral (assigned, processed, cancelled), as read
-- by the workers' periodic check, and when it was read. A send run that finishes resets the
-- status (its own steps read it) and restarts the clock.
ALTER TABLE send_jobs ADD COLUMN agency_status TEXT;
ALTER TABLE send_jobs ADD COLUMN agency_checked_at TEXT;
