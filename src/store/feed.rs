//! One LISTEN connection per process: it reads newly committed interactions
//! in commit-safe order and fans them out in memory to every interaction
//! watcher, and wakes knowledge watchers, who read what they may see.

use std::{sync::Arc, time::Duration};

use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, watch};

use super::{
    Db,
    interactions::{FEED_CHANNEL, FeedCursor, FeedItem},
    knowledge::KNOWLEDGE_CHANNEL,
};

/// Rows read per feed query.
pub const FEED_PAGE: i64 = 1000;
/// NOTIFY wakes the feed at once; this poll also picks up rows that were
/// held back behind a transaction that was still running.
const POLL: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct ChangeFeed {
    tx: broadcast::Sender<Arc<FeedItem>>,
    knowledge: watch::Receiver<u64>,
}

impl ChangeFeed {
    /// Starts the feed task; it ends when `stopping` turns true.
    pub fn start(db: Db, stopping: watch::Receiver<bool>) -> ChangeFeed {
        let (tx, _) = broadcast::channel(4096);
        let (knowledge_tx, knowledge) = watch::channel(0);
        tokio::spawn(run(db, tx.clone(), knowledge_tx, stopping));
        ChangeFeed { tx, knowledge }
    }

    /// Changes (a counter) each time knowledge changes are committed.
    pub fn knowledge_wakeups(&self) -> watch::Receiver<u64> {
        self.knowledge.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        self.tx.subscribe()
    }
}

async fn listen(db: &Db) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(db.pool()).await.ok()?;
    listener
        .listen_all([FEED_CHANNEL, KNOWLEDGE_CHANNEL])
        .await
        .ok()?;
    Some(listener)
}

async fn run(
    db: Db,
    tx: broadcast::Sender<Arc<FeedItem>>,
    knowledge: watch::Sender<u64>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut cursor: Option<FeedCursor> = None;
    let mut listener: Option<PgListener> = None;
    while !*stopping.borrow() {
        if listener.is_none() {
            listener = listen(&db).await;
        }
        if tx.receiver_count() == 0 {
            // Nobody watches: skip ahead instead of reading rows nobody wants.
            // A watcher with a resume token catches up by itself.
            cursor = db.feed_start().await.ok();
        } else if let Some(mut at) = cursor {
            loop {
                match db.feed_after(at, None, None, FEED_PAGE).await {
                    Ok(items) => {
                        let full = items.len() as i64 == FEED_PAGE;
                        for item in items {
                            at = item.cursor;
                            let _ = tx.send(Arc::new(item));
                        }
                        if !full {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "interaction feed read failed; retrying");
                        break;
                    }
                }
            }
            cursor = Some(at);
        } else {
            cursor = db.feed_start().await.ok();
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l
                    .recv()
                    .await
                    .map(|n| n.channel() == KNOWLEDGE_CHANNEL)
                    .map_err(|_| ()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = notified => match result {
                Ok(true) => knowledge.send_modify(|n| *n = n.wrapping_add(1)),
                Ok(false) => {}
                Err(()) => listener = None,
            },
            _ = tokio::time::sleep(POLL) => {}
            _ = stopping.changed() => {}
        }
    }
}
