-- WatchInteractions about one customer, resumed by token: the catch-up read
-- interactions_stream from the token on and dropped every other customer's
-- rows (everything the bank logged since the token). This index reads only
-- the customer's. Not CONCURRENTLY, for the reason in 20261207040006.
CREATE INDEX IF NOT EXISTS interactions_customer_stream
    ON interactions (customer_id, txid, seq);
