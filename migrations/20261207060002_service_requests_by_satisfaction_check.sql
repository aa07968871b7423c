-- no-transaction
-- GetServiceMetrics counts the satisfaction of service requests checked in
-- its period: without an index on the check time each call read every
-- service request of the bank. This one reads the period's checked ones.
CREATE INDEX CONCURRENTLY IF NOT EXISTS service_requests_satisfaction_checked
    ON service_requests (satisfaction_check_time) WHERE satisfaction IS NOT NULL;
