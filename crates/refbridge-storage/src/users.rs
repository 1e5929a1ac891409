//! People who use the console, their sessions, and failed sign-ins. Passwords arrive hashed
//! (argon2id, by the caller); session ids arrive as the SHA-256 of the cookie's value.

use std::time::Duration;

use chrono::{DateTime, Utc};
use refbridge_domain::Role;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{StorageError, corrupt};
use crate::{Store, format_ts, now, parse_ts};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A live session and who it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub user: UserRecord,
    /// The token every form of the session must carry.
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
}

/// How long a session lives: since its last request, and at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle: Duration,
    pub absolute: Duration,
}

fn user_from_row(r: &AnyRow) -> Result<UserRecord, StorageError> {
    let role: String = r.try_get("role")?;
    let disabled: Option<String> = r.try_get("disabled_at")?;
    let created: String = r.try_get("created_at")?;
    Ok(UserRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("user role", role))?,
        disabled: disabled.is_some(),
        created_at: parse_ts(&created)?,
    })
}

fn ago(d: Duration) -> String {
    format_ts(now() - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
}

impl Store {
    /// `Conflict("users.name")` when the name is taken.
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<UserRecord, StorageError> {
        let id = uuid::Uuid::now_v7().to_string();
        let at = now();
        let mut w = self.write_single().await?;
        let res = sqlx::query(
            "INSERT INTO users (id, name, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(format_ts(at))
        .execute(&mut *w)
        .await
        .map_err(StorageError::from);
        w.commit().await?;
        match res {
            Ok(_) => Ok(UserRecord {
                id,
                name: name.to_owned(),
                role,
                disabled: false,
                created_at: at,
            }),
            Err(e) if e.is_unique_violation() => Err(StorageError::Conflict("users.name")),
            Err(e) => Err(e),
        }
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>, StorageError> {
        let rows =
            sqlx::query("SELECT id, name, role, disabled_at, created_at FROM users ORDER BY name")
                .fetch_all(self.reader())
                .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Disables the user and ends their sessions. `NotFound` when no enabled user has it.
    pub async fn disable_user(&self, name: &str) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        let ts = format_ts(now());
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM users WHERE name = $1 AND disabled_at IS NULL")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(id) = id else {
            return Err(StorageError::NotFound);
        };
        sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(&ts)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE console_sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL",
        )
        .bind(&ts)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The enabled user of this name, with the password hash to check.
    pub async fn user_for_sign_in(
        &self,
        name: &str,
    ) -> Result<Option<(UserRecord, String)>, StorageError> {
        let row = sqlx::query(
            "SELECT id, name, role, disabled_at, created_at, password_hash FROM users \
             WHERE name = $1 AND disabled_at IS NULL",
        )
        .bind(name)
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    pub async fn create_session(
        &self,
        id_hash: &str,
        user_id: &str,
        csrf_token: &str,
    ) -> Result<(), StorageError> {
        let ts = format_ts(now());
        let mut w = self.write_single().await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, user_id, csrf_token, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(&ts)
        .execute(&mut *w)
        .await?;
        w.commit().await?;
        Ok(())
    }

    /// The live session with this id, if it has been used within `limits.idle`, began
    /// within `limits.absolute` and its user is enabled; using it counts as activity.
    pub async fn touch_session(
        &self,
        id_hash: &str,
        limits: SessionLimits,
    ) -> Result<Option<SessionRecord>, StorageError> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.role, u.disabled_at, u.created_at, s.csrf_token, \
             s.created_at AS session_created FROM console_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = $1 AND s.ended_at IS NULL AND u.disabled_at IS NULL \
             AND s.last_seen_at >= $2 AND s.created_at >= $3",
        )
        .bind(id_hash)
        .bind(ago(limits.idle))
        .bind(ago(limits.absolute))
        .fetch_optional(self.reader())
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let created: String = r.try_get("session_created")?;
        let session = SessionRecord {
            user: user_from_row(&r)?,
            csrf_token: r.try_get("csrf_token")?,
            created_at: parse_ts(&created)?,
        };
        let mut w = self.write_single().await?;
        sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE id_hash = $2")
            .bind(format_ts(now()))
            .bind(id_hash)
            .execute(&mut *w)
            .await?;
        w.commit().await?;
        Ok(Some(session))
    }

    pub async fn end_session(&self, id_hash: &str) -> Result<(), StorageError> {
        let mut w = self.write_single().await?;
        sqlx::query(
            "UPDATE console_sessions SET ended_at = $1 WHERE id_hash = $2 AND ended_at IS NULL",
        )
        .bind(format_ts(now()))
        .bind(id_hash)
        .execute(&mut *w)
        .await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn record_sign_in_failure(
        &self,
        user_name: &str,
        address: &str,
    ) -> Result<(), StorageError> {
        let mut w = self.write_single().await?;
        sqlx::query(
            "INSERT INTO sign_in_failures (id, user_name, address, at) VALUES ($1, $2, $3, $4)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(user_name)
        .bind(address)
        .bind(format_ts(now()))
        .execute(&mut *w)
        .await?;
        w.commit().await?;
        Ok(())
    }

    /// Failed sign-ins within `window`: (for this user name, from this address).
    pub async fn recent_sign_in_failures(
        &self,
        user_name: &str,
        address: &str,
        window: Duration,
    ) -> Result<(i64, i64), StorageError> {
        let since = ago(window);
        let by_user: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sign_in_failures WHERE user_name = $1 AND at >= $2",
        )
        .bind(user_name)
        .bind(&since)
        .fetch_one(self.reader())
        .await?;
        let by_address: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sign_in_failures WHERE address = $1 AND at >= $2",
        )
        .bind(address)
        .bind(&since)
        .fetch_one(self.reader())
        .await?;
        Ok((by_user, by_address))
    }
}

impl Store {
    /// The names of these patients (first, last), for lists that show them.
    pub async fn patient_names(
        &self,
        ids: &[refbridge_domain::PatientId],
    ) -> Result<
        std::collections::HashMap<refbridge_domain::PatientId, (String, String)>,
        StorageError,
    > {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let list: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, first_name, last_name FROM patients WHERE id IN ({})",
            list.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id.to_string());
        }
        let rows = q.fetch_all(self.reader()).await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let id = refbridge_domain::PatientId::parse(&id)
                    .map_err(|e| corrupt("patient id", e))?;
                Ok((id, (r.try_get("first_name")?, r.try_get("last_name")?)))
            })
            .collect()
    }
}

impl Store {
    /// Every agency that has sent a referral (AlayaMarket org id, the name it last sent), by
    /// name: kept at intake, so reading it costs the number of agencies.
    pub async fn agencies(&self) -> Result<Vec<(String, String)>, StorageError> {
        let rows =
            sqlx::query("SELECT org_id AS agency_org_id, name FROM agencies ORDER BY name, org_id")
                .fetch_all(self.reader())
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("agency_org_id")?, r.try_get("name")?)))
            .collect()
    }
}
