//! The connection pool as the request handlers use it: every connection a request holds is
//! timed, so that the request's time in the database is known (`onebase_request_db_seconds`
//! and the slow-request log line of `observe`). The time counted is from asking for the
//! connection (a wait for a free one included) until it goes back to the pool.

use std::cell::Cell;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, PoolError};

tokio::task_local! {
    static DB_TIME: Cell<Duration>;
}

/// Runs `f`, returning its output and the time it held database connections.
pub async fn measure<F: Future>(f: F) -> (F::Output, Duration) {
    DB_TIME
        .scope(Cell::new(Duration::ZERO), async {
            let out = f.await;
            (out, DB_TIME.try_with(Cell::get).unwrap_or_default())
        })
        .await
}

/// A pool whose connections count their time towards the request that holds them.
#[derive(Clone)]
pub struct Pool(deadpool_postgres::Pool);

impl Pool {
    pub fn new(pool: deadpool_postgres::Pool) -> Self {
        Pool(pool)
    }

    /// The pool itself, for connections taken out of it for good (`Object::take`).
    pub fn untimed(&self) -> &deadpool_postgres::Pool {
        &self.0
    }

    pub async fn get(&self) -> Result<Conn, PoolError> {
        let since = Instant::now();
        match self.0.get().await {
            Ok(obj) => Ok(Conn { obj, since }),
            Err(err) => {
                let _ = DB_TIME.try_with(|t| t.set(t.get() + since.elapsed()));
                Err(err)
            }
        }
    }
}

impl Deref for Pool {
    type Target = deadpool_postgres::Pool;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// A pooled connection, timed until it is dropped.
pub struct Conn {
    obj: Object,
    since: Instant,
}

impl Deref for Conn {
    type Target = Object;
    fn deref(&self) -> &Object {
        &self.obj
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Object {
        &mut self.obj
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let held = self.since.elapsed();
        let _ = DB_TIME.try_with(|t| t.set(t.get() + held));
    }
}

/// Statements one connection keeps prepared at most; past it its cache starts over (the
/// searches of many collections would otherwise grow it without bound, in the server's memory
/// as much as in ours).
const MAX_PREPARED: usize = 256;

/// `sql` prepared once per connection (hot statements: a collection's registry read, its
/// unfiltered search).
pub async fn prepared(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
    if tx.statement_cache.size() >= MAX_PREPARED {
        tx.statement_cache.clear();
    }
    tx.prepare_cached(sql).await
}
