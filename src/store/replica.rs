//! The hot standby that serves reads tolerating staleness, and
//! read-your-writes: the WAL position of each caller's last write, so that
//! the caller's next such read waits (bounded) for the standby to replay it
//! or goes to the primary.

use std::{
    cell::RefCell,
    collections::HashMap,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use secrecy::ExposeSecret;
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::time::Instant;
use tracing::Instrument;

use super::{Conn, Db, statement};
use crate::{config::DatabaseSettings, error::Error, metrics::Metrics};

tokio::task_local! {
    /// Who the current call is for, once its handler has identified the
    /// caller (`identify_caller`): the key of its writes' positions.
    static CALLER: RefCell<Option<String>>;
}

/// Runs `call` with a slot for its caller's identity (set by the RPC layer
/// around each call).
pub(super) async fn with_caller_slot<F: Future>(call: F) -> F::Output {
    CALLER.scope(RefCell::new(None), call).await
}

/// Names the caller of the current call (the principal's subject); outside
/// a call it does nothing.
pub fn identify_caller(subject: &str) {
    let _ = CALLER.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(subject.to_string());
        }
    });
}

fn caller() -> Option<String> {
    CALLER.try_with(|slot| slot.borrow().clone()).ok().flatten()
}

/// How long a read waits for a standby connection at most before it reads
/// the primary instead.
const STANDBY_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(250);

/// The standby, and what read-your-writes remembers.
pub(super) struct Standby {
    pool: PgPool,
    /// How long a caller's read waits for its last write to be replayed.
    wait: Duration,
    written: LastWrites,
    /// After a failure to reach the standby, reads go to the primary until
    /// this instant rather than each paying for a failed connection.
    down_until: Mutex<Option<Instant>>,
    retry_after: Duration,
    metrics: Metrics,
}

impl std::fmt::Debug for Standby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standby")
            .field("pool", &self.pool)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// The WAL position of each caller's last write: at most `capacity` callers
/// (the least recently written is forgotten first), each for `ttl`.
struct LastWrites {
    ttl: Duration,
    capacity: usize,
    written: Mutex<HashMap<String, Written>>,
}

#[derive(Debug, Clone, Copy)]
struct Written {
    /// The primary's WAL insert position (bytes) just after the write's
    /// commit: the standby shows the write once it has replayed this far.
    lsn: i64,
    at: Instant,
}

impl LastWrites {
    fn new(ttl: Duration, capacity: usize) -> LastWrites {
        LastWrites {
            ttl,
            capacity: capacity.max(1),
            written: Mutex::default(),
        }
    }

    fn last_write(&self, caller: &str, now: Instant) -> Option<i64> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        match written.get(caller) {
            Some(w) if now.saturating_duration_since(w.at) < self.ttl => Some(w.lsn),
            Some(_) => {
                written.remove(caller);
                None
            }
            None => None,
        }
    }

    fn remember(&self, caller: &str, lsn: i64, now: Instant) {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if written.len() >= self.capacity && !written.contains_key(caller) {
            written.retain(|_, w| now.saturating_duration_since(w.at) < self.ttl);
            if written.len() >= self.capacity
                && let Some(oldest) = written
                    .iter()
                    .min_by_key(|(_, w)| w.at)
                    .map(|(k, _)| k.clone())
            {
                written.remove(&oldest);
            }
        }
        let entry = written
            .entry(caller.to_string())
            .or_insert(Written { lsn, at: now });
        entry.lsn = entry.lsn.max(lsn);
        entry.at = now;
    }
}

/// Why a read did not go to the standby.
enum Fallback {
    Lagging,
    Unavailable,
}

impl Standby {
    pub(super) fn connect_lazy(
        settings: &DatabaseSettings,
        metrics: Metrics,
    ) -> anyhow::Result<Option<Standby>> {
        let Some(url) = settings
            .read_url
            .as_ref()
            .filter(|url| !url.expose_secret().is_empty())
        else {
            return Ok(None);
        };
        let options = PgConnectOptions::from_str(url.expose_secret())
            .map_err(|e| {
                anyhow::anyhow!("database.read_url (CK__DATABASE__READ_URL) cannot be parsed: {e}")
            })?
            .application_name("customer-knowledge")
            .options([(
                "statement_timeout",
                settings.statement_timeout_ms.to_string(),
            )]);
        // A standby that does not give a connection soon is passed over for
        // the primary rather than waited for (sqlx keeps retrying a refused
        // connection until the acquire timeout).
        let acquire_timeout =
            Duration::from_millis(settings.acquire_timeout_ms).min(STANDBY_ACQUIRE_TIMEOUT);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options);
        Ok(Some(Standby {
            pool,
            wait: Duration::from_millis(settings.read_your_writes_wait_ms),
            written: LastWrites::new(
                Duration::from_secs(settings.read_your_writes_ttl_secs),
                settings.read_your_writes_callers,
            ),
            down_until: Mutex::default(),
            retry_after: Duration::from_millis(settings.health_check_interval_ms.max(100)),
            metrics,
        }))
    }

    fn is_down(&self) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        down.is_some_and(|until| Instant::now() < until)
    }

    fn mark_down(&self) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + self.retry_after);
    }

    /// A standby connection that shows the caller's last write, if there is
    /// one within the wait.
    async fn connection(&self, db: &Db, caller: Option<&str>) -> Result<Conn, Fallback> {
        if self.is_down() {
            return Err(Fallback::Unavailable);
        }
        let mut conn = match db.connection_from(&self.pool).await {
            Ok(conn) => conn,
            Err(Error::DeadlineExceeded) => return Err(Fallback::Lagging),
            Err(_) => {
                self.mark_down();
                return Err(Fallback::Unavailable);
            }
        };
        let Some(lsn) = caller.and_then(|c| self.written.last_write(c, Instant::now())) else {
            return Ok(conn);
        };
        let wait = match super::remaining() {
            Ok(Some(left)) => self.wait.min(left),
            Ok(None) => self.wait,
            Err(_) => return Err(Fallback::Lagging),
        };
        let until = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            // NULL when the server is not in recovery (read_url names a
            // primary): it has every write it will ever have.
            let replayed: Option<i64> =
                sqlx::query_scalar("SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint")
                    .fetch_one(&mut *conn)
                    .instrument(statement("SELECT", "pg_last_wal_replay_lsn"))
                    .await
                    .map_err(|_| {
                        self.mark_down();
                        Fallback::Unavailable
                    })?;
            if replayed.is_none_or(|replayed| replayed >= lsn) {
                return Ok(conn);
            }
            let now = Instant::now();
            if now >= until {
                return Err(Fallback::Lagging);
            }
            tokio::time::sleep(pause.min(until - now)).await;
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

impl Db {
    /// Sends reads that tolerate staleness to the standby at `database.read_url`,
    /// when one is configured.
    pub fn with_standby(
        mut self,
        settings: &DatabaseSettings,
        metrics: Metrics,
    ) -> anyhow::Result<Db> {
        self.standby = Standby::connect_lazy(settings, metrics)?.map(Arc::new);
        Ok(self)
    }

    /// A connection for a read that tolerates staleness (a list, a search,
    /// GetCustomer360, a report): on the standby when one is configured, up,
    /// and has replayed the caller's last write (waiting for that at most
    /// `database.read_your_writes_wait_ms`); else on the primary. The
    /// connection must only read.
    pub async fn acquire_read(&self) -> Result<Conn, Error> {
        let Some(standby) = &self.standby else {
            return self.acquire().await;
        };
        let caller = caller();
        match standby.connection(self, caller.as_deref()).await {
            Ok(conn) => {
                standby.metrics.stale_tolerant_read("standby");
                Ok(conn)
            }
            Err(fallback) => {
                standby.metrics.standby_fallback(match fallback {
                    Fallback::Lagging => "lagging",
                    Fallback::Unavailable => "unavailable",
                });
                standby.metrics.stale_tolerant_read("primary");
                self.acquire().await
            }
        }
    }

    /// Remembers, for the current caller, where the primary's WAL stands
    /// after a write it just committed, so that its next stale-tolerant read
    /// sees that write. Does nothing without a standby (or outside a call).
    pub async fn note_write(&self) {
        if self.standby.is_some() && caller().is_some() {
            self.note_write_at(self.write_position().await);
        }
    }

    /// Where the primary's WAL stands now, after a commit: None without a
    /// standby (nothing to remember), `i64::MAX` when it cannot be read (the
    /// writers then read the primary until their entries expire). For one
    /// commit of many callers' writes (the group commit), read once and
    /// given to each caller's `note_write_at`.
    pub async fn write_position(&self) -> Option<i64> {
        self.standby.as_ref()?;
        // The insert position, not the flushed one: the commit record is
        // inserted before the commit returns, flushed possibly later.
        let lsn = sqlx::query_scalar::<_, i64>(
            "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
        )
        .fetch_one(&self.pool)
        .instrument(statement("SELECT", "pg_current_wal_insert_lsn"))
        .await;
        Some(lsn.unwrap_or(i64::MAX))
    }

    /// `note_write` with a position read already (`write_position`).
    pub fn note_write_at(&self, position: Option<i64>) {
        if let (Some(standby), Some(caller), Some(lsn)) = (&self.standby, caller(), position) {
            standby.written.remember(&caller, lsn, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_writes_keep_the_furthest_position_and_stay_bounded() {
        let writes = LastWrites::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        writes.remember("E1", 100, at(0));
        writes.remember("E1", 50, at(0));
        assert_eq!(
            writes.last_write("E1", at(0)),
            Some(100),
            "a later, smaller position never lowers it"
        );
        writes.remember("E2", 200, at(1));
        // Full: the least recently written caller (E1) makes room.
        writes.remember("E3", 300, at(2));
        assert_eq!(writes.last_write("E1", at(2)), None);
        assert_eq!(writes.last_write("E2", at(2)), Some(200));
        assert_eq!(writes.last_write("E3", at(2)), Some(300));
        // Forgotten once the TTL has passed.
        assert_eq!(writes.last_write("E3", at(62)), None);
        assert!(writes.written.lock().unwrap().len() <= 2);
    }
}
