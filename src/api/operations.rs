//! `google.longrunning.Operations` (AIP-151) over the `operations` table, and
//! the one way a method starts an operation (`start`) and completes it
//! (`run`). RecomputeSegments is the only method that answers with one.
//!
//! An operation is seen by the caller that started it and by admins; anyone
//! else is told it does not exist or is outside their reach.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use prost::Message;
use sqlx::{Connection, PgConnection};
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

use super::{
    page_token::{PageTokens, page_size, parse_time_cursor, time_cursor},
    principal, respond,
    status::layer_status,
    timestamp,
};
use crate::{
    domain::principal::{Principal, Role},
    error::{Error, ErrorReason},
    pb::{
        google::longrunning::{
            self as lro, operation::Result as Outcome, operations_server::Operations,
        },
        v1 as pb,
    },
    store::{
        self, Db,
        idempotency::IdempotencyKey,
        operations::{self as stored, NewOperation, Reader},
    },
};

/// The prefix of every operation's name.
const PREFIX: &str = "operations/";
/// Operations per ListOperations page at most (the default is the service's).
const MAX_PAGE: i64 = 100;
/// How long WaitOperation waits when the request names no timeout, and at
/// most; a call's own deadline (less a margin to answer) bounds it too.
const DEFAULT_WAIT: Duration = Duration::from_secs(20);
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often WaitOperation looks again.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// The kinds of operation, by the method that starts them.
pub(crate) const RECOMPUTE_SEGMENTS: &str = "RecomputeSegments";

pub struct OperationsApi {
    db: Db,
    page_tokens: PageTokens,
}

impl OperationsApi {
    pub fn new(db: Db, page_tokens: PageTokens) -> Self {
        OperationsApi { db, page_tokens }
    }
}

fn reader(caller: &Principal) -> Reader<'_> {
    if caller.has(Role::Admin) {
        Reader::Admin
    } else {
        Reader::Creator(&caller.subject)
    }
}

fn parse_name(name: &str) -> Result<Uuid, Error> {
    name.strip_prefix(PREFIX)
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| Error::invalid("name", "must be operations/{uuid}"))
}

fn unreachable_operation(name: &str) -> Error {
    Error::not_found(name.to_string())
}

/// A status as the `google.rpc.Status` an operation's `error` holds: the
/// details tonic carries are that message already.
fn rpc_status(status: &Status) -> tonic_types::pb::Status {
    tonic_types::pb::Status::decode(status.details())
        .ok()
        .filter(|s| s.code == status.code() as i32)
        .unwrap_or_else(|| tonic_types::pb::Status {
            code: status.code() as i32,
            message: status.message().to_string(),
            details: Vec::new(),
        })
}

/// The error of an operation whose runner is gone.
fn runner_stopped() -> Vec<u8> {
    rpc_status(&layer_status(
        Code::Aborted,
        ErrorReason::RunnerStopped,
        "the server running this operation stopped before it ended; nothing was stored: start it again",
        None,
    ))
    .encode_to_vec()
}

fn cancelled() -> Status {
    layer_status(
        Code::Cancelled,
        ErrorReason::OperationCancelled,
        "the operation was cancelled; nothing was stored",
        None,
    )
}

fn any(type_name: &str, value: Vec<u8>) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/bank.customerknowledge.v1.{type_name}"),
        value,
    }
}

/// The wire form of a stored operation.
fn to_pb(op: &stored::Operation) -> Result<lro::Operation, Error> {
    let undecodable = |what: &str| Error::Internal(anyhow::anyhow!("stored operation {what}"));
    let metadata = match op.kind.as_str() {
        RECOMPUTE_SEGMENTS => {
            let request = pb::RecomputeSegmentsRequest::decode(op.request.as_slice())
                .map_err(|_| undecodable("request"))?;
            pb::RecomputeSegmentsMetadata {
                as_of: request.as_of,
                window_months: request.window_months,
                create_time: Some(timestamp(op.create_time)),
                end_time: op.end_time.map(timestamp),
                cancel_requested: op.cancel_requested,
            }
            .encode_to_vec()
        }
        _ => return Err(undecodable("kind")),
    };
    let result = match (&op.response, &op.error) {
        (Some(response), _) => Some(Outcome::Response(any(
            "RecomputeSegmentsResponse",
            response.clone(),
        ))),
        (None, Some(error)) => Some(Outcome::Error(
            tonic_types::pb::Status::decode(error.as_slice()).map_err(|_| undecodable("error"))?,
        )),
        (None, None) => None,
    };
    Ok(lro::Operation {
        name: format!("{PREFIX}{}", op.id),
        metadata: Some(any("RecomputeSegmentsMetadata", metadata)),
        done: op.done,
        result,
    })
}

/// A database session that runs one operation: it holds the operation's
/// lock until it is dropped.
pub(crate) struct Runner {
    conn: PgConnection,
    id: Uuid,
}

/// Starts an operation of `kind` for `request` (encoded, defaults filled
/// in): stores it, idempotent by `key`, and returns it with the runner that
/// must complete it (`run`), or without one when this is a retry of a call
/// that started it already.
pub(crate) async fn start(
    db: &Db,
    caller: &Principal,
    key: Option<&IdempotencyKey>,
    kind: &'static str,
    request: &[u8],
) -> Result<(lro::Operation, Option<Runner>), Error> {
    // Its own session, out of the pool: a run takes minutes and must not
    // hold a connection the calls share.
    let mut conn = db.pool().acquire().await?.detach();
    // A runner whose server dies mid-statement is noticed by Postgres and
    // its lock released within seconds (Postgres 14 and later).
    let _ = sqlx::query("SET client_connection_check_interval = '5s'")
        .execute(&mut conn)
        .await;
    let (lock_key, runner_pid) = stored::become_runner(&mut conn).await?;
    let id = Uuid::now_v7();
    let fresh = AtomicBool::new(false);
    let operation = db
        .write(
            key,
            |op: &lro::Operation| vec![op.name.clone()],
            async |tx, names| {
                let id = parse_name(&names[0])?;
                let op = stored::get(tx, id, Reader::Creator(&caller.subject))
                    .await?
                    .ok_or_else(|| unreachable_operation(&names[0]))?;
                to_pb(&op)
            },
            async |tx| {
                let op = stored::insert(
                    tx,
                    &NewOperation {
                        id,
                        kind,
                        created_by: &caller.subject,
                        request,
                        lock_key,
                        runner_pid,
                    },
                )
                .await?;
                fresh.store(true, Ordering::Relaxed);
                to_pb(&op)
            },
        )
        .await?;
    Ok((
        operation,
        fresh.load(Ordering::Relaxed).then_some(Runner { conn, id }),
    ))
}

/// Why a run ended without its result.
enum Stop {
    Failed(Error),
    Cancelled,
}

impl<E: Into<Error>> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Failed(e.into())
    }
}

/// Completes the operation of `runner` with what `job` returns (an encoded
/// response), in one transaction with the job's own writes; an error, or a
/// cancel asked for meanwhile, rolls the job back and ends the operation
/// with that error (CANCELLED for a cancel).
pub(crate) async fn run(
    runner: Runner,
    job: impl AsyncFnOnce(&mut PgConnection) -> Result<Vec<u8>, Error>,
) {
    let Runner { mut conn, id } = runner;
    let outcome: Result<(), Stop> = async {
        let mut tx = conn.begin().await?;
        let response = job(&mut tx).await?;
        if stored::cancel_requested(&mut tx, id).await? {
            return Err(Stop::Cancelled);
        }
        stored::finish(&mut tx, id, Ok(&response)).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(stop) = outcome {
        // A cancelled statement fails like any other: the mark tells.
        let asked_to_stop = stored::cancel_requested(&mut conn, id)
            .await
            .unwrap_or(false);
        let status = match stop {
            Stop::Failed(error) if !asked_to_stop => Status::from(error),
            _ => cancelled(),
        };
        let error = rpc_status(&status).encode_to_vec();
        if let Err(e) = stored::finish(&mut conn, id, Err(&error)).await {
            // The lock goes with the session: readers end it as ABORTED.
            tracing::warn!(operation = %id, error = %e, "could not record how an operation ended");
        }
    }
    // Closing the session releases the lock.
    let _ = conn.close().await;
}

impl OperationsApi {
    async fn get(&self, caller: &Principal, name: &str) -> Result<lro::Operation, Error> {
        let id = parse_name(name)?;
        let mut conn = self.db.acquire().await?;
        stored::reap(&mut conn, &runner_stopped()).await?;
        let op = stored::get(&mut conn, id, reader(caller))
            .await?
            .ok_or_else(|| unreachable_operation(name))?;
        to_pb(&op)
    }

    async fn list(
        &self,
        caller: &Principal,
        req: &lro::ListOperationsRequest,
    ) -> Result<lro::ListOperationsResponse, Error> {
        let mut violations = crate::error::Violations::default();
        if !(req.name.is_empty() || req.name == "operations") {
            violations.add("name", "must be \"operations\" or empty");
        }
        let done = match req.filter.replace(' ', "").as_str() {
            "" => None,
            "done=true" => Some(true),
            "done=false" => Some(false),
            _ => {
                violations.add(
                    "filter",
                    "must be empty, \"done = true\" or \"done = false\"",
                );
                None
            }
        };
        let limit = page_size(req.page_size)
            .inspect_err(|_| violations.add("page_size", "must not be negative"))
            .unwrap_or_default()
            .min(MAX_PAGE);
        violations.into_result(())?;
        let context = format!("ListOperations|{}|{done:?}", caller.subject);
        let after = match self.page_tokens.decode(&req.page_token, &context)? {
            None => None,
            Some(cursor) => {
                let (time, id) = parse_time_cursor(&cursor)?;
                let id = Uuid::parse_str(&id).map_err(|_| {
                    Error::invalid("page_token", "is not a page token of this list")
                })?;
                Some((time, id))
            }
        };
        let mut conn = self.db.acquire().await?;
        stored::reap(&mut conn, &runner_stopped()).await?;
        let mut rows = stored::list(&mut conn, reader(caller), done, after, limit + 1).await?;
        let next_page_token = self
            .page_tokens
            .next_page(&mut rows, limit, &context, |op| {
                time_cursor(op.create_time, &op.id.to_string())
            });
        Ok(lro::ListOperationsResponse {
            operations: rows.iter().map(to_pb).collect::<Result<_, _>>()?,
            next_page_token,
            unreachable: Vec::new(),
        })
    }

    async fn cancel(&self, caller: &Principal, name: &str) -> Result<(), Error> {
        let id = parse_name(name)?;
        let mut conn = self.db.acquire().await?;
        stored::cancel(&mut conn, id, reader(caller))
            .await?
            .ok_or_else(|| unreachable_operation(name))?;
        Ok(())
    }

    async fn delete(&self, caller: &Principal, name: &str) -> Result<(), Error> {
        let id = parse_name(name)?;
        let mut conn = self.db.acquire().await?;
        stored::reap(&mut conn, &runner_stopped()).await?;
        match stored::delete(&mut conn, id, reader(caller)).await? {
            None => Err(unreachable_operation(name)),
            Some(true) => Ok(()),
            Some(false) => Err(Error::FailedPrecondition {
                reason: ErrorReason::OperationRunning,
                message: format!("{name} is still running: cancel it, or wait until it is done"),
            }),
        }
    }

    async fn wait(
        &self,
        caller: &Principal,
        req: &lro::WaitOperationRequest,
    ) -> Result<lro::Operation, Error> {
        let asked = match &req.timeout {
            None => DEFAULT_WAIT,
            Some(d) if d.seconds < 0 || d.nanos < 0 => {
                return Err(Error::invalid("timeout", "must not be negative"));
            }
            Some(d) => Duration::from_secs(d.seconds.unsigned_abs())
                .saturating_add(Duration::from_nanos(u64::from(d.nanos.unsigned_abs())))
                .min(MAX_WAIT),
        };
        let now = tokio::time::Instant::now();
        // Answer before the caller's deadline: a tenth of it, at most a
        // second, is kept to read and answer.
        let until = match store::deadline() {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(now);
                now + asked.min(left.saturating_sub((left / 10).min(Duration::from_secs(1))))
            }
            None => now + asked,
        };
        loop {
            let op = self.get(caller, &req.name).await?;
            if op.done || tokio::time::Instant::now() + WAIT_POLL >= until {
                return Ok(op);
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }
}

#[tonic::async_trait]
impl Operations for OperationsApi {
    #[tracing::instrument(skip_all, name = "ListOperations")]
    async fn list_operations(
        &self,
        request: Request<lro::ListOperationsRequest>,
    ) -> Result<Response<lro::ListOperationsResponse>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.list(&caller, request.get_ref()).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "GetOperation")]
    async fn get_operation(
        &self,
        request: Request<lro::GetOperationRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.get(&caller, &request.get_ref().name).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "DeleteOperation")]
    async fn delete_operation(
        &self,
        request: Request<lro::DeleteOperationRequest>,
    ) -> Result<Response<()>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.delete(&caller, &request.get_ref().name).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "CancelOperation")]
    async fn cancel_operation(
        &self,
        request: Request<lro::CancelOperationRequest>,
    ) -> Result<Response<()>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.cancel(&caller, &request.get_ref().name).await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "WaitOperation")]
    async fn wait_operation(
        &self,
        request: Request<lro::WaitOperationRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        respond(async {
            let caller = principal(&request)?;
            self.wait(&caller, request.get_ref()).await
        })
        .await
    }
}
