//! Test support (feature `testing`): a fresh PostgreSQL database per test.
//!
//! The server is the one `POLYHEAD_TEST_DATABASE_URL` names (default
//! `postgres://postgres@127.0.0.1:5432/test`, the CI machine's). A test that needs
//! PostgreSQL fails when it cannot be reached: it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure is a failed test

use sqlx::{Connection, PgConnection};

/// The server tests use unless `POLYHEAD_TEST_DATABASE_URL` says otherwise.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database created for one test and dropped (with its connections) afterwards.
#[derive(Debug)]
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

/// Runs `f` to completion on a runtime of its own thread, so callers may be inside a
/// runtime themselves (`#[tokio::test]`).
fn block_on<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f)
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// `url` with its database replaced by `name` (the query string is kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let host_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[host_end..].find('/') {
        Some(i) => &base[..host_end + i],
        None => base,
    };
    format!("{root}/{name}{query}")
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    ///
    /// # Panics
    /// When the PostgreSQL server cannot be reached or refuses CREATE DATABASE.
    pub fn create() -> TestDatabase {
        let admin = std::env::var("POLYHEAD_TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
        let name = format!("polyhead_test_{:016x}", rand_id());
        let (a, n) = (admin.clone(), name.clone());
        block_on(async move {
            let (admin, name) = (a, n);
            let mut c = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {admin} is needed by this test and cannot be reached: {e}. \
                     Start it (Debian: pg_ctlcluster 15 main start) or set POLYHEAD_TEST_DATABASE_URL."
                )
            });
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await
                .expect("CREATE DATABASE");
        });
        let url = with_database(&admin, &name);
        TestDatabase { admin, name, url }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        block_on(async move {
            if let Ok(mut c) = PgConnection::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut c)
                    .await;
            }
        });
    }
}

/// Runs one SQL statement on the database at `url` (tests that damage a store).
///
/// # Panics
/// When the database cannot be reached or the statement fails.
pub fn execute(url: &str, sql: &str) {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    block_on(async move {
        let mut c = PgConnection::connect(&url).await.expect("connect");
        sqlx::query(&sql)
            .execute(&mut c)
            .await
            .expect("the statement");
    });
}

/// Every file under `root` as (relative path, bytes), sorted; `.lock` files (made by
/// the folder store's locking, not data) are left out. For comparing stores.
pub fn files_under(root: &std::path::Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if !rel.ends_with(".lock") {
                out.push((rel, std::fs::read(&p)?));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5432/test?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
