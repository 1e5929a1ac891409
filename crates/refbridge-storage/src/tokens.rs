//! API tokens, stored as SHA-256 digests: the token itself is shown once and never kept.

use refbridge_domain::Role;
use sqlx::Row;

use crate::error::{StorageError, corrupt};
use crate::{Store, format_ts, now};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
}

impl Store {
    /// Records a new token under a unique name. `Conflict("api_tokens.name")` when the name is
    /// taken.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
    ) -> Result<TokenRecord, StorageError> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut w = self.write_single().await?;
        let res = sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(name)
        .bind(role.as_str())
        .bind(token_hash)
        .bind(format_ts(now()))
        .execute(&mut *w)
        .await
        .map_err(StorageError::from);
        w.commit().await?;
        match res {
            Ok(_) => Ok(TokenRecord {
                id,
                name: name.to_owned(),
                role,
            }),
            Err(e) if e.is_unique_violation() => Err(StorageError::Conflict("api_tokens.name")),
            Err(e) => Err(e),
        }
    }

    /// The live token with this digest.
    pub async fn find_token(&self, token_hash: &str) -> Result<Option<TokenRecord>, StorageError> {
        let row = sqlx::query(
            "SELECT id, name, role FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| {
            let role: String = r.try_get("role")?;
            Ok(TokenRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                role: Role::parse(&role).ok_or_else(|| corrupt("token role", role))?,
            })
        })
        .transpose()
    }

    /// Every token, live or revoked, oldest first: (record, created at, revoked at).
    pub async fn list_tokens(
        &self,
    ) -> Result<Vec<(TokenRecord, String, Option<String>)>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, name, role, created_at, revoked_at FROM api_tokens ORDER BY created_at, name",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get("role")?;
                Ok((
                    TokenRecord {
                        id: r.try_get("id")?,
                        name: r.try_get("name")?,
                        role: Role::parse(&role).ok_or_else(|| corrupt("token role", role))?,
                    },
                    r.try_get("created_at")?,
                    r.try_get("revoked_at")?,
                ))
            })
            .collect()
    }

    /// Revokes the token with this name; `NotFound` when there is none live.
    pub async fn revoke_token(&self, name: &str) -> Result<(), StorageError> {
        let mut w = self.write_single().await?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(format_ts(now()))
        .bind(name)
        .execute(&mut *w)
        .await?;
        w.commit().await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }
}
