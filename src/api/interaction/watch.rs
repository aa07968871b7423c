//! The live feed of interactions.

use super::*;

/// Tags the resume tokens of the interaction stream.
pub(super) const STREAM: &str = "v1";

pub(super) type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchInteractionsResponse, Status>> + Send>>;

pub(super) async fn watch_interactions(
    api: &InteractionApi,
    request: Request<pb::WatchInteractionsRequest>,
) -> Result<Response<WatchStream>, Status> {
    let subscription = async {
        crate::audit::note_customer(&request, &request.get_ref().customer);
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let req = request.get_ref();
        // The one connection the subscription reads on, once it needs one.
        let mut conn = None;
        let filter = match (req.customer.is_empty(), req.branch.is_empty()) {
            (false, true) => {
                let customer = parse_name("customer", &req.customer)?;
                let conn = conn.insert(api.db.acquire().await?);
                readable_customer(conn, &customer, &scope).await?;
                WatchFilter::Customer(customer)
            }
            (true, false) => {
                let branch =
                    org_code(&req.branch, true).map_err(|e| Error::invalid("branch", e))?;
                if !scope.admits(&branch) {
                    return Err(Error::denied(format!("watch branch {branch}")));
                }
                WatchFilter::Branch(branch)
            }
            _ => {
                return Err(Error::invalid(
                    "customer",
                    "set exactly one of customer or branch",
                ));
            }
        };
        // Subscribe before reading the start point, so nothing committed
        // in between is lost.
        let live = api.feed.subscribe();
        let (start, seen) = if req.resume_token.is_empty() {
            let (start, seen) = match &mut conn {
                Some(conn) => store::stream_start(conn).await?,
                None => api.db.stream_start().await?,
            };
            (start, Some(seen))
        } else {
            (parse_resume_token(STREAM, &req.resume_token)?, None)
        };
        Ok((filter, scope, live, start, seen))
    };
    let (filter, scope, live, start, seen) = subscription.await.map_err(Status::from)?;
    let catch_up = seen.is_none();
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(deliver(
        api.db.clone(),
        Watcher {
            filter,
            scope,
            last: start,
            seen,
            last_sent: Instant::now(),
        },
        live,
        catch_up,
        tx,
        api.streams.clone(),
    ));
    Ok(Response::new(
        Box::pin(ReceiverStream::new(rx)) as WatchStream
    ))
}

pub(super) enum WatchFilter {
    Customer(CustomerId),
    Branch(String),
}

pub(super) struct Watcher {
    filter: WatchFilter,
    scope: BranchScope,
    last: FeedCursor,
    /// What had committed when a new stream began: not delivered.
    seen: Option<store::CommittedBefore>,
    /// When the stream last carried a message, for heartbeats.
    last_sent: Instant,
}

impl Watcher {
    /// Whether the item belongs to this stream and the caller may read it
    /// now (the customer may have moved branch since the stream began).
    pub(super) fn wants(&self, item: &FeedItem) -> bool {
        item.cursor > self.last
            && !self
                .seen
                .as_ref()
                .is_some_and(|seen| seen.contains(item.cursor.0))
            && self.scope.admits(&item.home_branch)
            && match &self.filter {
                WatchFilter::Customer(c) => item.interaction.customer == *c,
                WatchFilter::Branch(b) => item.home_branch == *b,
            }
    }

    pub(super) async fn send(
        &mut self,
        item: &FeedItem,
        tx: &mpsc::Sender<Result<pb::WatchInteractionsResponse, Status>>,
    ) -> bool {
        if !self.wants(item) {
            return true;
        }
        self.last = item.cursor;
        self.last_sent = Instant::now();
        use pb::watch_interactions_response::Change;
        let change = Change::from_str_name(&item.change).unwrap_or(Change::Logged);
        let interaction = match change {
            // Caches drop it: the name is all that is left to say.
            Change::Erased => pb::Interaction {
                name: item.interaction.name(),
                ..Default::default()
            },
            // Caches drop it: what it said stays out of the stream.
            Change::Voided | Change::Superseded => void_record(&item.interaction),
            _ if item.interaction.void.is_some() => void_record(&item.interaction),
            _ => interaction_to(&item.interaction, Utc::now()),
        };
        tx.send(Ok(pb::WatchInteractionsResponse {
            interaction: Some(interaction),
            resume_token: resume_token(STREAM, item.cursor),
            heartbeat: false,
            change: change as i32,
            // Only a MOVED change says where the row was.
            previous_name: if change == Change::Moved {
                item.previous_name.clone()
            } else {
                String::new()
            },
        }))
        .await
        .is_ok()
    }

    /// A heartbeat with the current position, when nothing was sent for
    /// `quiet`; false when the client has gone.
    pub(super) async fn beat(
        &mut self,
        quiet: std::time::Duration,
        tx: &mpsc::Sender<Result<pb::WatchInteractionsResponse, Status>>,
    ) -> bool {
        if self.last_sent.elapsed() < quiet {
            return true;
        }
        self.last_sent = Instant::now();
        tx.send(Ok(pb::WatchInteractionsResponse {
            interaction: None,
            resume_token: resume_token(STREAM, self.last),
            heartbeat: true,
            ..Default::default()
        }))
        .await
        .is_ok()
    }

    /// Reads what the stream missed from Postgres, up to the commit horizon.
    pub(super) async fn catch_up(
        &mut self,
        db: &Db,
        tx: &mpsc::Sender<Result<pb::WatchInteractionsResponse, Status>>,
    ) -> Result<bool, Error> {
        loop {
            let (customer, branch) = match &self.filter {
                WatchFilter::Customer(c) => (Some(c), None),
                WatchFilter::Branch(b) => (None, Some(b.as_str())),
            };
            let items = db
                .feed_after(self.last, customer, branch, FEED_PAGE)
                .await?;
            let full = items.len() as i64 == FEED_PAGE;
            for item in &items {
                if !self.send(item, tx).await {
                    return Ok(false);
                }
                self.last = self.last.max(item.cursor);
            }
            if !full {
                return Ok(true);
            }
        }
    }
}

/// Feeds one watcher: first what it missed (when resuming), then the live
/// feed; a watcher that falls behind the in-memory feed catches up from
/// Postgres, so it never misses a row. A quiet stream gets heartbeats. Ends
/// when the client goes away, or with UNAVAILABLE when the server drains.
pub(super) async fn deliver(
    db: Db,
    mut watcher: Watcher,
    mut live: broadcast::Receiver<Arc<FeedItem>>,
    catch_up: bool,
    tx: mpsc::Sender<Result<pb::WatchInteractionsResponse, Status>>,
    streams: Streams,
) {
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + streams.heartbeat,
        streams.heartbeat,
    );
    let fail = |e: Error| Err(Status::from(e));
    if catch_up {
        match watcher.catch_up(&db, &tx).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let _ = tx.send(fail(e)).await;
                return;
            }
        }
    }
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(item) => {
                    if !watcher.send(&item, &tx).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    match watcher.catch_up(&db, &tx).await {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => {
                            let _ = tx.send(fail(e)).await;
                            return;
                        }
                    }
                }
                // The feed closes only when the server drains.
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = tx.send(Err(draining_status())).await;
                    return;
                }
            },
            _ = heartbeat.tick() => {
                if !watcher.beat(streams.heartbeat, &tx).await {
                    return;
                }
            }
            _ = streams.draining() => {
                let _ = tx.send(Err(draining_status())).await;
                return;
            }
            _ = tx.closed() => return,
        }
    }
}
