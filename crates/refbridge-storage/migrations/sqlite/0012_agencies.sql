-- The console's inbox at any size. The agencies that have sent referrals, each with the name it last sent (kept at intake), for
-- the console's agency filter: reading it costs the number of agencies, not of referrals.
CREATE TABLE agencies (
    org_id       TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);

INSERT INTO agencies (org_id, name, last_seen_at)
SELECT r.agency_org_id, r.agency_name, r.received_at
FROM referral_requests r
WHERE NOT EXISTS (
    SELECT 1 FROM referral_requests n
    WHERE n.agency_org_id = r.agency_org_id
      AND (n.received_at > r.received_at
           OR (n.received_at = r.received_at AND n.request_id > r.request_id))
);

-- The inbox's search: a patient's referrals, and a plan by its member number.
CREATE INDEX referral_requests_by_patient ON referral_requests (patient_id, received_at);
CREATE INDEX patient_plans_by_member_number ON patient_plans (member_number);
