//! Rows as they are stored, read and written in bulk: what `refbridge bench scale` uses to
//! clone a few referrals made by the real path into a store of a million. Not for the
//! service's own work: these calls know no rule of the domain, only tables and columns.

use crate::writer::WriteTx;
use sqlx::any::AnyRow;
use sqlx::{Column, Row};

use crate::error::StorageError;
use crate::{Backend, Store};

/// One stored value. The schema has text, whole numbers and (PostgreSQL's blob chunks) bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// Rows of one table, each with the same columns in the same order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    pub columns: Vec<String>,
    /// Which columns hold whole numbers (a NULL is bound with its column's type:
    /// PostgreSQL refuses a text NULL for a `BIGINT`).
    pub integer: Vec<bool>,
    pub rows: Vec<Vec<Cell>>,
}

impl Rows {
    /// No rows, the columns of `like`.
    pub fn empty_like(like: &Rows) -> Rows {
        Rows {
            columns: like.columns.clone(),
            integer: like.integer.clone(),
            rows: Vec::new(),
        }
    }
}

/// At most this many bind parameters in one statement (SQLite's limit is 32,766, PostgreSQL's
/// 65,535).
const MAX_PARAMS: usize = 30_000;
/// At most this many rows in one `INSERT`: past a few hundred, a longer statement saves
/// nothing more.
const MAX_ROWS_PER_INSERT: usize = 500;

fn cell_of(row: &AnyRow, i: usize, integer: bool) -> Result<Cell, StorageError> {
    if integer {
        let v: Option<i64> = row.try_get(i)?;
        return Ok(v.map_or(Cell::Null, Cell::Int));
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return Ok(v.map_or(Cell::Null, Cell::Int));
    }
    let v: Option<String> = row.try_get(i)?;
    Ok(v.map_or(Cell::Null, Cell::Text))
}

/// A name of ours (a table or a column), never a value: letters, digits and `_` only.
fn checked_name(name: &str) -> Result<&str, StorageError> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(name)
    } else {
        Err(StorageError::Bulk(format!(
            "not a table or column name: {name:?}"
        )))
    }
}

impl Store {
    /// Every row of `table` whose `column` is `value`, with all its columns.
    pub async fn rows_where(
        &self,
        table: &str,
        column: &str,
        value: &str,
    ) -> Result<Rows, StorageError> {
        let sql = format!(
            "SELECT * FROM {} WHERE {} = $1",
            checked_name(table)?,
            checked_name(column)?
        );
        let rows = sqlx::query(&sql)
            .bind(value)
            .fetch_all(self.reader())
            .await?;
        let mut out = Rows::default();
        if let Some(first) = rows.first() {
            out.columns = first
                .columns()
                .iter()
                .map(|c| c.name().to_owned())
                .collect();
            out.integer = first
                .columns()
                .iter()
                .map(|c| c.type_info().kind().is_integer())
                .collect();
        }
        for r in &rows {
            out.rows.push(
                (0..out.columns.len())
                    .map(|i| cell_of(r, i, out.integer[i]))
                    .collect::<Result<_, _>>()?,
            );
        }
        Ok(out)
    }

    /// The database's size on disk, in bytes (SQLite: the main file's pages; PostgreSQL:
    /// `pg_database_size`). `None` for an in-memory SQLite database.
    pub async fn database_size(&self) -> Result<Option<u64>, StorageError> {
        let bytes: i64 = match self.backend {
            Backend::Postgres => {
                sqlx::query_scalar("SELECT CAST(pg_database_size(current_database()) AS BIGINT)")
                    .fetch_one(&self.pool)
                    .await?
            }
            Backend::Sqlite => {
                if self.sqlite_file.is_none() {
                    return Ok(None);
                }
                sqlx::query_scalar(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                )
                .fetch_one(&self.pool)
                .await?
            }
        };
        Ok(Some(bytes.max(0) as u64))
    }

    /// A write transaction for [`BulkWriter::insert`].
    pub async fn bulk_writer(&self) -> Result<BulkWriter, StorageError> {
        Ok(BulkWriter {
            tx: self.begin_write().await?,
            backend: self.backend,
        })
    }

    /// Brings the planner's statistics where the service's own upkeep would have them after
    /// a bulk load, so that what is measured next runs the plans a store in service runs:
    /// PostgreSQL's `VACUUM ANALYZE` (what autovacuum does after many inserts: statistics,
    /// and the visibility map that index-only scans need); on SQLite nothing, as the service
    /// never gathers statistics there (no `ANALYZE`, no `PRAGMA optimize`) and its queries
    /// are written for the plans SQLite makes without them.
    pub async fn after_bulk_load(&self) -> Result<(), StorageError> {
        if self.backend == Backend::Sqlite {
            return Ok(());
        }
        // Outside a transaction: `VACUUM` cannot run inside one.
        let mut w = self.write_single().await?;
        sqlx::query("VACUUM ANALYZE").execute(&mut *w).await?;
        w.commit().await?;
        Ok(())
    }
}

/// Rows written in one transaction, a multi-row `INSERT` of a fixed size per table (each
/// prepared once per connection and reused), committed by [`BulkWriter::commit`].
pub struct BulkWriter {
    tx: WriteTx,
    backend: Backend,
}

impl BulkWriter {
    /// Inserts `rows` into `table`.
    pub async fn insert(&mut self, table: &str, rows: &Rows) -> Result<(), StorageError> {
        let ncols = rows.columns.len();
        if rows.rows.is_empty() || ncols == 0 {
            return Ok(());
        }
        let table = checked_name(table)?;
        let columns = rows
            .columns
            .iter()
            .map(|c| checked_name(c))
            .collect::<Result<Vec<_>, _>>()?
            .join(", ");
        let per = (MAX_PARAMS / ncols).clamp(1, MAX_ROWS_PER_INSERT);
        for batch in rows.rows.chunks(per) {
            let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
            let mut n = 0;
            for (i, _) in batch.iter().enumerate() {
                sql.push_str(if i == 0 { "(" } else { ", (" });
                for c in 0..ncols {
                    n += 1;
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    match self.backend {
                        // SQLite looks a numbered parameter up by a walk of every name in
                        // the statement (sqlx asks for each one): quadratic in a statement
                        // of thousands. Anonymous ones are taken in order.
                        Backend::Sqlite => sql.push('?'),
                        Backend::Postgres => {
                            sql.push('$');
                            sql.push_str(&n.to_string());
                        }
                    }
                }
                sql.push(')');
            }
            let mut q = sqlx::query(&sql);
            for row in batch {
                if row.len() != ncols {
                    return Err(StorageError::Bulk(format!(
                        "{table}: a row of {} values for {ncols} columns",
                        row.len()
                    )));
                }
                for (cell, integer) in row.iter().zip(&rows.integer) {
                    q = match cell {
                        Cell::Null if *integer => q.bind(None::<i64>),
                        Cell::Null => q.bind(None::<String>),
                        Cell::Int(v) => q.bind(*v),
                        Cell::Text(v) => q.bind(v.as_str()),
                    };
                }
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StorageError> {
        self.tx.commit().await?;
        Ok(())
    }
}
