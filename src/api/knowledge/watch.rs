//! The live stream of newly visible knowledge.

use super::*;
use crate::store::interactions::CommittedBefore;

/// Tags the resume tokens of the knowledge stream.
pub(super) const STREAM: &str = "k1";

pub(super) type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchKnowledgeResponse, Status>> + Send>>;

pub(super) async fn watch_knowledge(
    api: &KnowledgeApi,
    request: Request<pb::WatchKnowledgeRequest>,
) -> Result<Response<WatchStream>, Status> {
    let subscription = async {
        crate::audit::note_customers_in(&request, request.get_ref());
        let caller = principal(&request)?;
        let access = KnowledgeAccess::of(&caller)?;
        let scope = caller.customer_read_scope()?;
        let req = request.get_ref();
        if req.subjects.len() > rules::MAX_WATCH_SUBJECTS {
            return Err(Error::invalid(
                "subjects",
                format!("must name at most {}", rules::MAX_WATCH_SUBJECTS),
            ));
        }
        let mut subjects = Vec::new();
        for (i, name) in req.subjects.iter().enumerate() {
            let id = parse_name(&format!("subjects[{i}]"), name)?;
            let found = api.db.get_customer(&id, scope.branch()).await?;
            crate::api::customer::access::resolve(found, &scope, &id)?;
            subjects.push(id.as_str().to_string());
        }
        let wakeups = api.feed.knowledge_wakeups();
        let (start, seen) = if req.resume_token.is_empty() {
            let (start, seen) = api.db.stream_start().await?;
            (start, Some(seen))
        } else {
            (parse_resume_token(STREAM, &req.resume_token)?, None)
        };
        Ok::<_, Error>((access, subjects, wakeups, (start, seen)))
    };
    let (access, subjects, wakeups, start) = subscription.await.map_err(Status::from)?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(deliver(
        api.db.clone(),
        access,
        subjects,
        start,
        wakeups,
        tx,
        api.streams.clone(),
    ));
    Ok(Response::new(
        Box::pin(ReceiverStream::new(rx)) as WatchStream
    ))
}

/// An item the caller is to drop: its name, nothing it says.
fn name_only(item: &KnowledgeItem) -> pb::KnowledgeItem {
    pb::KnowledgeItem {
        name: item.name(),
        ..Default::default()
    }
}

/// Streams what becomes visible to the caller: on every wake-up (and every
/// second, for rows held back behind a running transaction) it reads the
/// changes after its cursor that the caller may see now.
pub(super) async fn deliver(
    db: Db,
    access: KnowledgeAccess,
    subjects: Vec<String>,
    (mut cursor, seen): ((i64, i64), Option<CommittedBefore>),
    mut wakeups: tokio::sync::watch::Receiver<u64>,
    tx: mpsc::Sender<Result<pb::WatchKnowledgeResponse, Status>>,
    streams: Streams,
) {
    let mut last_sent = tokio::time::Instant::now();
    loop {
        loop {
            let events: Vec<KnowledgeEvent> = match db
                .knowledge_events_after(&access, cursor, &subjects, 500)
                .await
            {
                Ok(events) => events,
                Err(e) => {
                    let _ = tx.send(Err(Status::from(e))).await;
                    return;
                }
            };
            let full = events.len() == 500;
            for event in events {
                cursor = event.cursor;
                // Committed before a new stream began: not news to it.
                if seen.as_ref().is_some_and(|s| s.contains(event.cursor.0)) {
                    continue;
                }
                let item = match event.change {
                    Change::Retracted => retracted_pb(&event.item),
                    // Drop it: only its name goes out.
                    Change::Erased => name_only(&event.item),
                    _ if !event.visible_now => name_only(&event.item),
                    _ => item_pb(&event.item, Utc::now()),
                };
                let message = pb::WatchKnowledgeResponse {
                    change: change_to(event.change) as i32,
                    knowledge_item: Some(item),
                    change_time: Some(timestamp(event.change_time)),
                    resume_token: resume_token(STREAM, event.cursor),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
                last_sent = tokio::time::Instant::now();
            }
            if !full {
                break;
            }
        }
        if last_sent.elapsed() >= streams.heartbeat {
            let heartbeat = pb::WatchKnowledgeResponse {
                change: pb::watch_knowledge_response::Change::Heartbeat as i32,
                knowledge_item: None,
                change_time: None,
                resume_token: resume_token(STREAM, cursor),
            };
            if tx.send(Ok(heartbeat)).await.is_err() {
                return;
            }
            last_sent = tokio::time::Instant::now();
        }
        tokio::select! {
            // The feed closes only when the server drains.
            changed = wakeups.changed() => if changed.is_err() {
                let _ = tx.send(Err(draining_status())).await;
                return;
            },
            _ = tokio::time::sleep(std::time::Duration::from_secs(1).min(streams.heartbeat)) => {}
            _ = streams.draining() => {
                let _ = tx.send(Err(draining_status())).await;
                return;
            }
            _ = tx.closed() => return,
        }
    }
}
