-- A customer's external ids, consents and links, kept on the customer row as
-- the JSON documents every read of a customer returns.
--
-- Every read (GetCustomer, LookupCustomer, ListCustomers, SearchCustomers,
-- the re-read after each write) used to build these with three correlated
-- subqueries per customer: four index probes, three aggregates and a sort
-- each time, which made Postgres's work per GetCustomer about twice that of a
-- primary-key SELECT. They change rarely and are read on every call, so they
-- are now kept here by statement triggers on the three tables, in the
-- transaction that changes them; the tables stay the system of record
-- (constraints, uniqueness, lookups by external id).
--
-- The documents are exactly what the subqueries built (same expressions, same
-- order); ck_customer_documents_stale() lists any customer whose stored
-- documents differ from the tables, and the tests check that none does.

ALTER TABLE customers
    ADD COLUMN external_ids_doc jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN consents_doc     jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN links_doc        jsonb NOT NULL DEFAULT '[]';

CREATE FUNCTION ck_external_ids_doc(customer text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(jsonb_build_object('system', e.system, 'value', e.value)
                              ORDER BY e.system, e.value), '[]')
      FROM customer_external_ids e
     WHERE e.customer_id = customer COLLATE "C"
$$;

CREATE FUNCTION ck_consents_doc(customer text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(jsonb_build_object('purpose', k.purpose, 'granted', k.granted,
                                                 'update_time', k.update_time)
                              ORDER BY k.purpose), '[]')
      FROM customer_consents k
     WHERE k.customer_id = customer COLLATE "C"
$$;

-- Both directions: a link reads from either customer, the one it was made
-- from (inverse false) and the one it points at (inverse true unless the
-- relationship is symmetric).
CREATE FUNCTION ck_links_doc(customer text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(l ORDER BY l.create_time, l.customer), '[]')
      FROM (SELECT linked_customer_id AS customer, relationship, false AS inverse, create_time
              FROM customer_links WHERE customer_id = customer COLLATE "C"
            UNION ALL
            SELECT customer_id, relationship,
                   relationship NOT IN ('HOUSEHOLD', 'SPOUSE'), create_time
              FROM customer_links WHERE linked_customer_id = customer COLLATE "C") l
$$;

-- The trigger, one function for the three tables: run once per statement
-- with the rows it changed (transition tables), it rewrites the documents of
-- every customer those rows name (both ends of a link; the columns are read
-- through to_jsonb so that one function serves every table), so a statement
-- touching several rows of one customer rewrites that customer's row once.
-- Link, unlink and merge lock both customers before they write; erasing two
-- linked customers at the same moment can deadlock on their link, and
-- Postgres then aborts one (answered ABORTED, which callers retry).
CREATE FUNCTION ck_refresh_customer_documents() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed jsonb[] := '{}';
    ids text[];
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        changed := changed || ARRAY(SELECT to_jsonb(r) FROM new_rows r);
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        changed := changed || ARRAY(SELECT to_jsonb(r) FROM old_rows r);
    END IF;
    ids := ARRAY(SELECT DISTINCT r ->> k
                   FROM unnest(changed) r, unnest(ARRAY['customer_id', 'linked_customer_id']) k
                  WHERE r ->> k IS NOT NULL);
    UPDATE customers c
       SET external_ids_doc = ck_external_ids_doc(c.id),
           consents_doc = ck_consents_doc(c.id),
           links_doc = ck_links_doc(c.id)
     WHERE c.id = ANY (ids);
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customer_external_ids', 'customer_consents', 'customer_links'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I
                            REFERENCING NEW TABLE AS new_rows
                            FOR EACH STATEMENT EXECUTE FUNCTION ck_refresh_customer_documents()',
                       t || '_documents_insert', t);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I
                            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                            FOR EACH STATEMENT EXECUTE FUNCTION ck_refresh_customer_documents()',
                       t || '_documents_update', t);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I
                            REFERENCING OLD TABLE AS old_rows
                            FOR EACH STATEMENT EXECUTE FUNCTION ck_refresh_customer_documents()',
                       t || '_documents_delete', t);
    END LOOP;
END
$$;

-- Customers whose stored documents differ from the three tables: none, as
-- long as the triggers above hold. For tests and for an operator's check.
CREATE FUNCTION ck_customer_documents_stale() RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT c.id FROM customers c
     WHERE c.external_ids_doc IS DISTINCT FROM ck_external_ids_doc(c.id)
        OR c.consents_doc IS DISTINCT FROM ck_consents_doc(c.id)
        OR c.links_doc IS DISTINCT FROM ck_links_doc(c.id)
$$;

-- The documents of the customers there are.
UPDATE customers c
   SET external_ids_doc = ck_external_ids_doc(c.id),
       consents_doc = ck_consents_doc(c.id),
       links_doc = ck_links_doc(c.id)
 WHERE EXISTS (SELECT 1 FROM customer_external_ids e WHERE e.customer_id = c.id)
    OR EXISTS (SELECT 1 FROM customer_consents k WHERE k.customer_id = c.id)
    OR EXISTS (SELECT 1 FROM customer_links l WHERE l.customer_id = c.id OR l.linked_customer_id = c.id);
