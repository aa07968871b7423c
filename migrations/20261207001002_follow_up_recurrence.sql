-- Follow-ups (回访) may recur: every N days or every N months. Completing a
-- recurring follow-up schedules the next one; cancelling one ends the
-- series. (0, 0): a one-off.
ALTER TABLE follow_ups
    ADD COLUMN recurrence_days   integer NOT NULL DEFAULT 0
        CHECK (recurrence_days BETWEEN 0 AND 366),
    ADD COLUMN recurrence_months integer NOT NULL DEFAULT 0
        CHECK (recurrence_months BETWEEN 0 AND 12),
    ADD CONSTRAINT follow_ups_one_recurrence
        CHECK (recurrence_days = 0 OR recurrence_months = 0);
