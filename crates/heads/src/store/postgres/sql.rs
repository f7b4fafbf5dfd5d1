//! The store's SQL: the schema migrations, and the statements the store's
//! transactions are made of (each takes the open transaction or a connection).
use std::{borrow::Cow, future::Future, pin::Pin};

use sqlx::{
    migrate::{Migration, MigrationSource, MigrationType},
    postgres::PgRow,
    PgExecutor, Postgres, Row, Transaction,
};

use crate::{store::ActiveHistory, store::StoredVersion, Error, Result};

/// The NOTIFY channel; the payload is the task name.
pub(super) const CHANNEL: &str = "polyhead_heads";
/// The schema, in order; applied once each, recorded in `_sqlx_migrations`.
const MIGRATIONS: [(i64, &str, &str); 2] = [
    (1, "heads", include_str!("../migrations/0001_heads.sql")),
    (2, "retired", include_str!("../migrations/0002_retired.sql")),
];

/// The migrations compiled into the binary (no files needed at run time).
#[derive(Debug)]
pub(super) struct Embedded;

type Resolved<'s> = Pin<
    Box<
        dyn Future<Output = std::result::Result<Vec<Migration>, sqlx::error::BoxDynError>>
            + Send
            + 's,
    >,
>;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> Resolved<'s> {
        let migrations = MIGRATIONS
            .iter()
            .map(|&(version, name, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

pub(super) fn db(e: sqlx::Error) -> Error {
    Error::Database { msg: e.to_string() }
}

pub(super) fn int(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn big(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::InvalidArtifact(format!("version {v} is too large")))
}

/// Locks the task's row for the rest of the transaction; its history, if the task exists.
pub(super) async fn lock_task(
    tx: &mut Transaction<'_, Postgres>,
    task: &str,
) -> Result<Option<ActiveHistory>> {
    let row = sqlx::query("SELECT active, previous FROM polyhead_task WHERE name = $1 FOR UPDATE")
        .bind(task)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    Ok(row.as_ref().map(history_of))
}

/// A task row's `(active, previous)` columns as its history.
pub(super) fn history_of(r: &PgRow) -> ActiveHistory {
    ActiveHistory {
        version: int(r.get::<i64, _>(0)),
        previous: r.get::<Vec<i64>, _>(1).into_iter().map(int).collect(),
    }
}

/// Tasks with at least one stored version and their active version (0 = none), by name.
pub(super) const LIVE_TASKS: &str = "SELECT name, active FROM polyhead_task t \
     WHERE EXISTS (SELECT 1 FROM polyhead_version v WHERE v.task = t.name) \
     ORDER BY name COLLATE \"C\"";

/// Creates the task's row if needed and locks it.
pub(super) async fn ensure_task(
    tx: &mut Transaction<'_, Postgres>,
    task: &str,
) -> Result<ActiveHistory> {
    sqlx::query("INSERT INTO polyhead_task (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(task)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(lock_task(tx, task).await?.unwrap_or_default())
}

pub(super) async fn set_history(
    tx: &mut Transaction<'_, Postgres>,
    task: &str,
    history: &ActiveHistory,
) -> Result<()> {
    let previous = history
        .previous
        .iter()
        .map(|&v| big(v))
        .collect::<Result<Vec<_>>>()?;
    sqlx::query(
        "UPDATE polyhead_task SET active = $2, previous = $3, changed_at = now() WHERE name = $1",
    )
    .bind(task)
    .bind(big(history.version)?)
    .bind(previous)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

pub(super) async fn versions_of(exec: impl PgExecutor<'_>, task: &str) -> Result<Vec<u64>> {
    let rows: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM polyhead_version WHERE task = $1 ORDER BY version")
            .bind(task)
            .fetch_all(exec)
            .await
            .map_err(db)?;
    Ok(rows.into_iter().map(int).collect())
}

/// Fails with [`Error::VersionNotFound`] unless the version is stored (its bytes unread).
pub(super) async fn check_stored(
    exec: impl PgExecutor<'_>,
    task: &str,
    version: u64,
) -> Result<()> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM polyhead_version WHERE task = $1 AND version = $2")
            .bind(task)
            .bind(big(version)?)
            .fetch_optional(exec)
            .await
            .map_err(db)?;
    found.map(drop).ok_or_else(|| Error::VersionNotFound {
        task: task.to_owned(),
        version,
    })
}

pub(super) async fn read_version(
    exec: impl PgExecutor<'_>,
    task: &str,
    version: u64,
) -> Result<StoredVersion> {
    let row = sqlx::query(
        "SELECT manifest, weights FROM polyhead_version WHERE task = $1 AND version = $2",
    )
    .bind(task)
    .bind(big(version)?)
    .fetch_optional(exec)
    .await
    .map_err(db)?;
    row.map(|r| StoredVersion {
        manifest: r.get(0),
        weights: r.get(1),
    })
    .ok_or_else(|| Error::VersionNotFound {
        task: task.to_owned(),
        version,
    })
}

/// Tells every replica that `task` changed; delivered when the transaction commits.
pub(super) async fn notify(tx: &mut Transaction<'_, Postgres>, task: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(task)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}
