-- A referral's status history stored in the order it is read (issue 15): one b-tree, keyed
-- by (request_id, at, id), instead of a rowid table, the index of its text `id` and
-- `status_history_by_request`. Each status change (approval, the send's start, its end) wrote
-- a page or two of each of the three; the WAL of `bench send` showed about 14 of an
-- approval's 86 pages there. Reads are unchanged: a referral's history by `request_id` in
-- `at, id` order is the key's own order. The columns are the same, so an older process
-- writes and reads it as before.
CREATE TABLE status_history_keyed (
    id          TEXT NOT NULL,
    request_id  TEXT NOT NULL REFERENCES referral_requests (request_id),
    status      TEXT NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT,
    PRIMARY KEY (request_id, at, id)
) WITHOUT ROWID;
INSERT INTO status_history_keyed (id, request_id, status, at, actor, reason)
    SELECT id, request_id, status, at, actor, reason FROM status_history;
DROP TABLE status_history;
ALTER TABLE status_history_keyed RENAME TO status_history;
