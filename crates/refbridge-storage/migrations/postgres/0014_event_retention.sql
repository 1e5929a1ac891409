-- Retention of the event feed. One row: the highest position a prune removed (0: none yet),
-- when, and the retention in days that removed it. The sequencer numbers after it even when
-- every event is gone, and a feed reader whose cursor is before it is told that it would miss
-- events, never left to skip them.
CREATE TABLE event_retention (
    id              BIGINT PRIMARY KEY,
    pruned_through  BIGINT NOT NULL,
    pruned_at       TEXT,
    kept_days       BIGINT
);
INSERT INTO event_retention (id, pruned_through) VALUES (1, 0);

-- A prune looks deliveries up by event (the key starts with the endpoint), and attempts by age.
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);
