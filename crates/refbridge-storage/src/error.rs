//! Storage errors. Database facts (unique violations, missing rows) become domain errors here
//! and in the repositories, in one place each; everything else is `Database`.

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database URL must start with sqlite: or postgres:")]
    UnsupportedUrl,
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("cannot migrate the database: {0}")]
    Migrate(String),
    #[error("not found")]
    NotFound,
    #[error("conflict on {0}")]
    Conflict(&'static str),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("file store: {0}")]
    Io(#[from] std::io::Error),
    /// A bulk call (`bulk.rs`) given what it cannot write: a bad name, a short row.
    #[error("bulk write: {0}")]
    Bulk(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StorageError::NotFound,
            other => StorageError::Database(other),
        }
    }
}

impl StorageError {
    /// Whether this is a unique-constraint violation (on any backend).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StorageError::Database(sqlx::Error::Database(db)) => {
                db.kind() == sqlx::error::ErrorKind::UniqueViolation
            }
            StorageError::Conflict(_) => true,
            _ => false,
        }
    }
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {e}"))
}
