//! The PostgreSQL head store: many replicas share one database.
//!
//! Tables `polyhead_task` (active pointer + history) and `polyhead_version`
//! (immutable artifacts, both files byte for byte), created by versioned migrations
//! applied at open under sqlx's advisory lock, so replicas starting together migrate
//! once. Every change is one transaction that locks the task's row (so two writers
//! never take the same version number or lose an activation) and sends
//! `NOTIFY polyhead_heads, '<task>'`, delivered at commit. A listener connection
//! turns notifications into [`HeadStore::changes`] ticks; it reconnects on its own,
//! and each (re)connection is a tick too, so a replica reconciles after an outage.
//!
//! The trait is blocking; the store owns a one-thread tokio runtime for its
//! connections, so it can be called from any thread (a blocking one, a CLI's main).
//! Each call is bounded ([`CALL_TIMEOUT`]): an unreachable database is an
//! [`Error::Database`] after at most that long, never a hang.
use std::{fmt, future::Future, sync::mpsc, time::Duration};

use sqlx::{
    migrate::Migrator,
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
    PgPool, Row,
};
use tokio::sync::watch;

use super::{check_loadable, ActiveHistory, HeadStore, StoredVersion};
use crate::{validate_task_name, BackboneRef, Error, HeadArtifact, Result};

mod sql;
use sql::{
    big, check_stored, db, ensure_task, history_of, int, lock_task, notify, read_version,
    set_history, versions_of, Embedded, CHANNEL, LIVE_TASKS,
};

/// The longest one store call may take, connecting included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call waits for a pooled connection (PostgreSQL down: fail fast).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A head store in PostgreSQL.
pub struct PgHeadStore {
    pool: PgPool,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    backbone: Option<BackboneRef>,
    location: String,
    changes: watch::Receiver<u64>,
}

impl fmt::Debug for PgHeadStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgHeadStore")
            .field("location", &self.location)
            .field("backbone", &self.backbone)
            .finish_non_exhaustive()
    }
}

impl Drop for PgHeadStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks; the store may be dropped on an async thread.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// `url` with its password replaced by `***`, for logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl PgHeadStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?...`), applies
    /// the schema migrations, and starts listening for changes. With `backbone`,
    /// activations of versions made for another backbone are refused.
    pub fn open(url: &str, backbone: Option<BackboneRef>) -> Result<PgHeadStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("polyhead-store")
            .enable_all()
            .build()
            .map_err(|e| Error::Database {
                msg: format!("starting the store's runtime: {e}"),
            })?;
        let handle = runtime.handle().clone();
        let options: PgConnectOptions = url.parse().map_err(|e| Error::Database {
            msg: format!("{}: {e}", redact(url)),
        })?;
        let pool = {
            let _entered = runtime.enter();
            PgPoolOptions::new()
                .max_connections(5)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with(options.application_name("polyhead"))
        };
        let (tick, changes) = watch::channel(0);
        let store = PgHeadStore {
            pool,
            runtime: Some(runtime),
            handle,
            backbone,
            location: redact(url),
            changes,
        };
        store.run_once(migrate(store.pool.clone()))?;
        store.handle.spawn(listen(store.pool.clone(), tick));
        Ok(store)
    }

    /// Runs `fut` on the store's runtime and waits for it; after a database error,
    /// re-creates the schema if it has gone (the database was dropped and created
    /// again under a running server), so the next call finds it.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let out = self.run_once(fut);
        if matches!(out, Err(Error::Database { .. })) {
            let pool = self.pool.clone();
            let repaired = self.run_once(async move {
                let present: Option<String> =
                    sqlx::query_scalar("SELECT to_regclass('polyhead_version')::text")
                        .fetch_one(&pool)
                        .await
                        .map_err(db)?;
                if present.is_some() {
                    return Ok(false);
                }
                migrate(pool).await.map(|()| true)
            });
            if let Ok(true) = repaired {
                tracing::warn!(store = %self.location, "the head store's schema had gone; created it again");
            }
        }
        out
    }

    /// Runs `fut` on the store's runtime and waits for it, for at most [`CALL_TIMEOUT`].
    fn run_once<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let out = tokio::time::timeout(CALL_TIMEOUT, fut)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Database {
                        msg: format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
                    })
                });
            let _ = tx.send(out);
        });
        rx.recv().map_err(|_| Error::Database {
            msg: "the store's runtime stopped".into(),
        })?
    }

    fn check(&self, task: &str, version: u64) -> Result<()> {
        check_loadable(
            self.read(task, version),
            self.backbone.as_ref(),
            task,
            version,
        )
    }
}

/// Applies the schema migrations (under sqlx's advisory lock: replicas starting
/// together migrate once).
async fn migrate(pool: PgPool) -> Result<()> {
    let migrator = Migrator::new(Embedded)
        .await
        .map_err(|e| Error::Database { msg: e.to_string() })?;
    migrator.run(&pool).await.map_err(|e| Error::Database {
        msg: format!("migrating the schema: {e}"),
    })
}

/// Ticks `tick` on every notification and on every (re)connection, for ever.
async fn listen(pool: PgPool, tick: watch::Sender<u64>) {
    let mut down_since: Option<String> = None;
    loop {
        let listener = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match listener.await {
            Ok(mut l) => {
                if down_since.take().is_some() {
                    tracing::info!("head store notifications: reconnected");
                }
                // Changes made while we were not listening are found by a full sync.
                tick.send_modify(|n| *n += 1);
                while let Ok(Some(_)) = l.try_recv().await {
                    tick.send_modify(|n| *n += 1);
                }
                tracing::warn!("head store notifications: connection lost; reconnecting");
                down_since = Some(String::new());
            }
            Err(e) => {
                let msg = e.to_string();
                if down_since.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(error = %msg, "head store notifications: cannot listen; retrying");
                    down_since = Some(msg);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl HeadStore for PgHeadStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn tasks(&self) -> Result<Vec<String>> {
        Ok(self.active_all()?.into_iter().map(|(t, _)| t).collect())
    }

    fn versions(&self, task: &str) -> Result<Vec<u64>> {
        validate_task_name(task)?;
        let (pool, task) = (self.pool.clone(), task.to_owned());
        self.run(async move { versions_of(&pool, &task).await })
    }

    fn history(&self, task: &str) -> Result<Option<ActiveHistory>> {
        validate_task_name(task)?;
        let (pool, task) = (self.pool.clone(), task.to_owned());
        self.run(async move {
            let row = sqlx::query("SELECT active, previous FROM polyhead_task WHERE name = $1")
                .bind(&task)
                .fetch_optional(&pool)
                .await
                .map_err(db)?;
            Ok(row
                .as_ref()
                .map(history_of)
                .filter(|h| h.version != 0 || !h.previous.is_empty()))
        })
    }

    fn active_all(&self) -> Result<Vec<(String, Result<Option<u64>>)>> {
        let pool = self.pool.clone();
        self.run(async move {
            let rows = sqlx::query(LIVE_TASKS).fetch_all(&pool).await.map_err(db)?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    let active = int(r.get::<i64, _>(1));
                    (r.get::<String, _>(0), Ok((active != 0).then_some(active)))
                })
                .collect())
        })
    }

    fn read(&self, task: &str, version: u64) -> Result<StoredVersion> {
        validate_task_name(task)?;
        let (pool, task) = (self.pool.clone(), task.to_owned());
        self.run(async move { read_version(&pool, &task, version).await })
    }

    fn put(&self, artifact: &HeadArtifact) -> Result<u64> {
        let task = artifact.manifest.task.clone();
        validate_task_name(&task)?;
        let weights = artifact.safetensors()?;
        let (pool, mut head) = (self.pool.clone(), artifact.clone());
        self.run(async move {
            let mut tx = pool.begin().await.map_err(db)?;
            ensure_task(&mut tx, &task).await?;
            // Above every stored number and every number a deleted task had.
            let last: Option<i64> = sqlx::query_scalar(
                "SELECT greatest((SELECT max(version) FROM polyhead_version WHERE task = $1), \
                 (SELECT last_version FROM polyhead_retired WHERE task = $1))",
            )
            .bind(&task)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            let version = int(last.unwrap_or(0)) + 1;
            head.manifest.version = version;
            let json = head.manifest_json();
            sqlx::query(
                "INSERT INTO polyhead_version (task, version, manifest, weights) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&task)
            .bind(big(version)?)
            .bind(json)
            .bind(weights)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            notify(&mut tx, &task).await?;
            tx.commit().await.map_err(db)?;
            Ok(version)
        })
    }

    fn activate(&self, task: &str, version: u64) -> Result<()> {
        validate_task_name(task)?;
        self.check(task, version)?;
        let (pool, task) = (self.pool.clone(), task.to_owned());
        self.run(async move {
            let mut tx = pool.begin().await.map_err(db)?;
            let history = lock_task(&mut tx, &task)
                .await?
                .ok_or_else(|| Error::TaskNotFound(task.clone()))?;
            // The task may have been deleted (and re-created) since the check.
            check_stored(&mut *tx, &task, version).await?;
            if history.version != version {
                set_history(&mut tx, &task, &history.activated(version)).await?;
                notify(&mut tx, &task).await?;
            }
            tx.commit().await.map_err(db)
        })
    }

    fn rollback(&self, task: &str) -> Result<u64> {
        validate_task_name(task)?;
        let (pool, task) = (self.pool.clone(), task.to_owned());
        let backbone = self.backbone.clone();
        self.run(async move {
            let mut tx = pool.begin().await.map_err(db)?;
            let mut history = lock_task(&mut tx, &task)
                .await?
                .ok_or_else(|| Error::TaskNotFound(task.clone()))?;
            let stored = versions_of(&mut *tx, &task).await?;
            if stored.is_empty() {
                return Err(Error::TaskNotFound(task));
            }
            let Some(prev) = history.rollback_target(&stored) else {
                return Err(Error::NothingToRollBack(task));
            };
            let bytes = read_version(&mut *tx, &task, prev).await;
            check_loadable(bytes, backbone.as_ref(), &task, prev)?;
            history.version = prev;
            set_history(&mut tx, &task, &history).await?;
            notify(&mut tx, &task).await?;
            tx.commit().await.map_err(db)?;
            Ok(prev)
        })
    }

    fn delete_task(&self, task: &str) -> Result<usize> {
        validate_task_name(task)?;
        let (pool, task) = (self.pool.clone(), task.to_owned());
        self.run(async move {
            let mut tx = pool.begin().await.map_err(db)?;
            lock_task(&mut tx, &task).await?;
            let versions = versions_of(&mut *tx, &task).await?;
            let n = versions.len();
            let Some(&last) = versions.last() else {
                return Err(Error::TaskNotFound(task));
            };
            sqlx::query(
                "INSERT INTO polyhead_retired (task, last_version) VALUES ($1, $2) \
                 ON CONFLICT (task) DO UPDATE \
                 SET last_version = greatest(polyhead_retired.last_version, EXCLUDED.last_version)",
            )
            .bind(&task)
            .bind(big(last)?)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            sqlx::query("DELETE FROM polyhead_task WHERE name = $1")
                .bind(&task)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            notify(&mut tx, &task).await?;
            tx.commit().await.map_err(db)?;
            Ok(n)
        })
    }

    fn import(&self, task: &str, version: u64, stored: &StoredVersion) -> Result<bool> {
        validate_task_name(task)?;
        if version == 0 {
            return Err(Error::InvalidArtifact("version 0 cannot be stored".into()));
        }
        let (pool, task, stored) = (self.pool.clone(), task.to_owned(), stored.clone());
        self.run(async move {
            let mut tx = pool.begin().await.map_err(db)?;
            ensure_task(&mut tx, &task).await?;
            let inserted = sqlx::query(
                "INSERT INTO polyhead_version (task, version, manifest, weights) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (task, version) DO NOTHING",
            )
            .bind(&task)
            .bind(big(version)?)
            .bind(&stored.manifest)
            .bind(&stored.weights)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
                == 1;
            if !inserted && read_version(&mut *tx, &task, version).await? != stored {
                return Err(Error::Conflict { task, version });
            }
            notify(&mut tx, &task).await?;
            tx.commit().await.map_err(db)?;
            Ok(inserted)
        })
    }

    fn import_history(&self, task: &str, history: &ActiveHistory) -> Result<()> {
        validate_task_name(task)?;
        let (pool, task, history) = (self.pool.clone(), task.to_owned(), history.clone());
        self.run(async move {
            let mut tx = pool.begin().await.map_err(db)?;
            ensure_task(&mut tx, &task).await?;
            if history.version != 0 {
                check_stored(&mut *tx, &task, history.version).await?;
            }
            set_history(&mut tx, &task, &history).await?;
            notify(&mut tx, &task).await?;
            tx.commit().await.map_err(db)
        })
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/heads"),
            "postgres://app:***@db:5432/heads"
        );
        assert_eq!(redact("postgres://db/heads"), "postgres://db/heads");
        assert_eq!(redact("postgres://app@db/heads"), "postgres://app@db/heads");
    }
}
