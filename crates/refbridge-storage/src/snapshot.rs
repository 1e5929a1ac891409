//! What a backup needs from the store: a consistent copy of a SQLite database taken while
//! others write (`VACUUM INTO`, one read transaction), and the bodies a database refers to.

use std::path::{Path, PathBuf};

use refbridge_domain::ContentHash;

use crate::error::StorageError;
use crate::{Backend, Store};

impl Store {
    /// The SQLite database's file (not for `:memory:` or PostgreSQL).
    pub fn sqlite_file(&self) -> Option<&Path> {
        self.sqlite_file.as_deref()
    }

    /// Writes a consistent snapshot of this SQLite database to `dest` (which must not exist),
    /// while other connections and processes go on writing.
    pub async fn snapshot_sqlite_into(&self, dest: &Path) -> Result<PathBuf, StorageError> {
        if self.backend != Backend::Sqlite {
            return Err(StorageError::Io(std::io::Error::other(
                "a snapshot with VACUUM INTO is for SQLite; use pg_dump for PostgreSQL",
            )));
        }
        let dest_text = dest.to_str().ok_or_else(|| {
            StorageError::Io(std::io::Error::other(format!(
                "{}: not UTF-8",
                dest.display()
            )))
        })?;
        let mut conn = self.writer.outside_transaction().await?;
        sqlx::query("VACUUM INTO $1")
            .bind(dest_text)
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                StorageError::Io(std::io::Error::other(format!(
                    "VACUUM INTO {}: {e}",
                    dest.display()
                )))
            })?;
        Ok(dest.to_owned())
    }

    /// Every body a referral file refers to.
    pub async fn referenced_blobs(&self) -> Result<Vec<ContentHash>, StorageError> {
        let hashes: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT sha256 FROM referral_files ORDER BY sha256")
                .fetch_all(self.reader())
                .await?;
        hashes
            .iter()
            .map(|h| {
                ContentHash::parse(h)
                    .map_err(|e| StorageError::Corrupt(format!("referral_files.sha256: {e}")))
            })
            .collect()
    }
}
