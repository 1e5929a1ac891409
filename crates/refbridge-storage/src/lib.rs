#![doc = include_str!("../README.md")]

mod access;
mod audit;
pub mod blobs;
pub mod bulk;
mod error;
mod events;
pub mod files;
mod idempotency;
mod native;
mod patients;
mod payors;
mod plans;
mod reference;
mod referrals;
mod retention;
mod sends;
mod snapshot;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
mod time;
mod tokens;
mod users;
mod views;
mod webhooks;
mod workers;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use futures::FutureExt;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use access::{AccessFilter, PhiAccess};
pub use audit::AuditEvent;
pub use blobs::{
    BlobEntry, BlobError, BlobStream, BlobTarget, Blobs, LocalBlob, S3Config, Staged, StagingWriter,
};
pub use error::StorageError;
pub use events::{EventPage, EventRecord, EventSignal, FeedRead, PrunedEvents, SEQUENCE_BATCH};
pub use files::{BlobWriter, FileStore, StoredBlob};
pub use idempotency::{KeyReservation, KeyedRequest};
pub use patients::{PatientMatch, PatientPutOutcome, PatientRecord};
pub use payors::PayorRecord;
pub use plans::{ArchiveResult, PlanOutcome, PlanPutError, PlanPutResult, PlanRecord, PlanStatus};
pub use reference::{FUNDERS, SERVICE_CODES, TrustedNetworkRead};
pub use referrals::{
    DenyError, FileRecord, IntakeOutcome, IntakeReceipt, ListFilter, NewFile, NewReferral,
    ReferralRecord, ReferralSummary, StatusChange,
};
pub use retention::{PruneReport, RetentionPolicy};
pub use sends::{
    AgencyCheck, ApprovalRecord, ApproveOutcome, ChangeRecord, DoneStep, JobRecord, Lease,
    NewChange, PausedSend, RecordedChange, SendError, StepRecord, terms_hash,
};
pub use time::{format_ts, now, parse_ts};
pub use tokens::TokenRecord;
pub use users::{SessionLimits, SessionRecord, UserRecord};
pub use webhooks::{
    AfterFailure, AttemptRecord, AttemptResult, DeliveryClaim, EndpointRecord, LATENCY_BUCKETS_MS,
    Replay, WebhookMetrics,
};
pub use workers::{
    EVENT_CHANNEL, QueueMetrics, SEND_CHANNEL, SoleWorker, listen_for_events, listen_for_sends,
};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// From a database URL's scheme.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// The statement that opens a write transaction. SQLite's default `BEGIN` is deferred,
    /// and a deferred transaction that reads then writes fails at once with `SQLITE_BUSY`
    /// when another connection wrote in between; `BEGIN IMMEDIATE` takes the write lock up
    /// front and so waits on the busy timeout instead.
    fn begin_write(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// How long a SQLite writer waits for the lock before giving up.
    pub busy_timeout: Duration,
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            busy_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// How long a PostgreSQL session of ours may sit idle inside a transaction before the server
/// ends it. Our transactions do no remote calls and last milliseconds.
const IDLE_TX_MS: u64 = 30_000;

/// The database behind refbridge. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    /// The pool: PostgreSQL's connections, a SQLite database in memory's one connection, or
    /// a SQLite file's readers (its writes go through `writer`'s one connection).
    pool: AnyPool,
    /// Every write, and the reads inside a write transaction ([`writer`]).
    writer: writer::Writer,
    /// Reads outside a transaction ([`Store::reader`]): on a SQLite file, a pool of read-only
    /// connections of its own; otherwise `pool` itself.
    read: AnyPool,
    backend: Backend,
    /// The SQLite database's file (not for `:memory:` or PostgreSQL).
    sqlite_file: Option<std::path::PathBuf>,
    /// Raised when this store's sequencer has positioned events.
    events: EventSignal,
}

impl Store {
    /// Connects (creating a SQLite file and its folder when missing). Does not migrate.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Store, StorageError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).ok_or(StorageError::UnsupportedUrl)?;
        let mut url = url.to_owned();
        let sqlite_file = if backend == Backend::Sqlite {
            prepare_sqlite_path(&mut url)?
        } else {
            None
        };
        let place = describe_url(&url);
        let connect = AnyConnectOptions::from_str(&url)
            .map_err(|e| StorageError::Connect(format!("{place}: {e}")))?
            .log_statements(tracing::log::LevelFilter::Trace);
        // A SQLite file: one writing connection of its own (`writer`), and a pool of
        // read-only connections. WAL lets them read beside the one writer, each on its own
        // connection (and thread), so a read never queues behind a write transaction.
        if let Some(file) = sqlite_file {
            let conn = native::Native::open(
                &file,
                options.busy_timeout,
                &format!(
                    "{} {NATIVE_WRITER_SETTINGS}",
                    sqlite_writer_settings(options.busy_timeout.as_millis())
                ),
            )
            .map_err(|e| StorageError::Connect(format!("{place}: {e}")))?;
            let read = pool_of(&connect, backend, options, Access::ReadOnly)
                .await
                .map_err(|e| StorageError::Connect(format!("{place}: {e}")))?;
            let outside = {
                let (connect, options) = (connect.clone(), options.clone());
                move || {
                    let (connect, options) = (connect.clone(), options.clone());
                    async move { connect_sqlite_writer(&connect, &options).await }.boxed()
                }
            };
            return Ok(Store {
                pool: read.clone(),
                writer: writer::Writer::Sole(std::sync::Arc::new(writer::Sole::new(conn, outside))),
                read,
                backend,
                sqlite_file: Some(file),
                events: EventSignal::default(),
            });
        }
        let pool = match pool_of(&connect, backend, options, Access::ReadWrite).await {
            Ok(pool) => pool,
            // The pool only says it timed out: one direct attempt tells why.
            Err(sqlx::Error::PoolTimedOut) => {
                let cause = match connect_directly(&connect, options).await {
                    Err(e) => e.to_string(),
                    Ok(_) => format!("no connection within {:?}", options.acquire_timeout),
                };
                return Err(StorageError::Connect(format!("{place}: {cause}")));
            }
            Err(e) => return Err(StorageError::Connect(format!("{place}: {e}"))),
        };
        // PostgreSQL, or a SQLite database in memory (one connection's own: it reads and
        // writes through that one).
        Ok(Store {
            writer: writer::Writer::Pool {
                pool: pool.clone(),
                begin: backend.begin_write(),
            },
            read: pool.clone(),
            pool,
            backend,
            sqlite_file: None,
            events: EventSignal::default(),
        })
    }

    /// Connects and applies the embedded migrations.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Store, StorageError> {
        let store = Self::connect(url, options).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StorageError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let mut conn = self.writer.outside_transaction().await?;
        migrator
            .run(&mut *conn)
            .await
            .map_err(|e| StorageError::Migrate(e.to_string()))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.pool.close().await;
        if let writer::Writer::Sole(sole) = &self.writer {
            sole.close().await;
        }
    }

    /// Where a read outside a transaction goes: it sees every committed write, and on SQLite
    /// it does not wait for the writer.
    fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// On a SQLite file, its writer's commits since the store opened (each one fsync, shared
    /// by the writes of its group) and the time they took in all (from `COMMIT` to its
    /// return: the fsync, mostly); `None` on the pool.
    pub fn sqlite_commit_time(&self) -> Option<(u64, Duration)> {
        match &self.writer {
            writer::Writer::Sole(sole) => Some(sole.commit_time()),
            writer::Writer::Pool { .. } => None,
        }
    }

    /// A write transaction.
    async fn begin_write(&self) -> Result<writer::WriteTx, StorageError> {
        Ok(self.writer.begin().await?)
    }

    /// For one write statement: on PostgreSQL a connection of the pool, with no transaction
    /// around the statement; on SQLite a transaction of the writer like any other (it commits
    /// with its group). Call [`writer::WriteTx::commit`] after the statement.
    async fn write_single(&self) -> Result<writer::WriteTx, StorageError> {
        Ok(self.writer.single().await?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

/// The connection pool for `backend`: on SQLite, the one connection of a database in memory
/// ([`Access::ReadWrite`]) or a file's `max_connections` read-only ones.
async fn pool_of(
    connect: &AnyConnectOptions,
    backend: Backend,
    options: &StoreOptions,
    access: Access,
) -> Result<AnyPool, sqlx::Error> {
    let busy_ms = options.busy_timeout.as_millis();
    AnyPoolOptions::new()
        .max_connections(match (backend, access) {
            // A SQLite database in memory is one connection's own (a file's writer is not
            // pooled: `writer::Sole`).
            (Backend::Sqlite, Access::ReadWrite) => 1,
            _ => options.max_connections,
        })
        .acquire_timeout(options.acquire_timeout)
        // sqlx pings an idle connection before handing it out: for SQLite that is one more
        // round trip to the connection's thread per statement or transaction (about a
        // third of all round trips in `bench send`), and an embedded database cannot hang
        // up. PostgreSQL keeps the check: a server restart leaves dead connections.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                match backend {
                    Backend::Postgres => {
                        // A transaction left open (a hung task, a bug) would hold its locks
                        // and the vacuum horizon until the process died: the server ends it.
                        conn.execute(
                            format!("SET idle_in_transaction_session_timeout = {IDLE_TX_MS}")
                                .as_str(),
                        )
                        .await?;
                    }
                    Backend::Sqlite if access == Access::ReadWrite => {
                        set_up_sqlite_writer(conn, busy_ms).await?;
                    }
                    Backend::Sqlite => {
                        // A reader that tried to write would take the lock beside the writer.
                        conn.execute("PRAGMA query_only = ON").await?;
                        conn.execute(format!("PRAGMA busy_timeout = {busy_ms}").as_str())
                            .await?;
                        conn.execute(format!("PRAGMA cache_size = {READER_CACHE_KIB}").as_str())
                            .await?;
                    }
                }
                Ok(())
            })
        })
        .connect_with(connect.clone())
        .await
}

/// SQLite's page cache per connection, in KiB (SQLite's own default is 2 MiB): on a large
/// store every read beyond the hottest pages is otherwise a system call to the kernel's
/// cache. Negative values are sizes, not page counts.
const WRITER_CACHE_KIB: i64 = -65_536;
const READER_CACHE_KIB: i64 = -16_384;

/// One connection, outside any pool, within the acquire timeout.
async fn connect_directly(
    connect: &AnyConnectOptions,
    options: &StoreOptions,
) -> Result<sqlx::AnyConnection, sqlx::Error> {
    tokio::time::timeout(
        options.acquire_timeout,
        <sqlx::AnyConnection as sqlx::Connection>::connect_with(connect),
    )
    .await
    .map_err(|_| {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no connection within {:?}", options.acquire_timeout),
        ))
    })?
}

/// A sqlx connection to a SQLite file set up as its writer, for what runs through sqlx with
/// no transaction open (migrations, `VACUUM INTO`) while [`writer::Sole`] is held idle.
async fn connect_sqlite_writer(
    connect: &AnyConnectOptions,
    options: &StoreOptions,
) -> Result<sqlx::AnyConnection, sqlx::Error> {
    let mut conn = connect_directly(connect, options).await?;
    set_up_sqlite_writer(&mut conn, options.busy_timeout.as_millis()).await?;
    Ok(conn)
}

/// The settings of a connection that writes to SQLite, after `journal_mode = WAL`: the same
/// on the native writer ([`native::Native::open`]) and on a sqlx connection. Every commit
/// reaches the disk before it returns: an intent is durable before its remote call, through
/// a power cut too (WAL's `NORMAL` keeps it only through a crash of the process). The
/// writer's group commit shares one fsync among the writes that wait.
fn sqlite_writer_settings(busy_ms: u128) -> String {
    format!(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = {busy_ms}; PRAGMA cache_size = {WRITER_CACHE_KIB};"
    )
}

/// What the native writer sets beyond [`sqlite_writer_settings`]: its statement and savepoint
/// journals in memory. A group commit holds each joining write behind a savepoint, and SQLite
/// keeps the original of every page a savepoint changes in a sub-journal, by default a
/// temporary file past 64 KiB: two system calls per page on the one writer's turn (about a
/// third of the writer's `pwrite`s in `bench send`, measured with `strace -c`). In memory it
/// holds at most the pages one group changes. Not on the sqlx connection beside it, which
/// runs the migrations: an index built there over a large store sorts in temporary files,
/// not in memory.
const NATIVE_WRITER_SETTINGS: &str = "PRAGMA temp_store = MEMORY;";

/// Sets up a sqlx connection that writes to SQLite ([`sqlite_writer_settings`]).
async fn set_up_sqlite_writer(
    conn: &mut sqlx::AnyConnection,
    busy_ms: u128,
) -> Result<(), sqlx::Error> {
    conn.execute("PRAGMA journal_mode = WAL").await?;
    conn.execute(sqlite_writer_settings(busy_ms).as_str())
        .await?;
    Ok(())
}

/// A PostgreSQL URL (`admin_url`) with its database name replaced by `db`.
pub fn with_database(admin_url: &str, db: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// The file of a `sqlite:` URL (`None` for `:memory:` and other schemes), without opening it.
pub fn sqlite_path_of_url(url: &str) -> Option<std::path::PathBuf> {
    if Backend::of_url(url) != Some(Backend::Sqlite) {
        return None;
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or_default();
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Where a database URL points, for messages: the SQLite file's path, or PostgreSQL's host,
/// port and database (never the user or password).
fn describe_url(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = rest.split_once('?').map_or(rest, |(p, _)| p);
        return format!("SQLite database {path}");
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    format!("PostgreSQL at {rest}")
}

/// `sqlite://path?..` or `sqlite:path`: create the folder, and ask SQLite to create the file.
/// The file's path, unless the database is in memory.
fn prepare_sqlite_path(url: &mut String) -> Result<Option<std::path::PathBuf>, StorageError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Ok(None);
    }
    let file = std::path::PathBuf::from(path);
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StorageError::Connect(format!(
                    "SQLite database {path}: cannot create its folder: {e}"
                ))
            })?;
            tracing::info!(folder = %parent.display(), "created the SQLite database's folder");
        }
    }
    if !query.contains("mode=") {
        url.push(if query.is_empty() { '?' } else { '&' });
        url.push_str("mode=rwc");
    }
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_is_named_by_its_path_or_host_never_its_password() {
        assert_eq!(
            describe_url("sqlite://data/x.db?mode=rwc"),
            "SQLite database data/x.db"
        );
        assert_eq!(
            describe_url("postgres://refbridge:s3cret@db.internal:5433/refbridge?sslmode=require"),
            "PostgreSQL at db.internal:5433/refbridge"
        );
    }

    #[tokio::test]
    async fn an_unreachable_postgres_is_named_with_the_cause() {
        let options = StoreOptions {
            acquire_timeout: std::time::Duration::from_secs(2),
            ..StoreOptions::default()
        };
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!("postgres://u:pw@127.0.0.1:{port}/db");
        let e = Store::connect(&url, &options)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("PostgreSQL at 127.0.0.1:{port}/db")),
            "{e}"
        );
        assert!(!e.contains("pw"), "{e}");
        assert!(
            !e.contains("pool timed out"),
            "the cause, not the pool: {e}"
        );
    }

    #[tokio::test]
    async fn postgres_sessions_end_transactions_left_idle() {
        if test_util::test_backend() != Backend::Postgres {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let url = test_util::fresh_database_url(dir.path()).await;
        let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
        let value: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(value, "30s", "ours, not the server's default");
        store.close().await;
    }
}
