//! A SQLite file's writing connection, run in the caller's own thread.
//!
//! sqlx's SQLite driver runs each connection on a thread of its own: every statement is a
//! round trip to it (a channel send, a thread wake-up, a reply, a task wake-up), 13.5 µs idle
//! and 30 to 60 µs under load, while SQLite's own work for one of our statements is a few µs.
//! The writer holds the one write lock across those round trips, so they bound every write of
//! the process. Here the writer's statements run in the task that holds the writer, through
//! SQLite's C API (`rusqlite`, on the libsqlite3-sys that sqlx's driver uses), with no thread
//! between: the statements of a transaction follow each other at SQLite's own speed.
//!
//! The store's queries do not change: [`Native::run`] takes a sqlx query (`Execute` over
//! `Any`), binds its `Any` arguments as sqlx's SQLite driver does (`$N` and `?N` by number,
//! other parameters by position) and hands back `Any` rows and results shaped as that driver
//! shapes them (a value's kind from its storage class), so a row reads the same whichever
//! connection ran it. Errors keep SQLite's extended code, so a unique violation is one here
//! as there.
//!
//! What may wait is kept off the async threads: a `COMMIT` (its fsync) and a `BEGIN` that
//! finds the database locked by another process run on the blocking pool
//! ([`Native::blocking`]).

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{OpenFlags, ffi};
use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::{Any, Execute};
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::ext::ustr::UStr;

/// Prepared statements kept per connection: more than the store's distinct write statements,
/// so the ones that recur are never prepared again.
const STATEMENT_CACHE: usize = 512;

/// The writing connection. Cheap to clone (one connection behind a lock, uncontended: the
/// writer's own lock already lets one task at a time use it).
#[derive(Clone)]
pub(crate) struct Native {
    conn: Arc<Mutex<rusqlite::Connection>>,
    busy_timeout: Duration,
}

impl Native {
    /// Opens (creating it when missing) the database file for writing, in WAL, with the
    /// writer's `settings` (PRAGMAs) and its busy timeout.
    pub(crate) fn open(
        file: &Path,
        busy_timeout: Duration,
        settings: &str,
    ) -> Result<Native, sqlx::Error> {
        let conn = rusqlite::Connection::open_with_flags(
            file,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // First, so that the busy timeout holds for the switch to WAL too.
        conn.execute_batch(settings).map_err(error)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(sqlx::Error::Configuration(
                format!("SQLite would not use WAL (journal_mode is {mode})").into(),
            ));
        }
        Ok(Native {
            conn: Arc::new(Mutex::new(conn)),
            busy_timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, rusqlite::Connection> {
        // A panic while holding it cannot leave the connection half changed in a way SQLite
        // does not know about: its transaction state is SQLite's own.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs statements with no parameters (the writer's own `SAVEPOINT`, `RELEASE`,
    /// `ROLLBACK`), here and now; one statement from the cache of prepared ones.
    pub(crate) fn batch(&self, sql: &str) -> Result<(), sqlx::Error> {
        let conn = self.lock();
        if sql.contains(';') {
            return conn.execute_batch(sql).map_err(error);
        }
        conn.prepare_cached(sql)
            .and_then(|mut statement| statement.raw_execute())
            .map(drop)
            .map_err(error)
    }

    /// Opens the write transaction. Here and now when the database is free (always, but for
    /// another process writing the same file); otherwise waits on the blocking pool, up to
    /// the busy timeout.
    pub(crate) async fn begin_immediate(&self) -> Result<(), sqlx::Error> {
        {
            let conn = self.lock();
            conn.busy_timeout(Duration::ZERO).map_err(error)?;
            let now = conn.execute_batch("BEGIN IMMEDIATE");
            if let Err(e) = conn.busy_timeout(self.busy_timeout) {
                // Never leave a transaction open that the writer does not know of.
                if now.is_ok() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                return Err(error(e));
            }
            match now {
                Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {}
                other => return other.map_err(error),
            }
        }
        self.blocking("BEGIN IMMEDIATE").await
    }

    /// Whether no transaction is open on the connection, in SQLite's own view (it ends a
    /// transaction itself on some errors).
    pub(crate) fn in_autocommit(&self) -> bool {
        self.lock().is_autocommit()
    }

    /// Runs `sql` on the blocking pool: for what may wait on the disk or on another process
    /// (`COMMIT`'s fsync), so that no async thread stops for it.
    pub(crate) async fn blocking(&self, sql: &'static str) -> Result<(), sqlx::Error> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.batch(sql))
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("the writer's blocking task ended: {e}")))?
    }

    /// Runs one query: its rows (at most `limit`), then its result, as sqlx's drivers stream
    /// them. One statement: a text of several is refused (sqlx would run each, numbering the
    /// arguments across them; the store has none, and a second statement left out unseen
    /// would be worse than an error). A statement that reads reports no rows changed (sqlx
    /// reports SQLite's count of the last change made before it).
    pub(crate) fn run<'q, E>(
        &self,
        mut query: E,
        limit: Option<usize>,
    ) -> Result<(AnyQueryResult, Vec<AnyRow>), sqlx::Error>
    where
        E: Execute<'q, Any>,
    {
        let sql = query.sql();
        let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
        let started = std::time::Instant::now();
        let conn = self.lock();
        let mut statement = conn.prepare_cached(sql).map_err(error)?;
        if has_more_than_one_statement(&conn, sql)? {
            return Err(sqlx::Error::Protocol(
                "the SQLite writer runs one statement per query".into(),
            ));
        }
        if let Some(arguments) = arguments {
            bind(&mut statement, arguments)?;
        }
        let columns = columns_of(&statement);
        let readonly = statement.readonly();
        let mut rows = Vec::new();
        let mut raw = statement.raw_query();
        while limit.is_none_or(|limit| rows.len() < limit) {
            let Some(row) = raw.next().map_err(error)? else {
                break;
            };
            rows.push(row_of(row, &columns)?);
        }
        drop(raw);
        let changed = if readonly { 0 } else { conn.changes() };
        let took = started.elapsed();
        // The text only: values are bound, never in it.
        if took >= SLOW_STATEMENT {
            tracing::warn!(target: "refbridge_storage::native", sql, elapsed_ms = took.as_millis() as u64, "slow statement on the SQLite writer");
        } else {
            tracing::trace!(target: "refbridge_storage::native", sql, elapsed_us = took.as_micros() as u64, rows = rows.len(), "statement");
        }
        Ok((
            AnyQueryResult {
                rows_affected: changed,
                // As sqlx's `Any` over SQLite: no id.
                last_insert_id: None,
            },
            rows,
        ))
    }

    /// [`Native::run`] as sqlx's connections run a query: when awaited, after a turn of the
    /// task's cooperative budget, so that a long transaction gives its thread back now and
    /// then.
    pub(crate) async fn run_awaited<'q, E>(
        &self,
        query: E,
        limit: Option<usize>,
    ) -> Result<(AnyQueryResult, Vec<AnyRow>), sqlx::Error>
    where
        E: Execute<'q, Any>,
    {
        tokio::task::consume_budget().await;
        self.run(query, limit)
    }
}

/// A statement on the writer this long is logged (sqlx's own threshold).
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

/// Whether `sql` holds a statement after its first (`prepare` reads the first only). Texts
/// without a `;` inside are answered without parsing.
fn has_more_than_one_statement(
    conn: &rusqlite::Connection,
    sql: &str,
) -> Result<bool, sqlx::Error> {
    if !sql.trim_end().trim_end_matches(';').contains(';') {
        return Ok(false);
    }
    let mut batch = rusqlite::Batch::new(conn, sql);
    let mut n = 0;
    while batch.next().map_err(error)?.is_some() {
        n += 1;
    }
    Ok(n > 1)
}

/// Binds `arguments` as sqlx's SQLite driver does: a parameter named `$N` or `?N` takes
/// argument N, an unnamed one the next in turn; one beyond the arguments stays `NULL`.
fn bind(
    statement: &mut rusqlite::CachedStatement<'_>,
    arguments: AnyArguments<'_>,
) -> Result<(), sqlx::Error> {
    let values = arguments.values.0;
    let mut next = 0usize;
    for index in 1..=statement.parameter_count() {
        let n = match statement.parameter_name(index) {
            Some(name) => name
                .strip_prefix('$')
                .or_else(|| name.strip_prefix('?'))
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    sqlx::Error::Protocol(format!("unsupported SQL parameter format: {name}"))
                })?,
            None => {
                next += 1;
                next
            }
        };
        let Some(value) = n.checked_sub(1).and_then(|i| values.get(i)) else {
            break;
        };
        statement
            .raw_bind_parameter(index, sql_value(value)?)
            .map_err(error)?;
    }
    Ok(())
}

/// An `Any` argument as SQLite takes it (as sqlx's SQLite driver maps it).
fn sql_value<'a>(value: &'a AnyValueKind<'_>) -> Result<ToSqlOutput<'a>, sqlx::Error> {
    Ok(match value {
        AnyValueKind::Null(_) => ToSqlOutput::Owned(Value::Null),
        AnyValueKind::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
        AnyValueKind::SmallInt(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
        AnyValueKind::Integer(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
        AnyValueKind::BigInt(i) => ToSqlOutput::Owned(Value::Integer(*i)),
        AnyValueKind::Real(r) => ToSqlOutput::Owned(Value::Real(f64::from(*r))),
        AnyValueKind::Double(d) => ToSqlOutput::Owned(Value::Real(*d)),
        AnyValueKind::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        AnyValueKind::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        other => {
            return Err(sqlx::Error::Protocol(format!(
                "an argument SQLite cannot take: {other:?}"
            )));
        }
    })
}

/// The columns of a statement's rows, named once for all its rows.
struct Columns {
    names: Arc<sqlx_core::HashMap<UStr, usize>>,
    columns: Vec<AnyColumn>,
}

fn columns_of(statement: &rusqlite::CachedStatement<'_>) -> Columns {
    let mut names = sqlx_core::HashMap::default();
    let columns = statement
        .columns()
        .iter()
        .enumerate()
        .map(|(ordinal, column)| {
            let name = UStr::new(column.name());
            names.insert(name.clone(), ordinal);
            AnyColumn {
                ordinal,
                name,
                type_info: AnyTypeInfo {
                    kind: declared_kind(column.decl_type()),
                },
            }
        })
        .collect();
    Columns {
        names: Arc::new(names),
        columns,
    }
}

/// A column's kind from its declared type, as sqlx's SQLite driver reads it.
fn declared_kind(declared: Option<&str>) -> AnyTypeInfoKind {
    let Some(declared) = declared else {
        return AnyTypeInfoKind::Null;
    };
    let t = declared.to_ascii_lowercase();
    match t.as_str() {
        "int4" => AnyTypeInfoKind::Integer,
        "boolean" | "bool" => AnyTypeInfoKind::Bool,
        _ if t.contains("int") => AnyTypeInfoKind::BigInt,
        _ if t.contains("char") || t.contains("clob") || t.contains("text") => {
            AnyTypeInfoKind::Text
        }
        _ if t.contains("blob") => AnyTypeInfoKind::Blob,
        _ if t.contains("real") || t.contains("floa") || t.contains("doub") => {
            AnyTypeInfoKind::Double
        }
        _ => AnyTypeInfoKind::Null,
    }
}

/// A row as sqlx's SQLite driver hands it to `Any`: each value's kind is its storage class.
fn row_of(row: &rusqlite::Row<'_>, columns: &Columns) -> Result<AnyRow, sqlx::Error> {
    let mut values = Vec::with_capacity(columns.columns.len());
    for i in 0..columns.columns.len() {
        let kind = match row.get_ref(i).map_err(error)? {
            ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
            ValueRef::Integer(i) => AnyValueKind::BigInt(i),
            ValueRef::Real(r) => AnyValueKind::Double(r),
            ValueRef::Text(t) => AnyValueKind::Text(Cow::Owned(
                std::str::from_utf8(t)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?
                    .to_owned(),
            )),
            ValueRef::Blob(b) => AnyValueKind::Blob(Cow::Owned(b.to_vec())),
        };
        values.push(AnyValue { kind });
    }
    Ok(AnyRow {
        column_names: columns.names.clone(),
        columns: columns.columns.clone(),
        values,
    })
}

/// SQLite's error, with its extended code, as sqlx's SQLite driver reports it.
#[derive(Debug)]
struct NativeError {
    code: i32,
    message: String,
}

impl std::fmt::Display for NativeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for NativeError {}

impl DatabaseError for NativeError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn error(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            sqlx::Error::Database(Box::new(NativeError {
                code: failure.extended_code,
                message,
            }))
        }
        other => sqlx::Error::Protocol(format!("SQLite: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Executor, Row};

    use crate::test_util::{fresh_database_url_on, insert_budget_row, sqlite_file_store};
    use crate::{Backend, Store, StoreOptions};

    /// What one row holds, read one way or the other.
    #[derive(Debug, PartialEq)]
    struct Read {
        flag: i64,
        small: i32,
        big: i64,
        real: f64,
        text: String,
        blob: Vec<u8>,
        none: Option<String>,
        same: String,
    }

    fn read(row: &sqlx::any::AnyRow) -> Read {
        Read {
            flag: row.try_get("flag").unwrap(),
            small: row.try_get("small").unwrap(),
            big: row.try_get("big").unwrap(),
            real: row.try_get("real").unwrap(),
            text: row.try_get("text").unwrap(),
            blob: row.try_get("blob").unwrap(),
            none: row.try_get("none").unwrap(),
            same: row.try_get("same").unwrap(),
        }
    }

    /// Arguments bound by number (`$N`, one used twice) and by position, of every `Any` kind,
    /// come back from the writer as sqlx's own SQLite driver reads them back from the file.
    #[tokio::test]
    async fn the_writer_binds_and_reads_rows_as_sqlx_does() {
        let (store, _dir) = sqlite_file_store().await;
        let mut tx = store.begin_write().await.unwrap();
        sqlx::query(
            "CREATE TABLE kinds (id INTEGER PRIMARY KEY, flag INTEGER, small INTEGER, big INTEGER, \
             real REAL, text TEXT, blob BLOB, none TEXT, same TEXT)",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        let inserted = sqlx::query(
            "INSERT INTO kinds (id, flag, small, big, real, text, blob, none, same) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $6) RETURNING id, text AS same_text",
        )
        .bind(7_i64)
        .bind(true)
        .bind(-12_i32)
        .bind(i64::MAX)
        .bind(2.5_f64)
        .bind("é, ✓ and a 'quote'")
        .bind(vec![0_u8, 255, 1])
        .bind(None::<String>)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(inserted.try_get::<i64, _>("id").unwrap(), 7);
        assert_eq!(
            inserted.try_get::<String, _>("same_text").unwrap(),
            "é, ✓ and a 'quote'"
        );
        let positional = sqlx::query("SELECT ? + ? AS sum")
            .bind(40_i64)
            .bind(2_i32)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(positional.try_get::<i64, _>("sum").unwrap(), 42);
        let select =
            "SELECT flag, small, big, real, text, blob, none, same FROM kinds WHERE id = $1";
        let on_writer = sqlx::query(select)
            .bind(7_i64)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let on_sqlx = sqlx::query(select)
            .bind(7_i64)
            .fetch_one(store.reader())
            .await
            .unwrap();
        let expected = Read {
            flag: 1,
            small: -12,
            big: i64::MAX,
            real: 2.5,
            text: "é, ✓ and a 'quote'".into(),
            blob: vec![0, 255, 1],
            none: None,
            same: "é, ✓ and a 'quote'".into(),
        };
        assert_eq!(read(&on_writer), expected);
        assert_eq!(read(&on_sqlx), expected);
    }

    /// A statement's changes are counted, a unique violation is one as through sqlx, and a
    /// bad statement is an error the writer goes on after.
    #[tokio::test]
    async fn the_writer_counts_changes_and_reports_errors_as_sqlx_does() {
        let (store, _dir) = sqlite_file_store().await;
        let mut tx = store.begin_write().await.unwrap();
        for name in ["a", "b", "c"] {
            insert_budget_row(&mut tx, name).await;
        }
        let changed = sqlx::query("UPDATE rate_budget SET next_slot_us = $1 WHERE name <> $2")
            .bind(5_i64)
            .bind("a")
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(changed.rows_affected(), 2);
        let read = sqlx::query("SELECT name FROM rate_budget")
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            read.rows_affected(),
            0,
            "a read changes nothing (sqlx would say 2, the last change's count)"
        );
        let unbound = sqlx::query("SELECT $1 AS given, $2 AS missing")
            .bind("x")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            unbound.try_get::<Option<String>, _>("missing").unwrap(),
            None,
            "a parameter past the arguments is NULL, as in sqlx"
        );
        let first: Option<String> =
            sqlx::query_scalar("SELECT name FROM rate_budget ORDER BY name")
                .fetch_optional(&mut *tx)
                .await
                .unwrap();
        assert_eq!(first.as_deref(), Some("a"));
        let plain = (&mut *tx)
            .execute("UPDATE rate_budget SET blocked_until_us = 1")
            .await
            .unwrap();
        assert_eq!(
            plain.rows_affected(),
            3,
            "a query without arguments counts too"
        );
        let two = sqlx::query("UPDATE rate_budget SET next_slot_us = $1; DELETE FROM rate_budget")
            .bind(1_i64)
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert!(two.to_string().contains("one statement"), "{two}");
        tx.commit().await.unwrap();

        let mut tx = store.begin_write().await.unwrap();
        let duplicate = sqlx::query(
            "INSERT INTO rate_budget (name, next_slot_us, blocked_until_us) VALUES ($1, 0, 0)",
        )
        .bind("a")
        .execute(&mut *tx)
        .await
        .unwrap_err();
        assert!(
            crate::StorageError::from(duplicate).is_unique_violation(),
            "a unique violation"
        );
        let bad = sqlx::query("SELECT missing FROM nowhere WHERE x = $1")
            .bind(1_i64)
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert!(bad.to_string().contains("no such table"), "{bad}");
        tx.rollback().await.unwrap();

        let mut tx = store.begin_write().await.unwrap();
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM rate_budget ORDER BY name")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            names,
            ["a", "b", "c"],
            "the refused two statements ran neither"
        );
        tx.commit().await.unwrap();
    }

    /// The writer's settings (every commit fsync'd, foreign keys, its busy timeout and cache)
    /// hold on the native writer and on the sqlx connection that migrations and snapshots
    /// take beside it.
    #[tokio::test]
    async fn both_writing_connections_have_the_writers_settings() {
        let (store, _dir) = sqlite_file_store().await;
        let read = [
            "PRAGMA journal_mode",
            "PRAGMA synchronous",
            "PRAGMA foreign_keys",
            "PRAGMA busy_timeout",
            "PRAGMA cache_size",
        ];
        let expected = ["wal", "2", "1", "10000", "-65536"];
        let mut tx = store.begin_write().await.unwrap();
        let mut native = Vec::new();
        for pragma in read {
            let row = sqlx::query(pragma).fetch_one(&mut *tx).await.unwrap();
            native.push(text_of(&row));
        }
        tx.commit().await.unwrap();
        assert_eq!(native, expected, "on the native writer");
        let mut conn = store.writer.outside_transaction().await.unwrap();
        let mut beside = Vec::new();
        for pragma in read {
            let row = sqlx::query(pragma).fetch_one(&mut *conn).await.unwrap();
            beside.push(text_of(&row));
        }
        assert_eq!(beside, expected, "on the sqlx connection beside it");
    }

    /// The native writer keeps its savepoints' sub-journals in memory (a group commit's
    /// joining writes each sit behind a savepoint); the sqlx connection beside it, which runs
    /// the migrations and their index builds, keeps SQLite's default of temporary files.
    #[tokio::test]
    async fn only_the_native_writer_keeps_its_journals_of_savepoints_in_memory() {
        let (store, _dir) = sqlite_file_store().await;
        let mut tx = store.begin_write().await.unwrap();
        let row = sqlx::query("PRAGMA temp_store")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(text_of(&row), "2", "MEMORY on the native writer");
        tx.commit().await.unwrap();
        let mut conn = store.writer.outside_transaction().await.unwrap();
        let row = sqlx::query("PRAGMA temp_store")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(
            text_of(&row),
            "0",
            "DEFAULT on the sqlx connection beside it"
        );
    }

    fn text_of(row: &sqlx::any::AnyRow) -> String {
        row.try_get::<String, _>(0)
            .or_else(|_| row.try_get::<i64, _>(0).map(|n| n.to_string()))
            .unwrap()
    }

    /// Another process holding the write lock: the writer waits for it (off the async
    /// threads) and goes on once it is free, or fails after its busy timeout and goes on
    /// after; either way the connection keeps its busy timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_waits_for_another_process_holding_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database_url_on(Backend::Sqlite, dir.path()).await;
        let file = crate::sqlite_path_of_url(&url).unwrap();
        let options = StoreOptions {
            busy_timeout: std::time::Duration::from_millis(300),
            ..StoreOptions::default()
        };
        let store = Store::open(&url, &options).await.unwrap();
        let other = rusqlite::Connection::open(&file).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();

        let Err(failed) = store.begin_write().await else {
            panic!("a write began while another process held the lock");
        };
        assert!(
            failed.to_string().contains("locked"),
            "past the busy timeout: {failed}"
        );
        let waiting = tokio::spawn({
            let store = store.clone();
            async move {
                let mut tx = store.begin_write().await.unwrap();
                let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
                insert_budget_row(&mut tx, "after").await;
                tx.commit().await.unwrap();
                timeout
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "the writer waits for the lock");
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(
            waiting.await.unwrap(),
            300,
            "the busy timeout is the store's"
        );
        let stored: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM rate_budget WHERE name = 'after'")
                .fetch_one(store.reader())
                .await
                .unwrap();
        assert_eq!(stored, 1);
    }
}
