-- A small bank with the skew real ones have, inserted directly (the plan
-- checks in plans.rs are about the planner, not the API): half the customers
-- in one branch, one customer with a history of 10,000 interactions, most
-- follow-ups and service requests long done, one busy author of knowledge.
INSERT INTO customers (id, display_name, kind, home_branch, relationship_manager, tier, tags,
                       update_time, delete_time)
SELECT 'c-' || g, 'Customer ' || g,
       CASE WHEN g % 10 = 0 THEN 'CORPORATE' ELSE 'INDIVIDUAL' END,
       CASE WHEN g <= 3000 THEN 'B01' ELSE 'B' || lpad((2 + g % 49)::text, 2, '0') END,
       'rm-' || g % 200,
       CASE WHEN g % 50 = 0 THEN 'VIP' WHEN g % 10 = 0 THEN 'MAJOR' ELSE 'ORDINARY' END,
       CASE WHEN g % 100 = 0 THEN ARRAY['payroll', 'vip'] WHEN g % 3 = 0 THEN ARRAY['payroll']
            ELSE '{}'::text[] END,
       now() - g * interval '1 minute',
       CASE WHEN g % 500 = 0 THEN now() END
FROM generate_series(1, 6000) g;

-- c-1 has the long history; everyone else three interactions. A complaint
-- every 20th, a rated answer every 7th. Four rows a transaction, as the feed
-- sees them, newest last.
INSERT INTO interactions (customer_id, id, channel, kind, occur_time, update_time, txid,
                          satisfaction, complaint_state, complaint_severity, complaint_due_time)
SELECT customer_id, id, channel, kind, occur_time, occur_time,
       pg_current_xact_id()::text::bigint - 1 - n / 4,
       CASE WHEN n % 7 = 0 THEN 1 + n % 5 END,
       CASE WHEN kind = 'COMPLAINT' THEN (ARRAY['OPEN', 'IN_PROGRESS', 'RESOLVED', 'CLOSED',
                                                'CLOSED'])[1 + n / 20 % 5] END,
       CASE WHEN kind = 'COMPLAINT' THEN (ARRAY['LOW', 'MEDIUM', 'HIGH'])[1 + n % 3] END,
       CASE WHEN kind = 'COMPLAINT' THEN occur_time + interval '5 days' END
FROM (
    SELECT customer_id, 'i-' || n AS id, n,
           CASE WHEN n % 100 = 0 THEN 'PHONE' WHEN n % 3 = 0 THEN 'MOBILE_APP' ELSE 'BRANCH' END
               AS channel,
           CASE WHEN n % 20 = 0 THEN 'COMPLAINT' ELSE 'INQUIRY' END AS kind,
           now() - n * interval '3 minutes' AS occur_time
    FROM (SELECT 'c-1' AS customer_id, g AS n FROM generate_series(1, 10000) g
          UNION ALL
          SELECT 'c-' || (2 + g / 3), 10000 + g FROM generate_series(0, 17996) g) s
) i;

INSERT INTO follow_ups (customer_id, id, assignee, branch, due_time, state, created_by)
SELECT 'c-' || (1 + g % 6000), 'f-' || g, 'rm-' || g % 200,
       CASE WHEN g % 2 = 0 THEN 'B01' ELSE 'B' || lpad((2 + g % 49)::text, 2, '0') END,
       now() + (g - 7000) * interval '1 hour',
       CASE WHEN g < 7000 THEN 'COMPLETED' WHEN g % 10 = 0 THEN 'CANCELLED' ELSE 'SCHEDULED' END,
       'rm-' || g % 200
FROM generate_series(1, 8000) g;

-- Their unique keys (written beside every interaction by the service).
INSERT INTO interaction_keys (customer_id, id) SELECT customer_id, id FROM interactions;

-- A service request on every third of the short histories' interactions.
INSERT INTO service_requests (customer_id, interaction_id, state, priority, key_customer,
                              assignee, receive_time, response_due_time, resolution_due_time)
SELECT i.customer_id, i.id,
       CASE WHEN n % 10 = 0 THEN 'IN_PROGRESS' WHEN n % 10 = 1 THEN 'RECEIVED' ELSE 'RESOLVED' END,
       (ARRAY['LOW', 'MEDIUM', 'HIGH', 'URGENT'])[1 + n % 4], false,
       'rm-' || n % 200, i.occur_time, i.occur_time + interval '1 day',
       i.occur_time + interval '3 days'
FROM interactions i, LATERAL (SELECT substr(i.id, 3)::int AS n) x
WHERE i.customer_id <> 'c-1' AND n % 3 = 0;

-- Knowledge: a third about a customer, one author writing a fifth of it.
INSERT INTO knowledge_items (id, title, nature, kind, subjects, carrier_type, carrier_id, author,
                             scope_team, scope_branch, visibility, sensitivity, tags,
                             verification_state, next_review_time, update_time,
                             search_document)
SELECT 'k-' || g, 'Note ' || g, CASE WHEN g % 4 = 0 THEN 'EXPLICIT' ELSE 'TACIT' END,
       CASE WHEN g % 5 = 0 THEN 'PREFERENCE' ELSE 'INSIGHT' END,
       CASE WHEN g % 3 = 0 THEN ARRAY['c-' || (1 + g % 6000)] ELSE '{}'::text[] END,
       CASE WHEN g % 3 = 0 THEN 'CUSTOMER' ELSE 'EMPLOYEE' END,
       CASE WHEN g % 3 = 0 THEN 'c-' || (1 + g % 6000) ELSE 'rm-' || g % 200 END,
       CASE WHEN g % 5 = 0 THEN 'rm-busy' ELSE 'rm-' || g % 200 END,
       'team-' || g % 20, CASE WHEN g % 2 = 0 THEN 'B01' ELSE 'B02' END,
       (ARRAY['BANK', 'BRANCH', 'TEAM', 'PRIVATE'])[1 + g % 4], 'INTERNAL',
       CASE WHEN g % 11 = 0 THEN ARRAY['fx'] ELSE '{}'::text[] END,
       CASE WHEN g % 6 = 0 THEN 'VERIFIED' ELSE 'UNVERIFIED' END,
       CASE WHEN g % 6 = 0 THEN now() + (g % 100 - 50) * interval '1 day' END,
       now() - g * interval '1 minute',
       to_tsvector('english', CASE WHEN g % 50 = 0 THEN 'mortgage refinance' ELSE 'note' END)
FROM generate_series(1, 6000) g;
INSERT INTO knowledge_events (item_id, change, txid)
SELECT id, 'CREATED', pg_current_xact_id()::text::bigint - 1 - substr(id, 3)::int / 3
FROM knowledge_items;

INSERT INTO campaigns (id, display_name, products, budget_currency, budget_units, budget_nanos,
                       start_time, end_time, target_branch, control_group_percent,
                       conversion_window_days, seed, state, created_by, create_time)
SELECT 'cmp-' || g, 'Campaign ' || g, ARRAY['card'], 'CNY', 1000, 0, now(), now() + interval '30 days',
       CASE WHEN g % 2 = 0 THEN 'B01' WHEN g % 7 = 0 THEN '' ELSE 'B' || lpad((2 + g % 49)::text, 2, '0') END,
       10, 30, g, 'PLANNED', 'rm-1', now() - g * interval '1 hour'
FROM generate_series(1, 3000) g;

-- Campaign cmp-2 (B01) contacted ten customers, c-1 with the long history
-- among them, one held back; a hundred other campaigns share 6,000 contacts.
-- (With many more contacts, hashing all 6,000 customers is the cheaper plan
-- at this size; at a bank's size it is not.)
INSERT INTO campaign_contacts (campaign_id, customer_id, in_control, tier, branch, contact_time,
                               interaction_id)
SELECT 'cmp-2', 'c-' || g, g % 10 = 0, 'ORDINARY', 'B01', now() - interval '1 day',
       CASE WHEN g % 10 <> 0 THEN 'p-' || g END
FROM generate_series(1, 10) g
UNION ALL
SELECT 'cmp-' || (3 + g % 100), 'c-' || g, false, 'ORDINARY', 'B01', now() - interval '2 days',
       'q-' || g
FROM generate_series(1, 6000) g;

INSERT INTO operations (id, kind, created_by, request, lock_key, runner_pid, create_time,
                        end_time, done, response)
SELECT md5(g::text)::uuid, 'import', CASE WHEN g % 2 = 0 THEN 'ops-busy' ELSE 'rm-' || g % 200 END,
       '', g, 0, now() - g * interval '1 minute',
       CASE WHEN g > 20 THEN now() END, g > 20, CASE WHEN g > 20 THEN ''::bytea END
FROM generate_series(1, 6000) g;

INSERT INTO access_events (sequence, event_time, principal, roles, calling_system, on_behalf_of,
                           method, action, outcome, customers, purpose, trace_id, hash)
SELECT g, now() - (20000 - g) * interval '1 minute',
       CASE WHEN g % 2 = 0 THEN 'svc-batch' ELSE 'rm-' || g % 200 END, ARRAY['RM'], 'crm', '',
       CASE WHEN g % 3 = 0 THEN 'ListInteractions' ELSE 'GetCustomer' END,
       CASE WHEN g % 10 = 0 THEN 'WRITE' ELSE 'READ' END, 'OK',
       ARRAY['p-' || g % 6000], '', 't-' || g, sha256(g::text::bytea)
FROM generate_series(1, 20000) g;

-- Two segmentation runs of every customer, a day apart: the worklist reads
-- the later one. A third of the customers carry churn risk; value falls
-- with the customer number, so B01 (the first half) holds the most valuable.
-- All but every twentieth have RFM scores and a relationship type.
INSERT INTO segment_runs (as_of, window_months, window_start, reporting_currency, vip_share,
                          major_share, ordinary_share, model, customer_count, tier_changed_count)
SELECT t, 12, t - interval '12 months', 'CNY', 0.01, 0.04, 0.15, '{}', 6000, 0
FROM (VALUES (date_trunc('day', now()) - interval '1 day'), (date_trunc('day', now()))) r(t);
INSERT INTO customer_segments (as_of, customer_id, transaction_count, monetary,
                               lifetime_transactions, product_count, contact_months, linked,
                               tier, value_rank, recent_count, previous_count, open_complaints,
                               recent_complaints, csat_sum, csat_count, promoters, detractors,
                               nps_count, withdrawn_consents, churn_score, churn_signals,
                               recency_score, frequency_score, monetary_score, relationship)
SELECT r.as_of, 'c-' || g, g % 40, 1000000 / g, g % 40, 1 + g % 4, 12, false,
       CASE WHEN g <= 60 THEN 'VIP' WHEN g <= 300 THEN 'MAJOR' WHEN g <= 1200 THEN 'ORDINARY'
            ELSE 'SMALL' END,
       g, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
       CASE WHEN g % 3 = 0 THEN 10 + g % 90 ELSE 0 END,
       CASE WHEN g % 3 = 0 THEN ARRAY['INACTIVE'] ELSE '{}'::text[] END,
       CASE WHEN g % 20 <> 0 THEN 1 + g % 5 END, CASE WHEN g % 20 <> 0 THEN 1 + g / 7 % 5 END,
       CASE WHEN g % 20 <> 0 THEN 1 + g / 11 % 5 END,
       CASE WHEN g % 20 <> 0 THEN (ARRAY['ONE_TIME', 'TRANSACTIONAL', 'RELATIONAL',
                                        'PARTNER'])[1 + g % 4] END
FROM segment_runs r, generate_series(1, 6000) g;

ANALYZE;
