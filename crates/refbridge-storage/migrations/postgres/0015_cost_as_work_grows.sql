-- What the hot reads cost must not grow with the finished work piled up behind them (issue 15,
-- "cost as the work grows"; measured by `refbridge bench scale`, a million referrals).

-- The queue figures (`/metrics`, `/readyz`) count the steps whose outcome is unknown or whose
-- call may be under way: a handful at any time, among every step ever sent. Only those are in
-- this index, so the count reads them alone instead of every step.
CREATE INDEX send_steps_unsettled ON send_steps (state, updated_at)
    WHERE state IN ('unknown', 'in_flight');

-- The review list filtered by status or agency pages newest first by (received_at,
-- request_id): with the id in the index, a page ends where the index does, with no sort of
-- every referral of that status or agency received at the same time. The old indexes are
-- prefixes of these (dropping them breaks no query of an older process; it only loses a
-- use the new ones serve).
CREATE INDEX referral_requests_status_page ON referral_requests (status, received_at, request_id);
CREATE INDEX referral_requests_agency_page ON referral_requests (agency_org_id, received_at, request_id);
DROP INDEX referral_requests_by_status;
DROP INDEX referral_requests_by_agency;
