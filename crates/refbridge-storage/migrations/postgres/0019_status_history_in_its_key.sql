-- A referral's status history under one index, the key it is read by (issue 15): the primary
-- key becomes (request_id, at, id), which also serves what `status_history_by_request`
-- served, so a status change writes the heap and one index instead of two. The same key as
-- SQLite's (where the table itself is now stored in that order). The columns are the same.
ALTER TABLE status_history DROP CONSTRAINT status_history_pkey;
ALTER TABLE status_history ADD PRIMARY KEY (request_id, at, id);
DROP INDEX status_history_by_request;
