//! Idempotency keys (DESIGN §5): the key is claimed in the transaction of the
//! write it guards; a retry waits on the key's row lock and then replays the
//! committed response.

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

enum Claim {
    New,
    Replay(Vec<u8>),
}

async fn claim(conn: &mut PgConnection, key: &IdempotencyKey) -> Result<Claim, Error> {
    // A concurrent claim of the same key blocks here until the first
    // transaction ends; then it either conflicts (the first committed) or
    // inserts (the first rolled back).
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (principal, method, request_id, fingerprint)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(&key.principal)
    .bind(key.method)
    .bind(key.request_id)
    .bind(&key.fingerprint)
    .execute(&mut *conn)
    .instrument(statement("INSERT", "idempotency_keys"))
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    let (fingerprint, response): (Vec<u8>, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT fingerprint, response FROM idempotency_keys
         WHERE principal = $1 AND method = $2 AND request_id = $3",
    )
    .bind(&key.principal)
    .bind(key.method)
    .bind(key.request_id)
    .fetch_one(&mut *conn)
    .instrument(statement("SELECT", "idempotency_keys"))
    .await?;
    if fingerprint != key.fingerprint {
        return Err(Error::invalid(
            "request_id",
            "was already used for a different request; use a new request_id for a new request",
        ));
    }
    let response = response.ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "idempotency key committed without a response"
        ))
    })?;
    Ok(Claim::Replay(response))
}

impl Db {
    /// Runs `write` in one transaction. With a key, the key is stored in that
    /// same transaction together with the encoded response, and a retry gets
    /// the original response decoded instead of a second write.
    pub async fn write<T>(
        &self,
        key: Option<&IdempotencyKey>,
        encode: impl Fn(&T) -> Vec<u8>,
        decode: impl Fn(&[u8]) -> Result<T, Error>,
        write: impl AsyncFnOnce(&mut PgConnection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut tx = self.begin().await?;
        if let Some(key) = key
            && let Claim::Replay(bytes) = claim(&mut tx, key).await?
        {
            tx.rollback().await?;
            return decode(&bytes);
        }
        let response = write(&mut tx).await?;
        if let Some(key) = key {
            sqlx::query(
                "UPDATE idempotency_keys SET response = $4
                 WHERE principal = $1 AND method = $2 AND request_id = $3",
            )
            .bind(&key.principal)
            .bind(key.method)
            .bind(key.request_id)
            .bind(encode(&response))
            .execute(&mut *tx)
            .instrument(statement("UPDATE", "idempotency_keys"))
            .await?;
        }
        tx.commit().await?;
        Ok(response)
    }
}
