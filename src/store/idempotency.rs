//! Idempotency keys (DESIGN §5, AIP-155): the key is claimed in the
//! transaction of the write it guards; a retry waits on the key's row lock and
//! then replays. A key stores only the names of the resources the write
//! produced, never the response: a replay re-reads them for the caller as it
//! is now, so it passes today's authorization and returns nothing that was
//! erased since. Keys expire after a retention and are purged.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

use tracing::Instrument;

use super::{Db, statement};
use crate::error::Error;

/// Identifies one logical request of one caller.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub principal: String,
    pub method: &'static str,
    pub request_id: Uuid,
    /// Hash of the request without its `request_id`: the same key with another
    /// payload is refused.
    pub fingerprint: Vec<u8>,
}

/// What claiming a key found.
pub enum Claim {
    New,
    /// The names the original write stored.
    Replay(Vec<String>),
    /// The key was used before for a different request.
    Reused,
}

/// Claims `keys` in one statement, in the order given (callers that claim
/// several keys sort them, so that two transactions claiming the same keys
/// wait for each other rather than deadlock); no key may appear twice.
/// Keys that were not new are then read in one more statement.
async fn claim(
    conn: &mut PgConnection,
    keys: &[&IdempotencyKey],
    retention: Duration,
) -> Result<Vec<Claim>, Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (principals, methods, request_ids) = columns(keys.iter().copied());
    let fingerprints: Vec<&[u8]> = keys.iter().map(|k| k.fingerprint.as_slice()).collect();
    // A concurrent claim of the same key blocks here until the first
    // transaction ends; then it either conflicts (the first committed) or
    // inserts (the first rolled back). A key past its retention counts as
    // unused, whether or not the purge has removed it yet.
    let claimed: Vec<i64> = sqlx::query_scalar(
        "WITH wanted AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::bytea[])
                      WITH ORDINALITY AS w(principal, method, request_id, fingerprint, n)
         ), claimed AS (
             INSERT INTO idempotency_keys AS k (principal, method, request_id, fingerprint)
             SELECT principal, method, request_id, fingerprint FROM wanted ORDER BY n
             ON CONFLICT (principal, method, request_id) DO UPDATE
                SET fingerprint = EXCLUDED.fingerprint, resources = NULL, create_time = now()
              WHERE k.create_time < now() - make_interval(secs => $5)
             RETURNING k.principal, k.method, k.request_id
         )
         SELECT w.n FROM wanted w JOIN claimed USING (principal, method, request_id)",
    )
    .bind(&principals)
    .bind(&methods)
    .bind(&request_ids)
    .bind(&fingerprints)
    .bind(retention.as_secs_f64())
    .fetch_all(&mut *conn)
    .instrument(statement("INSERT", "idempotency_keys"))
    .await?;
    let mut claims: Vec<Option<Claim>> = keys.iter().map(|_| None).collect();
    for n in claimed {
        claims[n as usize - 1] = Some(Claim::New);
    }
    if claims.iter().any(Option::is_none) {
        // A new statement: it sees what the claim waited for.
        let used: Vec<(i64, Vec<u8>, Option<Vec<String>>)> = sqlx::query_as(
            "SELECT w.n, k.fingerprint, k.resources
               FROM unnest($1::text[], $2::text[], $3::uuid[])
                    WITH ORDINALITY AS w(principal, method, request_id, n)
               JOIN idempotency_keys k USING (principal, method, request_id)",
        )
        .bind(&principals)
        .bind(&methods)
        .bind(&request_ids)
        .fetch_all(&mut *conn)
        .instrument(statement("SELECT", "idempotency_keys"))
        .await?;
        for (n, fingerprint, resources) in used {
            let i = n as usize - 1;
            if claims[i].is_some() {
                continue;
            }
            claims[i] = Some(if fingerprint != keys[i].fingerprint {
                Claim::Reused
            } else {
                Claim::Replay(resources.ok_or_else(|| {
                    Error::Internal(anyhow::anyhow!(
                        "idempotency key committed without its resources"
                    ))
                })?)
            });
        }
    }
    claims
        .into_iter()
        .map(|claim| {
            claim.ok_or_else(|| Error::Internal(anyhow::anyhow!("an idempotency key went missing")))
        })
        .collect()
}

/// Stores the resource `names` a write produced under its claimed `key`, in
/// the write's transaction.
pub async fn record(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    names: &[String],
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET resources = $4
         WHERE principal = $1 AND method = $2 AND request_id = $3",
    )
    .bind(&key.principal)
    .bind(key.method)
    .bind(key.request_id)
    .bind(names)
    .execute(conn)
    .instrument(statement("UPDATE", "idempotency_keys"))
    .await?;
    Ok(())
}

/// `record` for many keys of one transaction, one name each, in one
/// statement.
pub async fn record_each(
    conn: &mut PgConnection,
    written: &[(&IdempotencyKey, String)],
) -> Result<(), Error> {
    if written.is_empty() {
        return Ok(());
    }
    let (principals, methods, request_ids) = columns(written.iter().map(|(k, _)| *k));
    let names: Vec<&str> = written.iter().map(|(_, n)| n.as_str()).collect();
    sqlx::query(
        "UPDATE idempotency_keys k SET resources = ARRAY[w.name]
           FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[])
                AS w(principal, method, request_id, name)
          WHERE (k.principal, k.method, k.request_id) = (w.principal, w.method, w.request_id)",
    )
    .bind(&principals)
    .bind(&methods)
    .bind(&request_ids)
    .bind(&names)
    .execute(conn)
    .instrument(statement("UPDATE", "idempotency_keys"))
    .await?;
    Ok(())
}

/// Gives back keys claimed in this transaction for writes that failed
/// while the transaction goes on to commit others (one statement): a retry
/// then writes anew, as it does after a rollback.
pub async fn release_each(conn: &mut PgConnection, keys: &[&IdempotencyKey]) -> Result<(), Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let (principals, methods, request_ids) = columns(keys.iter().copied());
    sqlx::query(
        "DELETE FROM idempotency_keys k
          USING unnest($1::text[], $2::text[], $3::uuid[]) AS w(principal, method, request_id)
          WHERE (k.principal, k.method, k.request_id) = (w.principal, w.method, w.request_id)
            AND k.resources IS NULL",
    )
    .bind(&principals)
    .bind(&methods)
    .bind(&request_ids)
    .execute(conn)
    .instrument(statement("DELETE", "idempotency_keys"))
    .await?;
    Ok(())
}

/// The key columns of `keys`, as arrays to bind.
fn columns<'a>(
    keys: impl Iterator<Item = &'a IdempotencyKey>,
) -> (Vec<&'a str>, Vec<&'static str>, Vec<Uuid>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for key in keys {
        out.0.push(key.principal.as_str());
        out.1.push(key.method);
        out.2.push(key.request_id);
    }
    out
}

impl Db {
    /// Runs `write` in one transaction. With a key, the key is stored in that
    /// same transaction with the resource `names` of the result; a retry runs
    /// `replay` on those names instead of a second write. `replay` must check
    /// the caller's access as `write` does and read the resources as they
    /// are now (AIP-155 allows the current state).
    pub async fn write<T>(
        &self,
        key: Option<&IdempotencyKey>,
        names: impl Fn(&T) -> Vec<String>,
        replay: impl AsyncFnOnce(&mut PgConnection, Vec<String>) -> Result<T, Error>,
        write: impl AsyncFnOnce(&mut PgConnection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut tx = self.begin().await?;
        let claimed = match key {
            Some(key) => claim(&mut tx, &[key], self.idempotency_retention)
                .await?
                .pop()
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("a claim went unanswered")))?,
            None => Claim::New,
        };
        if let Claim::Reused = claimed {
            return Err(Error::RequestIdReused);
        }
        if let Claim::Replay(stored) = claimed {
            // A write stores at least one name in its own transaction; replay
            // closures rely on it.
            if stored.is_empty() {
                return Err(Error::Internal(anyhow::anyhow!(
                    "idempotency key without resource names"
                )));
            }
            let replayed = replay(&mut tx, stored).await;
            tx.rollback().await?;
            // The first try may have been answered by another replica.
            self.note_write().await;
            return replayed;
        }
        let response = write(&mut tx).await?;
        if let Some(key) = key {
            record(&mut tx, key, &names(&response)).await?;
        }
        tx.commit().await?;
        self.note_write().await;
        Ok(response)
    }

    /// Claims `keys` in the caller's transaction (a concurrent claim of one
    /// waits for that transaction to end): what `write` does first, for a
    /// caller that writes for several keys in one transaction (the group
    /// commit of LogInteraction), in one statement. `keys` must be distinct
    /// and sorted. Errors are the database's only.
    pub async fn claim_keys(
        &self,
        conn: &mut PgConnection,
        keys: &[&IdempotencyKey],
    ) -> Result<Vec<Claim>, Error> {
        claim(conn, keys, self.idempotency_retention).await
    }

    /// The fingerprint and resource names committed under `key` (its own
    /// fingerprint is not compared), if it is within its retention: for a
    /// streamed request, whose fingerprint is known only at its end, to
    /// tell a retry of a finished request before writing anything. The
    /// write itself still claims the key with `write`.
    pub async fn recorded(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<(Vec<u8>, Vec<String>)>, Error> {
        let mut conn = self.acquire().await?;
        Ok(sqlx::query_as(
            "SELECT fingerprint, resources FROM idempotency_keys
             WHERE principal = $1 AND method = $2 AND request_id = $3
               AND resources IS NOT NULL
               AND create_time >= now() - make_interval(secs => $4)",
        )
        .bind(&key.principal)
        .bind(key.method)
        .bind(key.request_id)
        .bind(self.idempotency_retention.as_secs_f64())
        .fetch_optional(&mut *conn)
        .instrument(statement("SELECT", "idempotency_keys"))
        .await?)
    }

    /// Deletes keys older than the retention, a bounded batch at a time so a
    /// backlog never holds one long transaction. Returns how many went.
    pub async fn purge_idempotency_keys(&self) -> Result<u64, Error> {
        let mut purged = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM idempotency_keys
                    WHERE create_time < now() - make_interval(secs => $1)
                    LIMIT 5000))",
            )
            .bind(self.idempotency_retention.as_secs_f64())
            .execute(self.pool())
            .instrument(statement("DELETE", "idempotency_keys"))
            .await?
            .rows_affected();
            purged += deleted;
            if deleted < 5000 {
                return Ok(purged);
            }
        }
    }
}
