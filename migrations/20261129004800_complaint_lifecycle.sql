-- Complaints as a life cycle of their own: what they are about (category,
-- product), why they happened (root cause, erased with the customer), who
-- handles them, and how often they were reopened (ResolveComplaint,
-- CloseComplaint, ReopenComplaint; GetComplaintSummary reports on them).
ALTER TABLE interactions
    ADD COLUMN complaint_category      text,
    ADD COLUMN complaint_product       text NOT NULL DEFAULT '',
    ADD COLUMN complaint_root_cause    text NOT NULL DEFAULT '',
    ADD COLUMN complaint_assignee      text NOT NULL DEFAULT '',
    ADD COLUMN complaint_reopen_count  integer NOT NULL DEFAULT 0
        CHECK (complaint_reopen_count >= 0),
    ADD COLUMN complaint_reopen_reason text NOT NULL DEFAULT '';

-- GetComplaintSummary reads the complaints received in a time range.
CREATE INDEX interactions_complaints_received ON interactions (occur_time)
    WHERE complaint_state IS NOT NULL;
