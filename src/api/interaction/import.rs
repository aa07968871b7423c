//! ImportInteractions: the bulk load. Rows are validated as they arrive and
//! written a chunk (`interactions.import_batch_size` valid rows) at a time,
//! each chunk in its own transaction through binary COPY and one set-based
//! merge (`store::import`); while one chunk is written the next one is read
//! and validated. A stream with a `request_id` is idempotent as a whole: the
//! last chunk's transaction stores the response under the key, and a retry
//! of a finished import answers it again without importing.

use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha256};

use super::*;
use crate::{api::stream_key, audit::AuditNote, store::import::Imported};

use pb::{import_interactions_request::Row, import_interactions_response::Rejection};

/// Most rows one ImportInteractions message may carry.
pub(super) const MAX_IMPORT_ROWS_PER_MESSAGE: usize = 5000;

/// Rejections reported back by an import.
pub(super) const MAX_REPORTED_REJECTIONS: usize = 100;

/// The method name an import's idempotency key is stored under.
const METHOD: &str = "ImportInteractions";

/// How an import stream that went silent ends: its completed batches stay
/// committed, and re-sending the stream adds no row twice.
pub(super) fn idle_stream(idle: std::time::Duration) -> Status {
    crate::api::status::layer_status(
        tonic::Code::DeadlineExceeded,
        crate::error::ErrorReason::StreamIdle,
        &format!(
            "no message for {} s (api.stream_idle_timeout_secs); the batches completed so far are committed",
            idle.as_secs()
        ),
        None,
    )
}

/// Valid rows read from the stream (with their numbers in it), and the
/// rows validation refused on the way.
#[derive(Default)]
struct Chunk {
    rows: Vec<(i64, CustomerId, NewInteraction)>,
    /// The first rejections of this chunk (no more than can be reported).
    rejections: Vec<Rejection>,
    rejected: i64,
}

impl Chunk {
    fn reject(&mut self, index: i64, field: String, reason: String) {
        self.rejected += 1;
        if self.rejections.len() < MAX_REPORTED_REJECTIONS {
            self.rejections.push(Rejection {
                index,
                field,
                reason,
            });
        }
    }
}

/// What writing a chunk did: its counts, and the rows it refused
/// (customers out of reach, external_ref conflicts).
#[derive(Default)]
struct Written {
    accepted: i64,
    duplicates: i64,
    refused: Chunk,
}

/// What the import has done so far: the response being built.
#[derive(Default)]
struct Totals(pb::ImportInteractionsResponse);

impl Totals {
    /// Adds a chunk: first what validation refused, then what its write
    /// refused, so that rejections come in stream order within a chunk as
    /// they did when each chunk was written before the next was read.
    fn add(&mut self, chunk: Chunk, written: Written) {
        self.0.accepted_count += written.accepted;
        self.0.duplicate_count += written.duplicates;
        for refused in [chunk, written.refused] {
            self.0.rejected_count += refused.rejected;
            let room = MAX_REPORTED_REJECTIONS.saturating_sub(self.0.rejections.len());
            self.0
                .rejections
                .extend(refused.rejections.into_iter().take(room));
        }
    }
}

/// Reads the stream: chunks of validated rows, or (for a retry of a
/// finished import) just the hash of its rows.
struct Reader<'a> {
    api: &'a InteractionApi,
    caller: &'a Principal,
    audit: AuditNote,
    stream: Streaming<pb::ImportInteractionsRequest>,
    pending: std::vec::IntoIter<Row>,
    index: i64,
    ended: bool,
    /// The hash of every row read, in order, when the stream has a key.
    fingerprint: Option<Sha256>,
    buffer: Vec<u8>,
}

impl Reader<'_> {
    /// The next message's rows, or the end of the stream.
    async fn next_message(&mut self) -> Result<Option<pb::ImportInteractionsRequest>, Status> {
        let idle = self.api.streams.idle_timeout;
        let message = tokio::time::timeout(idle, self.stream.message())
            .await
            .map_err(|_| idle_stream(idle))??;
        if let Some(message) = &message
            && message.rows.len() > MAX_IMPORT_ROWS_PER_MESSAGE
        {
            return Err(Error::invalid(
                "rows",
                format!("a message may carry at most {MAX_IMPORT_ROWS_PER_MESSAGE} rows"),
            )
            .into());
        }
        Ok(message)
    }

    /// The next row, reading messages as needed; None at the end.
    async fn next_row(&mut self) -> Result<Option<Row>, Status> {
        loop {
            if let Some(row) = self.pending.next() {
                if let Some(hash) = &mut self.fingerprint {
                    self.buffer.clear();
                    row.encode(&mut self.buffer)
                        .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
                    hash.update((self.buffer.len() as u64).to_be_bytes());
                    hash.update(&self.buffer);
                }
                return Ok(Some(row));
            }
            if self.ended {
                return Ok(None);
            }
            match self.next_message().await? {
                Some(message) => self.pending = message.rows.into_iter(),
                None => self.ended = true,
            }
        }
    }

    /// Reads and validates rows until `size` are valid or the stream ends.
    async fn next_chunk(&mut self, size: usize) -> Result<Chunk, Status> {
        let mut chunk = Chunk::default();
        while chunk.rows.len() < size {
            let Some(row) = self.next_row().await? else {
                break;
            };
            self.validate(row, &mut chunk)?;
        }
        Ok(chunk)
    }

    /// Whether every row has been read.
    fn finished(&self) -> bool {
        self.ended && self.pending.len() == 0
    }

    fn validate(&mut self, row: Row, chunk: &mut Chunk) -> Result<(), Status> {
        let index = self.index;
        self.index += 1;
        self.audit.customer(&row.parent);
        let mut violations = Violations::default();
        let customer = CustomerId::from_name(&row.parent)
            .inspect_err(|e| violations.add("parent", e.clone()))
            .ok();
        let new = match &row.interaction {
            Some(interaction) => read_interaction(
                interaction,
                None,
                self.caller,
                self.api,
                "interaction",
                &mut violations,
            ),
            None => {
                violations.add("interaction", "is required");
                NewInteraction::placeholder()
            }
        };
        if new.external_ref.is_empty() && row.interaction.is_some() {
            violations.add(
                "interaction.external_ref",
                "is required for imports, so a re-sent stream creates no duplicates",
            );
        }
        match violations.into_result(customer) {
            Ok(Some(customer)) => chunk.rows.push((index, customer, new)),
            Ok(None) => return Err(Error::unreported_missing_part().into()),
            Err(Error::InvalidArgument(found)) => {
                let first = &found[0];
                chunk.reject(index, first.field.clone(), first.description.clone());
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Reads the rest of the stream only to hash it.
    async fn drain(&mut self) -> Result<(), Status> {
        while self.next_row().await?.is_some() {}
        Ok(())
    }

    fn fingerprint(&mut self) -> Vec<u8> {
        self.fingerprint
            .take()
            .map(|h| h.finalize().to_vec())
            .unwrap_or_default()
    }
}

/// The stored form of a finished import's response: its one resource name.
fn stored_response(response: &pb::ImportInteractionsResponse) -> Vec<String> {
    vec![STANDARD.encode(response.encode_to_vec())]
}

fn read_stored_response(names: &[String]) -> Result<pb::ImportInteractionsResponse, Error> {
    let corrupt = || Error::Internal(anyhow::anyhow!("a stored import response is unreadable"));
    let [encoded] = names else {
        return Err(corrupt());
    };
    let bytes = STANDARD.decode(encoded).map_err(|_| corrupt())?;
    pb::ImportInteractionsResponse::decode(bytes.as_slice()).map_err(|_| corrupt())
}

impl InteractionApi {
    /// Writes one chunk in the caller's transaction: rows of customers out
    /// of reach are refused, rows already stored counted as duplicates,
    /// rows stored with other content refused as conflicts.
    async fn write_chunk(
        &self,
        conn: &mut sqlx::PgConnection,
        scope: &BranchScope,
        chunk: &Chunk,
    ) -> Result<Written, Error> {
        let mut written = Written::default();
        if chunk.rows.is_empty() {
            return Ok(written);
        }
        let mut ids: Vec<&str> = chunk.rows.iter().map(|(_, c, _)| c.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let reachable = store::lock_customers(conn, &ids, scope.branch()).await?;
        let mut rows = Vec::with_capacity(chunk.rows.len());
        let mut indexes = Vec::with_capacity(chunk.rows.len());
        for (index, customer, new) in &chunk.rows {
            if reachable
                .binary_search_by(|r| r.as_str().cmp(customer.as_str()))
                .is_ok()
            {
                rows.push((customer, new));
                indexes.push(*index);
            } else {
                written.refused.reject(
                    *index,
                    "parent".into(),
                    "the customer does not exist or is not reachable by the caller".into(),
                );
            }
        }
        let imported = crate::store::import::import(conn, &rows).await?;
        self.metrics.observe_append_batch(rows.len());
        for (imported, index) in imported.into_iter().zip(indexes) {
            match imported {
                Imported::New => written.accepted += 1,
                Imported::Duplicate => written.duplicates += 1,
                Imported::Conflict(existing) => written.refused.reject(
                    index,
                    "interaction.external_ref".into(),
                    format!(
                        "EXTERNAL_REF_CONFLICT: {existing} is stored under this external_ref with other content"
                    ),
                ),
            }
        }
        Ok(written)
    }

    /// Writes one chunk in a transaction of its own.
    async fn commit_chunk(&self, scope: &BranchScope, chunk: &Chunk) -> Result<Written, Error> {
        let mut tx = self.db.begin().await?;
        let written = self.write_chunk(&mut tx, scope, chunk).await?;
        tx.commit().await?;
        // The importer's next stale-tolerant read waits for the standby.
        self.db.note_write().await;
        Ok(written)
    }
}

/// Imports the rest of the stream, chunk by chunk; while one chunk is
/// written the next is read and validated. A chunk is committed once it is
/// whole, so a stream cut midway keeps every chunk it completed.
async fn import(
    api: &InteractionApi,
    scope: &BranchScope,
    reader: &mut Reader<'_>,
    key: Option<IdempotencyKey>,
) -> Result<pb::ImportInteractionsResponse, Status> {
    let size = api.import_batch_size;
    let mut totals = Totals::default();
    let mut current = reader.next_chunk(size).await?;
    while !reader.finished() {
        let (written, next) =
            tokio::join!(api.commit_chunk(scope, &current), reader.next_chunk(size));
        totals.add(current, written?);
        current = next?;
    }
    let Some(mut key) = key else {
        let written = api.commit_chunk(scope, &current).await?;
        totals.add(current, written);
        return Ok(totals.0);
    };
    // The last chunk's transaction claims the key with the hash of every
    // row and stores the response: a retry then answers it. Should an
    // identical stream have finished first, its response is the answer.
    key.fingerprint = reader.fingerprint();
    Ok(api
        .db
        .write(
            Some(&key),
            stored_response,
            async |_, names| read_stored_response(&names),
            async |tx| {
                let written = api.write_chunk(tx, scope, &current).await?;
                totals.add(current, written);
                Ok(totals.0)
            },
        )
        .await?)
}

pub(super) async fn import_interactions(
    api: &InteractionApi,
    request: Request<Streaming<pb::ImportInteractionsRequest>>,
) -> Result<Response<pb::ImportInteractionsResponse>, Status> {
    let audit = crate::audit::note(&request);
    let caller = principal(&request).map_err(Status::from)?;
    if !(caller.has(Role::Service) || caller.has(Role::Admin)) {
        return Err(Error::denied("import interactions (calling systems and admins only)").into());
    }
    let scope = caller.customer_write_scope().map_err(Status::from)?;
    let mut reader = Reader {
        api,
        caller: &caller,
        audit,
        stream: request.into_inner(),
        pending: Vec::new().into_iter(),
        index: 0,
        ended: false,
        fingerprint: None,
        buffer: Vec::new(),
    };
    // The request_id is read from the first message.
    let key = match reader.next_message().await? {
        Some(first) => {
            let key = stream_key(&caller, METHOD, &first.request_id).map_err(Status::from)?;
            reader.pending = first.rows.into_iter();
            key
        }
        None => {
            reader.ended = true;
            None
        }
    };
    if let Some(key) = &key {
        reader.fingerprint = Some(Sha256::new());
        if let Some((fingerprint, names)) = api.db.recorded(key).await.map_err(Status::from)? {
            // A retry of a finished import: read it through to tell it from
            // another stream under the same request_id, import nothing.
            reader.drain().await?;
            if reader.fingerprint() != fingerprint {
                return Err(Error::RequestIdReused.into());
            }
            return Ok(Response::new(
                read_stored_response(&names).map_err(Status::from)?,
            ));
        }
    }
    let response = import(api, &scope, &mut reader, key).await?;
    tracing::info!(
        accepted = response.accepted_count,
        duplicates = response.duplicate_count,
        rejected = response.rejected_count,
        "import finished"
    );
    Ok(Response::new(response))
}
