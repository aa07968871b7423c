-- Interactions voided or corrected, and customers merged (issue 13, item 3).
--
-- An interaction is never rewritten: VoidInteraction and CorrectInteraction
-- mark the original hidden (void_time set) with who did it, when and why;
-- a correction is a new interaction that names the original it corrects, and
-- the original names its correction. Every ordinary read (timeline, lists,
-- complaints, 360, segments) skips rows with a void_time.
ALTER TABLE interactions
    ADD COLUMN void_time     timestamptz,
    ADD COLUMN void_reason   text NOT NULL DEFAULT '',
    ADD COLUMN voided_by     text NOT NULL DEFAULT '',
    -- The id (same customer) of the correction that superseded this row.
    ADD COLUMN superseded_by text COLLATE "C" NOT NULL DEFAULT '',
    -- The id (same customer) of the interaction this row corrects.
    ADD COLUMN corrects      text COLLATE "C" NOT NULL DEFAULT '',
    -- What the feed last delivered this row as: a row re-stamped with a new
    -- (txid, seq) is streamed again, as VOIDED, SUPERSEDED or MOVED (merge).
    ADD COLUMN last_change   text NOT NULL DEFAULT 'LOGGED'
        CHECK (last_change IN ('LOGGED', 'VOIDED', 'SUPERSEDED', 'MOVED')),
    -- The name the row had before a merge moved it to the survivor.
    ADD COLUMN previous_name text NOT NULL DEFAULT '';

-- The seq column is an identity "GENERATED ALWAYS"; a re-stamp sets it with
-- DEFAULT, which draws the next value.

-- A merged duplicate: a tombstone (delete_time set, PII cleared) that names
-- the survivor its data was folded into; reads of its name answer with the
-- survivor.
ALTER TABLE customers
    ADD COLUMN merged_into text COLLATE "C" REFERENCES customers (id),
    ADD COLUMN merged_by   text NOT NULL DEFAULT '';
CREATE INDEX customers_merged_into ON customers (merged_into) WHERE merged_into IS NOT NULL;
