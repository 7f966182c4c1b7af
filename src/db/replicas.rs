//! Read replicas (`ONEBASE_READ_DATABASE_URL`): searches and the other read-only endpoints read
//! from a streaming replica when it is fresh enough for the tenant; writes, and reads of a
//! tenant that wrote since the replica's data, go to the primary.
//!
//! Freshness is measured, not assumed. A monitor samples the primary's WAL position every
//! `check` interval and each replica's replay position just after; a replica whose replay
//! position has reached the primary's sample taken at `t` holds every transaction committed
//! before `t` ("fresh as of `t`"). A read of tenant T goes to a replica fresh as of a moment
//! after T's last write through this server, and only if the replica answers and its lag
//! (now minus its fresh-as-of moment) is within `max_lag`; otherwise to the primary. So a
//! client reads its own writes, and no read is staler than `max_lag`.
//!
//! Writes are tracked per server process: with several onebase servers on one database, a
//! tenant's read may reach a replica that has not yet replayed a write made through another
//! server (still within `max_lag`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::pool::{Conn, Pool};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// One replica: its pool and what the monitor last learned.
pub struct Replica {
    /// `host:port/dbname`, for logs and metrics (no credentials).
    pub name: String,
    pool: Pool,
    /// The primary's latest moment this replica is known to hold everything before.
    fresh_as_of: Mutex<Option<Instant>>,
    /// It answered the monitor's last query.
    up: AtomicBool,
}

pub struct Replicas {
    members: Vec<Replica>,
    max_lag: Duration,
    check: Duration,
    /// When each tenant last finished a write through this server.
    last_write: Mutex<HashMap<Uuid, Instant>>,
    next: AtomicUsize,
}

/// How the router chose (for the caller's metrics).
pub enum Target {
    Primary,
    Replica(usize),
}

impl Replicas {
    pub fn new(members: Vec<(String, Pool)>, max_lag: Duration, check: Duration) -> Self {
        let members = members
            .into_iter()
            .map(|(name, pool)| Replica {
                name,
                pool,
                fresh_as_of: Mutex::new(None),
                up: AtomicBool::new(false),
            })
            .collect();
        Replicas {
            members,
            max_lag,
            check,
            last_write: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
        }
    }

    /// Notes that `tenant` wrote (call when a write request ends, before its response leaves).
    pub fn wrote(&self, tenant: Uuid) {
        if let Ok(mut map) = self.last_write.lock() {
            map.insert(tenant, Instant::now());
            if map.len() > 100_000 {
                // Entries older than any replica's lag bound no longer decide anything.
                if let Some(horizon) = Instant::now().checked_sub(self.max_lag * 2) {
                    map.retain(|_, at| *at > horizon);
                }
            }
        }
    }

    /// The replica a read of `tenant` may use now, if any (round robin among the eligible).
    fn choose(&self, tenant: Uuid) -> Option<usize> {
        let wrote = self.last_write.lock().ok().and_then(|m| m.get(&tenant).copied());
        let now = Instant::now();
        let n = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|i| (start + i) % n).find(|&i| {
            let r = &self.members[i];
            let Some(fresh) = r.fresh_as_of.lock().ok().and_then(|f| *f) else {
                return false;
            };
            r.up.load(Ordering::Relaxed)
                && now.saturating_duration_since(fresh) <= self.max_lag
                && wrote.is_none_or(|w| fresh > w)
        })
    }

    /// A connection for a read of `tenant`: a fresh replica's, else the primary's. A replica
    /// that does not give one is marked down and the read goes to the primary.
    pub async fn read_conn(&self, primary: &Pool, metrics: &Metrics, tenant: Uuid) -> Result<(Conn, Target), ApiError> {
        if let Some(i) = self.choose(tenant) {
            let replica = &self.members[i];
            match replica.pool.get().await {
                Ok(conn) => {
                    metrics.reads.with_label_values(&["replica"]).inc();
                    return Ok((conn, Target::Replica(i)));
                }
                Err(err) => {
                    replica.up.store(false, Ordering::Relaxed);
                    tracing::warn!(replica = %replica.name, error = %err, "read replica unavailable; reading from the primary");
                }
            }
        }
        metrics.reads.with_label_values(&["primary"]).inc();
        Ok((primary.get().await?, Target::Primary))
    }

    /// Marks replica `i` down after a read on it failed with a lost connection (the monitor
    /// brings it back once it answers).
    pub fn failed(&self, i: usize) {
        down(&self.members[i], "a read on it lost its connection");
    }
}

/// The WAL position as a number of bytes.
const PRIMARY_LSN: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8";
/// A replica's replay position (none on a server that is not in recovery).
const REPLAY_LSN: &str = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8, pg_is_in_recovery()";

/// Watches the replicas for as long as the server runs.
pub fn spawn_monitor(replicas: Arc<Replicas>, primary: Pool, metrics: Arc<Metrics>) {
    tokio::spawn(async move {
        // The primary's recent positions, oldest first, kept for as long as the lag bound.
        let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
        loop {
            let at = Instant::now();
            match primary_lsn(&primary, replicas.check).await {
                Ok(lsn) => samples.push_back((at, lsn)),
                Err(err) => tracing::debug!(error = %err, "sampling the primary's WAL position"),
            }
            while samples.len() > 2
                && samples
                    .front()
                    .is_some_and(|(t, _)| at.saturating_duration_since(*t) > replicas.max_lag * 2)
            {
                samples.pop_front();
            }
            for replica in &replicas.members {
                check(replica, &samples, replicas.check).await;
                let lag = replica
                    .fresh_as_of
                    .lock()
                    .ok()
                    .and_then(|f| *f)
                    .map(|f| at.saturating_duration_since(f).as_secs_f64());
                metrics
                    .replica_lag_seconds
                    .with_label_values(&[&replica.name])
                    .set(lag.unwrap_or(-1.0));
                metrics
                    .replica_up
                    .with_label_values(&[&replica.name])
                    .set(replica.up.load(Ordering::Relaxed) as i64);
            }
            tokio::time::sleep(replicas.check.saturating_sub(at.elapsed())).await;
        }
    });
}

async fn primary_lsn(primary: &Pool, timeout: Duration) -> Result<i64, ApiError> {
    let query = async {
        let client = primary.get().await?;
        Ok::<i64, ApiError>(client.query_one(PRIMARY_LSN, &[]).await?.try_get(0)?)
    };
    tokio::time::timeout(timeout.max(Duration::from_secs(1)), query)
        .await
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("the primary did not answer in time")))?
}

async fn check(replica: &Replica, samples: &VecDeque<(Instant, i64)>, timeout: Duration) {
    let query = async {
        let client = replica.pool.get().await?;
        let row = client.query_one(REPLAY_LSN, &[]).await?;
        Ok::<(Option<i64>, bool), ApiError>((row.try_get(0)?, row.try_get(1)?))
    };
    let answer = tokio::time::timeout(timeout.max(Duration::from_secs(1)), query).await;
    let replay = match answer {
        Ok(Ok(replay)) => replay,
        Ok(Err(err)) => return down(replica, &err.to_string()),
        Err(_) => return down(replica, "no answer in time"),
    };
    if !replica.up.swap(true, Ordering::Relaxed) {
        tracing::info!(replica = %replica.name, "read replica up");
    }
    let fresh = match replay {
        // Not a standby (e.g. the primary itself): as fresh as the newest sample.
        (_, false) => samples.back().map(|(t, _)| *t),
        (Some(lsn), true) => samples.iter().rev().find(|(_, p)| *p <= lsn).map(|(t, _)| *t),
        (None, true) => None,
    };
    if let (Some(fresh), Ok(mut slot)) = (fresh, replica.fresh_as_of.lock()) {
        if slot.is_none_or(|old| fresh > old) {
            *slot = Some(fresh);
        }
    }
}

fn down(replica: &Replica, why: &str) {
    if replica.up.swap(false, Ordering::Relaxed) {
        tracing::warn!(replica = %replica.name, error = why, "read replica down; reads go to the primary");
    }
}
