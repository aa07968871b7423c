//! Long-running operations (AIP-151), stored in `operations`.
//!
//! A runner is a database session of its own: before the row is inserted it
//! takes the session advisory lock (`LOCK_SPACE`, `lock_key`), and it keeps
//! it until the row is done and the session closes. An operation not done
//! whose lock nobody holds has lost its runner (the server stopped, or the
//! connection broke before the result was written): `reap` ends it with the
//! error it is given. Readers reap first, so nobody waits on a dead run.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use tracing::Instrument;
use uuid::Uuid;

use super::statement;
use crate::error::Error;

/// The first key of every runner's advisory lock ("CKOP").
pub const LOCK_SPACE: i32 = 0x434B_4F50;

/// Whether the runner of an operation still holds its lock, as SQL over the
/// row `o` (two-key advisory locks show as classid, objid, objsubid 2).
fn runner_alive() -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                    AND l.classid::bigint = {LOCK_SPACE} AND l.objid::bigint = o.lock_key
                    AND l.pid = o.runner_pid)"
    )
}

/// A stored operation.
#[derive(Debug, Clone, FromRow)]
pub struct Operation {
    pub id: Uuid,
    pub kind: String,
    pub request: Vec<u8>,
    pub create_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub done: bool,
    pub cancel_requested: bool,
    pub response: Option<Vec<u8>>,
    pub error: Option<Vec<u8>>,
}

macro_rules! columns {
    () => {
        "o.id, o.kind, o.request, o.create_time, o.end_time, o.done, \
         o.cancel_requested, o.response, o.error"
    };
}
const COLUMNS: &str = columns!();

/// Who may see an operation: its creator, or everyone's for an admin.
#[derive(Debug, Clone, Copy)]
pub enum Reader<'a> {
    Admin,
    Creator(&'a str),
}

impl Reader<'_> {
    fn creator(self) -> Option<String> {
        match self {
            Reader::Admin => None,
            Reader::Creator(subject) => Some(subject.to_string()),
        }
    }
}

/// Makes `conn` a runner: takes a fresh lock key and the session lock on
/// it. Returns (lock key, backend pid) for `insert`.
pub async fn become_runner(conn: &mut PgConnection) -> Result<(i32, i32), Error> {
    let (key, pid): (i32, i32) =
        sqlx::query_as("SELECT nextval('operation_lock_keys')::int, pg_backend_pid()")
            .fetch_one(&mut *conn)
            .instrument(statement("SELECT", "operation_lock_keys"))
            .await?;
    sqlx::query("SELECT pg_advisory_lock($1, $2)")
        .bind(LOCK_SPACE)
        .bind(key)
        .execute(&mut *conn)
        .instrument(statement("SELECT", "pg_advisory_lock"))
        .await?;
    Ok((key, pid))
}

/// What `insert` stores.
pub struct NewOperation<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    pub created_by: &'a str,
    pub request: &'a [u8],
    pub lock_key: i32,
    pub runner_pid: i32,
}

pub async fn insert(conn: &mut PgConnection, new: &NewOperation<'_>) -> Result<Operation, Error> {
    let sql = format!(
        "INSERT INTO operations AS o (id, kind, created_by, request, lock_key, runner_pid)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(new.id)
        .bind(new.kind)
        .bind(new.created_by)
        .bind(new.request)
        .bind(new.lock_key)
        .bind(new.runner_pid)
        .fetch_one(conn)
        .instrument(statement("INSERT", "operations"))
        .await?)
}

/// Ends every operation whose runner is gone with `error` (an encoded
/// google.rpc.Status). Returns how many it ended.
pub async fn reap(conn: &mut PgConnection, error: &[u8]) -> Result<u64, Error> {
    let sql = format!(
        "UPDATE operations o SET done = true, end_time = now(), error = $1
          WHERE NOT o.done AND NOT {}",
        runner_alive()
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(error)
        .execute(conn)
        .instrument(statement("UPDATE", "operations"))
        .await?
        .rows_affected())
}

/// One operation, if `reader` may see it.
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    reader: Reader<'_>,
) -> Result<Option<Operation>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM operations o
          WHERE o.id = $1 AND ($2::text IS NULL OR o.created_by = $2)"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(reader.creator())
        .fetch_optional(conn)
        .instrument(statement("SELECT", "operations"))
        .await?)
}

/// ListOperations: what $1 (None: an admin) may see, newest first, after
/// ($3, $4), done or not ($2).
pub const LIST_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM operations o
      WHERE ($1::text IS NULL OR o.created_by = $1)
        AND ($2::bool IS NULL OR o.done = $2)
        AND ($3::timestamptz IS NULL OR (o.create_time, o.id) < ($3, $4))
      ORDER BY o.create_time DESC, o.id DESC
      LIMIT $5"
);

/// The parameters of `LIST_SQL`.
pub fn list_args(
    reader: Reader<'_>,
    done: Option<bool>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> super::Args {
    args!(
        reader.creator(),
        done,
        after.map(|a| a.0),
        after.map(|a| a.1),
        limit
    )
}

/// Operations `reader` may see, newest first, after `after` (create time,
/// id), optionally only those done or not done.
pub async fn list(
    conn: &mut PgConnection,
    reader: Reader<'_>,
    done: Option<bool>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Operation>, Error> {
    Ok(
        sqlx::query_as_with(LIST_SQL, list_args(reader, done, after, limit)?)
            .fetch_all(conn)
            .instrument(statement("SELECT", "operations"))
            .await?,
    )
}

/// Ends a running operation with its result (an encoded response or
/// google.rpc.Status); false when it was already done.
pub async fn finish(
    conn: &mut PgConnection,
    id: Uuid,
    result: Result<&[u8], &[u8]>,
) -> Result<bool, Error> {
    let (response, error) = match result {
        Ok(response) => (Some(response), None),
        Err(error) => (None, Some(error)),
    };
    Ok(sqlx::query(
        "UPDATE operations SET done = true, end_time = now(), response = $2, error = $3
          WHERE id = $1 AND NOT done",
    )
    .bind(id)
    .bind(response)
    .bind(error)
    .execute(conn)
    .instrument(statement("UPDATE", "operations"))
    .await?
    .rows_affected()
        == 1)
}

/// Whether cancelling `id` was asked for. A cancel marks the row and signals
/// the runner in one transaction, so the runner can see its statement
/// cancelled before the mark is committed: the read locks the row, which
/// waits for a cancel in flight to commit and then sees its mark.
pub async fn cancel_requested(conn: &mut PgConnection, id: Uuid) -> Result<bool, Error> {
    Ok(
        sqlx::query_scalar("SELECT cancel_requested FROM operations WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(conn)
            .instrument(statement("SELECT", "operations"))
            .await?
            .unwrap_or(false),
    )
}

/// Asks a running operation to stop: marks it and cancels the statement its
/// runner runs (only while that runner holds the operation's lock, so a
/// recycled pid is never hit). None when `reader` may not see it.
pub async fn cancel(
    conn: &mut PgConnection,
    id: Uuid,
    reader: Reader<'_>,
) -> Result<Option<Operation>, Error> {
    let sql = format!(
        "WITH marked AS (
             UPDATE operations o SET cancel_requested = o.cancel_requested OR NOT o.done
              WHERE o.id = $1 AND ($2::text IS NULL OR o.created_by = $2)
              RETURNING o.*
         ), signalled AS (
             SELECT pg_cancel_backend(o.runner_pid) FROM marked o
              WHERE NOT o.done AND {alive}
         )
         SELECT {COLUMNS} FROM marked o, (SELECT count(*) FROM signalled) s",
        alive = runner_alive()
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(reader.creator())
        .fetch_optional(conn)
        .instrument(statement("UPDATE", "operations"))
        .await?)
}

/// Deletes a done operation. Ok(None) when `reader` may not see it;
/// Ok(Some(false)) when it still runs.
pub async fn delete(
    conn: &mut PgConnection,
    id: Uuid,
    reader: Reader<'_>,
) -> Result<Option<bool>, Error> {
    let found: Option<(bool, bool)> = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM operations
              WHERE id = $1 AND done AND ($2::text IS NULL OR created_by = $2)
              RETURNING id)
         SELECT EXISTS (SELECT 1 FROM gone), o.done
           FROM operations o WHERE o.id = $1 AND ($2::text IS NULL OR o.created_by = $2)",
    )
    .bind(id)
    .bind(reader.creator())
    .fetch_optional(conn)
    .instrument(statement("DELETE", "operations"))
    .await?;
    Ok(found.map(|(deleted, _)| deleted))
}
