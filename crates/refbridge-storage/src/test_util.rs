//! Feature `test-util`: a fresh, empty database for each test, on the backend the test run
//! asks for. One suite, two backends:
//!
//! - `REFBRIDGE_TEST_DATABASE=sqlite` (the default): a SQLite file in the test's folder.
//! - `REFBRIDGE_TEST_DATABASE=postgres` with `REFBRIDGE_TEST_POSTGRES_URL` (an admin URL such
//!   as `postgres://refbridge@127.0.0.1:5432/postgres`, printed by
//!   `scripts/start-postgres.sh`): a new database `refbridge_t_<uuid>` cloned from a migrated
//!   template (`refbridge_tpl_<hash of the migrations>`, built once per set of migrations),
//!   so each test costs one `CREATE DATABASE` rather than a migration run.
//!
//! The returned URL is already migrated; `Store::open` on it finds nothing to do.

use std::hash::{Hash, Hasher};
use std::path::Path;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::{Backend, POSTGRES_MIGRATIONS, Store, StoreOptions};

/// The backend this test run uses.
pub fn test_backend() -> Backend {
    match std::env::var("REFBRIDGE_TEST_DATABASE").as_deref() {
        Ok("postgres") | Ok("postgresql") => Backend::Postgres,
        Ok("sqlite") | Ok("") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("REFBRIDGE_TEST_DATABASE={other}: expected sqlite or postgres"),
    }
}

/// The admin URL of the test PostgreSQL server.
pub fn postgres_admin_url() -> String {
    std::env::var("REFBRIDGE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "REFBRIDGE_TEST_DATABASE=postgres needs REFBRIDGE_TEST_POSTGRES_URL \
             (scripts/test.sh starts a throwaway server and sets it)"
        )
    })
}

/// A fresh migrated database for one test: a SQLite file under `dir`, or a new PostgreSQL
/// database. Panics when it cannot be made (this is test set-up).
pub async fn fresh_database_url(dir: &Path) -> String {
    fresh_database_url_on(test_backend(), dir).await
}

/// [`fresh_database_url`] on the given backend (a test that compares the two).
pub async fn fresh_database_url_on(backend: Backend, dir: &Path) -> String {
    match backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}", dir.join("test.db").display());
            let store = Store::open(&url, &StoreOptions::default())
                .await
                .expect("migrate the SQLite test database");
            store.close().await;
            url
        }
        Backend::Postgres => fresh_postgres_database(&postgres_admin_url()).await,
    }
}

/// A store on a fresh SQLite file (whatever backend the run uses), and the folder that holds
/// it: for the tests of the SQLite writer itself.
#[cfg(test)]
pub(crate) async fn sqlite_file_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url_on(Backend::Sqlite, dir.path()).await;
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    (store, dir)
}

/// Writes one row named `name` in `tx` (a table of one-row-per-key the writer's tests use).
#[cfg(test)]
pub(crate) async fn insert_budget_row(tx: &mut crate::writer::WriteTx, name: &str) {
    sqlx::query("INSERT INTO rate_budget (name, next_slot_us, blocked_until_us) VALUES ($1, 0, 0)")
        .bind(name)
        .execute(&mut **tx)
        .await
        .unwrap();
}

pub use crate::with_database;

async fn fresh_postgres_database(admin_url: &str) -> String {
    let template = ensure_template(admin_url).await;
    let name = format!("refbridge_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(admin_url)
        .await
        .expect("connect to the test PostgreSQL server");
    // CREATE DATABASE from a template fails while anyone else is connected to the template;
    // nobody is after it is built, but retry briefly all the same.
    let mut tries = 0;
    loop {
        match sqlx::raw_sql(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut admin)
            .await
        {
            Ok(_) => break,
            Err(e) if tries < 20 => {
                tries += 1;
                tracing::debug!(error = %e, "create test database: retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("create test database {name}: {e}"),
        }
    }
    let _ = admin.close().await;
    with_database(admin_url, &name)
}

/// The template's name: one per set of PostgreSQL migrations.
fn template_name() -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for m in POSTGRES_MIGRATIONS.iter() {
        m.version.hash(&mut h);
        m.checksum.hash(&mut h);
    }
    format!("refbridge_tpl_{:016x}", h.finish())
}

/// Builds the migrated template once (under an advisory lock, so that concurrent test
/// processes build it once), under a temporary name renamed at the end: a half-built template
/// is never used.
async fn ensure_template(admin_url: &str) -> String {
    let name = template_name();
    let mut admin = PgConnection::connect(admin_url)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::query("SELECT pg_advisory_lock(7215001)")
        .execute(&mut admin)
        .await
        .expect("advisory lock");
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut admin)
        .await
        .expect("look for the template");
    if exists.is_none() {
        let building = format!("{name}_building");
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {building}"))
            .execute(&mut admin)
            .await
            .expect("drop a half-built template");
        sqlx::raw_sql(&format!("CREATE DATABASE {building}"))
            .execute(&mut admin)
            .await
            .expect("create the template");
        let store = Store::open(
            &with_database(admin_url, &building),
            &StoreOptions {
                max_connections: 1,
                ..StoreOptions::default()
            },
        )
        .await
        .expect("migrate the template");
        store.close().await;
        // The closed pool's server sessions usually end a moment later, but one has been seen
        // to stay (idle, for minutes): the rename, and every later `CREATE DATABASE ..
        // TEMPLATE`, fail while any session is connected. End them.
        let mut tries = 0;
        loop {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&building)
            .execute(&mut admin)
            .await
            .expect("end the template's sessions");
            match sqlx::raw_sql(&format!("ALTER DATABASE {building} RENAME TO {name}"))
                .execute(&mut admin)
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 20, "rename the template: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    let _ = sqlx::query("SELECT pg_advisory_unlock(7215001)")
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres", "t1"),
            "postgres://u@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "t1"), "postgres://h:1/t1");
    }
}
