-- Which patient plan each approved authorization belongs to: while its referral's first send
-- is under way the authorization is "in progress", and archiving the plan withdraws it.
CREATE TABLE authorization_plans (
    request_id  TEXT NOT NULL REFERENCES referral_requests (request_id),
    auth_index  BIGINT NOT NULL,
    plan_id     TEXT NOT NULL,
    PRIMARY KEY (request_id, auth_index)
);
CREATE INDEX authorization_plans_by_plan ON authorization_plans (plan_id);
