//! Where file bodies live: one interface, three backends.
//!
//! - `folder`: the local [`FileStore`] (the embedded default; one machine).
//! - `postgres`: rows of `blob_chunks` (1 MiB each) in the database itself, with a
//!   `blob_contents` row per body; written in one transaction, so a body is whole or absent.
//!   The default on PostgreSQL: any process anywhere reads every file.
//! - `s3`: objects `{prefix}sha256/{hash}` in an S3-compatible bucket (`object_store`).
//!
//! Whatever the backend, a body is first decoded and hashed into the process's working folder
//! (`files_dir/tmp`), never held whole in memory; [`Blobs::commit`] then moves it to the
//! backend, streaming it from that file. Reads stream too ([`Blobs::open`]); a worker that
//! uploads a body to ACCloud gets a local copy ([`Blobs::local_copy`]), checked against its
//! hash. Bodies are immutable and named by their SHA-256, so a commit of a body that is already
//! there only refreshes its time (which keeps a prune of unreferenced bodies off it).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use refbridge_domain::ContentHash;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::files::{FileStore, PutError, StoredBlob};
use crate::{Backend, Store, format_ts, now, parse_ts};

/// Bytes per `blob_chunks` row, and per read from a staged file.
const CHUNK_BYTES: usize = 1024 * 1024;
/// S3 multipart part size (S3 wants at least 5 MiB but for the last), and parts in flight.
const S3_PART_BYTES: usize = 5 * 1024 * 1024;
const S3_PARTS_IN_FLIGHT: usize = 2;

/// Which blob backend a process uses (`[blobs] backend`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobTarget {
    /// The database's choice: `postgres` on PostgreSQL, `folder` on SQLite.
    Auto,
    Folder,
    Postgres,
    S3(S3Config),
}

/// An S3-compatible bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix (`refbridge/`, say); empty for the bucket's root.
    pub prefix: String,
    /// `https://…` (empty: AWS's endpoint for `region`).
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Allow `http://` endpoints (a loopback test server).
    pub allow_http: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} is not in the {1} blob store")]
    NotFound(ContentHash, &'static str),
    #[error("blob {hash} read from the {backend} blob store does not match its hash")]
    Corrupt {
        hash: ContentHash,
        backend: &'static str,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("blob store in the database: {0}")]
    Database(#[from] crate::StorageError),
    #[error("S3 bucket {bucket} at {endpoint}: {detail}")]
    S3 {
        bucket: String,
        endpoint: String,
        /// What failed, and its root cause ([`s3_detail`]).
        detail: String,
    },
    #[error("{0}")]
    Config(String),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A body decoded into the working folder, not yet in the backend ([`Blobs::commit`]).
#[derive(Debug)]
pub struct Staged {
    pub blob: StoredBlob,
    /// The temporary file, for backends other than the folder (removed when dropped).
    tmp: Option<tempfile::TempPath>,
}

/// A body's bytes, in order.
pub type BlobStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A body as a local file, for as long as this value lives.
#[derive(Debug)]
pub struct LocalBlob {
    path: PathBuf,
    _tmp: Option<tempfile::TempPath>,
}

impl LocalBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A body in the backend, with when it was last stored (or touched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub hash: ContentHash,
    pub stored_at: DateTime<Utc>,
}

#[derive(Clone)]
enum Remote {
    Folder,
    Postgres(AnyPool),
    S3(Arc<S3>),
}

struct S3 {
    store: AmazonS3,
    prefix: String,
    bucket: String,
    endpoint: String,
}

/// The file bodies of referral requests, in the configured backend. Cheap to clone.
#[derive(Clone)]
pub struct Blobs {
    local: FileStore,
    remote: Remote,
}

impl fmt::Debug for Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blobs")
            .field("backend", &self.backend_name())
            .field("working_folder", &self.local.root())
            .finish()
    }
}

impl Blobs {
    /// The folder backend over `local`.
    pub fn folder(local: FileStore) -> Blobs {
        Blobs {
            local,
            remote: Remote::Folder,
        }
    }

    /// The backend `target` names, `local` being this process's working folder.
    pub fn open(target: &BlobTarget, local: FileStore, store: &Store) -> Result<Blobs, BlobError> {
        let remote = match target {
            BlobTarget::Auto => match store.backend() {
                Backend::Postgres => Remote::Postgres(store.pool.clone()),
                Backend::Sqlite => Remote::Folder,
            },
            BlobTarget::Folder => Remote::Folder,
            BlobTarget::Postgres => {
                if store.backend() != Backend::Postgres {
                    return Err(BlobError::Config(
                        "blobs.backend = \"postgres\" needs a PostgreSQL database_url".into(),
                    ));
                }
                Remote::Postgres(store.pool.clone())
            }
            BlobTarget::S3(cfg) => Remote::S3(Arc::new(S3::new(cfg)?)),
        };
        Ok(Blobs { local, remote })
    }

    /// Checks that the backend answers (S3: the bucket can be listed), so that a process with
    /// a wrong endpoint, bucket or key refuses to start, naming them, instead of failing its
    /// first intake.
    pub async fn check(&self) -> Result<(), BlobError> {
        match &self.remote {
            Remote::Folder | Remote::Postgres(_) => Ok(()),
            Remote::S3(s3) => {
                let prefix = ObjectPath::from(format!("{}sha256", s3.prefix));
                match s3.store.list(Some(&prefix)).next().await {
                    None | Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(s3.err(e)),
                }
            }
        }
    }

    /// `folder`, `postgres` or `s3`.
    pub fn backend_name(&self) -> &'static str {
        match self.remote {
            Remote::Folder => "folder",
            Remote::Postgres(_) => "postgres",
            Remote::S3(_) => "s3",
        }
    }

    /// This process's working folder (and, for the folder backend, the bodies themselves).
    pub fn local(&self) -> &FileStore {
        &self.local
    }

    fn is_folder(&self) -> bool {
        matches!(self.remote, Remote::Folder)
    }

    /// An anonymous scratch file in the working folder, gone once closed.
    pub fn scratch_file(&self) -> io::Result<std::fs::File> {
        self.local.scratch_file()
    }

    /// Decodes base64 into the working folder ([`FileStore::put_base64`]). Blocking.
    pub fn put_base64(
        &self,
        encoded: impl IntoIterator<Item = u8>,
        max_size: u64,
    ) -> Result<Staged, PutError> {
        let (blob, tmp) = self
            .local
            .decode_base64(encoded, max_size, self.is_folder())?;
        Ok(Staged { blob, tmp })
    }

    /// A writer that streams a body into the working folder; [`StagingWriter::finish`], then
    /// [`Blobs::commit`].
    pub fn writer(&self, max_size: u64) -> io::Result<StagingWriter<'_>> {
        Ok(StagingWriter {
            inner: self.local.writer_installing(max_size, self.is_folder())?,
        })
    }

    /// Puts a staged body into the backend (streamed from its file); nothing to do for the
    /// folder, where staging installed it.
    pub async fn commit(&self, staged: Staged) -> Result<StoredBlob, BlobError> {
        let Staged { blob, tmp } = staged;
        let Some(tmp) = tmp else {
            return Ok(blob);
        };
        match &self.remote {
            Remote::Folder => Ok(blob),
            Remote::Postgres(pool) => {
                pg_put(pool, &blob, &tmp).await?;
                Ok(blob)
            }
            Remote::S3(s3) => {
                s3.put(&blob, &tmp).await?;
                Ok(blob)
            }
        }
    }

    /// Streams the body with this hash.
    pub async fn open_stream(&self, hash: &ContentHash) -> Result<BlobStream, BlobError> {
        match &self.remote {
            Remote::Folder => {
                let path = self.local.path_of(hash);
                let file = match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(BlobError::NotFound(hash.clone(), "folder"));
                    }
                    Err(e) => return Err(io_at(&path)(e)),
                };
                Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
                    file,
                    64 * 1024,
                )))
            }
            Remote::Postgres(pool) => pg_stream(pool.clone(), hash.clone()).await,
            Remote::S3(s3) => s3.stream(hash).await,
        }
    }

    /// The body as a local file: the folder's own, else a copy in the working folder that is
    /// removed when the returned value is dropped, checked against its hash.
    pub async fn local_copy(&self, hash: &ContentHash) -> Result<LocalBlob, BlobError> {
        if self.is_folder() {
            let path = self.local.path_of(hash);
            if !path.is_file() {
                return Err(BlobError::NotFound(hash.clone(), "folder"));
            }
            return Ok(LocalBlob { path, _tmp: None });
        }
        let tmp_dir = self.local.root().join("tmp");
        let tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_at(&tmp_dir))?;
        let (file, tmp) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut stream = self.open_stream(hash).await?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(io_at(&tmp))?;
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io_at(&tmp))?;
        }
        file.flush().await.map_err(io_at(&tmp))?;
        let digest: [u8; 32] = hasher.finalize().into();
        if ContentHash::from_digest(&digest) != *hash {
            return Err(BlobError::Corrupt {
                hash: hash.clone(),
                backend: self.backend_name(),
            });
        }
        Ok(LocalBlob {
            path: tmp.to_path_buf(),
            _tmp: Some(tmp),
        })
    }

    /// Whether the body with this hash is in the backend.
    pub async fn contains(&self, hash: &ContentHash) -> Result<bool, BlobError> {
        match &self.remote {
            Remote::Folder => Ok(self.local.contains(hash)),
            Remote::Postgres(pool) => Ok(sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM blob_contents WHERE sha256 = $1",
            )
            .bind(hash.as_str())
            .fetch_one(pool)
            .await
            .map_err(crate::StorageError::from)?
                > 0),
            Remote::S3(s3) => s3.stored_at(hash).await.map(|t| t.is_some()),
        }
    }

    /// Every body in the backend.
    pub async fn list(&self) -> Result<Vec<BlobEntry>, BlobError> {
        match &self.remote {
            Remote::Folder => {
                let root = self.local.root().join("sha256");
                tokio::task::spawn_blocking(move || folder_list(&root))
                    .await
                    .map_err(|e| BlobError::Config(format!("listing task failed: {e}")))?
            }
            Remote::Postgres(pool) => {
                let rows = sqlx::query("SELECT sha256, stored_at FROM blob_contents")
                    .fetch_all(pool)
                    .await
                    .map_err(crate::StorageError::from)?;
                rows.iter()
                    .map(|r| {
                        let sha: String = r.try_get("sha256").map_err(crate::StorageError::from)?;
                        let at: String =
                            r.try_get("stored_at").map_err(crate::StorageError::from)?;
                        Ok(BlobEntry {
                            hash: ContentHash::parse(&sha).map_err(|e| {
                                BlobError::Config(format!("blob_contents.sha256: {e}"))
                            })?,
                            stored_at: parse_ts(&at)?,
                        })
                    })
                    .collect()
            }
            Remote::S3(s3) => s3.list().await,
        }
    }

    /// Deletes the body if it was stored before `cutoff` and no referral file refers to it,
    /// deciding both at once where the backend allows (PostgreSQL: one transaction; the folder
    /// and S3: the reference checked, then the time, just before deleting). Whether it went.
    pub(crate) async fn delete_unreferenced(
        &self,
        store: &Store,
        hash: &ContentHash,
        cutoff: DateTime<Utc>,
    ) -> Result<bool, BlobError> {
        match &self.remote {
            Remote::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(crate::StorageError::from)?;
                let gone = sqlx::query(
                    "DELETE FROM blob_contents WHERE sha256 = $1 AND stored_at < $2 \
                     AND NOT EXISTS (SELECT 1 FROM referral_files f WHERE f.sha256 = $1)",
                )
                .bind(hash.as_str())
                .bind(format_ts(cutoff))
                .execute(&mut *tx)
                .await
                .map_err(crate::StorageError::from)?
                .rows_affected()
                    > 0;
                if gone {
                    sqlx::query("DELETE FROM blob_chunks WHERE sha256 = $1")
                        .bind(hash.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::StorageError::from)?;
                }
                tx.commit().await.map_err(crate::StorageError::from)?;
                Ok(gone)
            }
            Remote::Folder => {
                if store.blob_referenced(hash).await? {
                    return Ok(false);
                }
                let path = self.local.path_of(hash);
                let modified = match std::fs::metadata(&path).and_then(|m| m.modified()) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                    Err(e) => return Err(io_at(&path)(e)),
                };
                if DateTime::<Utc>::from(modified) >= cutoff {
                    return Ok(false);
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(io_at(&path)(e)),
                }
            }
            Remote::S3(s3) => {
                if store.blob_referenced(hash).await? {
                    return Ok(false);
                }
                match s3.stored_at(hash).await? {
                    Some(at) if at < cutoff => {
                        s3.delete(hash).await?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
        }
    }
}

/// A body being streamed into the working folder.
pub struct StagingWriter<'a> {
    inner: crate::files::BlobWriter<'a>,
}

impl StagingWriter<'_> {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), PutError> {
        self.inner.write(bytes)
    }

    pub fn finish(self) -> Result<Staged, PutError> {
        let (blob, tmp) = self.inner.finish_staged()?;
        Ok(Staged { blob, tmp })
    }
}

fn folder_list(root: &Path) -> Result<Vec<BlobEntry>, BlobError> {
    let mut out = Vec::new();
    let dirs = match std::fs::read_dir(root) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_at(root)(e)),
    };
    for dir in dirs {
        let dir = dir.map_err(io_at(root))?.path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).map_err(io_at(&dir))? {
            let file = file.map_err(io_at(&dir))?;
            let name = file.file_name();
            let Some(hash) = name.to_str().and_then(|n| ContentHash::parse(n).ok()) else {
                continue;
            };
            let modified = file
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(BlobEntry {
                hash,
                stored_at: modified.into(),
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- PostgreSQL

async fn pg_put(pool: &AnyPool, blob: &StoredBlob, tmp: &Path) -> Result<(), BlobError> {
    let db = |e: sqlx::Error| BlobError::Database(e.into());
    let at = format_ts(now());
    // Already there: refreshed, so that a prune running now leaves it.
    let touched = sqlx::query("UPDATE blob_contents SET stored_at = $2 WHERE sha256 = $1")
        .bind(blob.hash.as_str())
        .bind(&at)
        .execute(pool)
        .await
        .map_err(db)?
        .rows_affected();
    if touched > 0 {
        return Ok(());
    }
    let chunks = (blob.size as usize).div_ceil(CHUNK_BYTES).max(1);
    let mut tx = pool.begin().await.map_err(db)?;
    // Another process storing the same body at once: this insert waits for its commit and
    // then finds the row.
    let mine = sqlx::query(
        "INSERT INTO blob_contents (sha256, size, chunks, stored_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(blob.hash.as_str())
    .bind(blob.size as i64)
    .bind(chunks as i64)
    .bind(&at)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected()
        > 0;
    if !mine {
        tx.rollback().await.map_err(db)?;
        return Ok(());
    }
    let mut file = tokio::fs::File::open(tmp).await.map_err(io_at(tmp))?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    for idx in 0..chunks {
        let n = read_full(&mut file, &mut buf).await.map_err(io_at(tmp))?;
        sqlx::query("INSERT INTO blob_chunks (sha256, idx, data) VALUES ($1, $2, $3)")
            .bind(blob.hash.as_str())
            .bind(idx as i64)
            .bind(&buf[..n])
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(())
}

/// Reads until `buf` is full or the file ends; the bytes read.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = file.read(&mut buf[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}

/// One query per chunk: no connection is held while a slow reader takes its time.
async fn pg_stream(pool: AnyPool, hash: ContentHash) -> Result<BlobStream, BlobError> {
    let chunks: Option<i64> =
        sqlx::query_scalar("SELECT chunks FROM blob_contents WHERE sha256 = $1")
            .bind(hash.as_str())
            .fetch_optional(&pool)
            .await
            .map_err(crate::StorageError::from)?;
    let Some(chunks) = chunks else {
        return Err(BlobError::NotFound(hash, "postgres"));
    };
    let stream = futures::stream::try_unfold(0i64, move |idx| {
        let pool = pool.clone();
        let hash = hash.clone();
        async move {
            if idx >= chunks {
                return Ok(None);
            }
            let data: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT data FROM blob_chunks WHERE sha256 = $1 AND idx = $2")
                    .bind(hash.as_str())
                    .bind(idx)
                    .fetch_optional(&pool)
                    .await
                    .map_err(|e| io::Error::other(format!("blob {hash} chunk {idx}: {e}")))?;
            let data = data
                .ok_or_else(|| io::Error::other(format!("blob {hash} chunk {idx} is missing")))?;
            Ok(Some((Bytes::from(data), idx + 1)))
        }
    });
    Ok(Box::pin(stream))
}

// ---------------------------------------------------------------- S3

impl S3 {
    fn new(cfg: &S3Config) -> Result<S3, BlobError> {
        if cfg.bucket.is_empty() {
            return Err(BlobError::Config(
                "blobs.backend = \"s3\" needs blobs.s3.bucket".into(),
            ));
        }
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_allow_http(cfg.allow_http)
            // A transient failure is retried a few times, within seconds: an intake waits on
            // it, and a worker's step retries on its own schedule after.
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                ..object_store::RetryConfig::default()
            });
        if !cfg.endpoint.is_empty() {
            b = b.with_endpoint(&cfg.endpoint);
        }
        if !cfg.access_key_id.is_empty() {
            b = b
                .with_access_key_id(&cfg.access_key_id)
                .with_secret_access_key(&cfg.secret_access_key);
        }
        let endpoint = if cfg.endpoint.is_empty() {
            format!("s3.{}.amazonaws.com", cfg.region)
        } else {
            cfg.endpoint.clone()
        };
        let store = b.build().map_err(|e| BlobError::S3 {
            bucket: cfg.bucket.clone(),
            endpoint: endpoint.clone(),
            detail: s3_detail(&e),
        })?;
        let mut prefix = cfg.prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Ok(S3 {
            store,
            prefix,
            bucket: cfg.bucket.clone(),
            endpoint,
        })
    }

    fn err(&self, e: object_store::Error) -> BlobError {
        BlobError::S3 {
            bucket: self.bucket.clone(),
            endpoint: self.endpoint.clone(),
            detail: s3_detail(&e),
        }
    }

    fn key(&self, hash: &ContentHash) -> ObjectPath {
        ObjectPath::from(format!("{}sha256/{}", self.prefix, hash.as_str()))
    }

    async fn stored_at(&self, hash: &ContentHash) -> Result<Option<DateTime<Utc>>, BlobError> {
        match self.store.head(&self.key(hash)).await {
            Ok(meta) => Ok(Some(meta.last_modified)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn put(&self, blob: &StoredBlob, tmp: &Path) -> Result<(), BlobError> {
        // Already there and recent: nothing to do. Older: stored again, which renews its time
        // (S3 has no touch), so that a prune of unreferenced bodies leaves it alone.
        if let Some(at) = self.stored_at(&blob.hash).await? {
            if now() - at < chrono::Duration::from_std(RECENT).unwrap_or_default() {
                return Ok(());
            }
        }
        let key = self.key(&blob.hash);
        let mut file = tokio::fs::File::open(tmp).await.map_err(io_at(tmp))?;
        if blob.size as usize <= S3_PART_BYTES {
            let mut buf = Vec::with_capacity(blob.size as usize);
            file.read_to_end(&mut buf).await.map_err(io_at(tmp))?;
            self.store
                .put(&key, PutPayload::from(buf))
                .await
                .map_err(|e| self.err(e))?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(|e| self.err(e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, S3_PART_BYTES);
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = read_full(&mut file, &mut buf).await.map_err(io_at(tmp))?;
            if n == 0 {
                break;
            }
            w.wait_for_capacity(S3_PARTS_IN_FLIGHT)
                .await
                .map_err(|e| self.err(e))?;
            w.write(&buf[..n]);
        }
        w.finish().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn stream(&self, hash: &ContentHash) -> Result<BlobStream, BlobError> {
        let got = match self.store.get(&self.key(hash)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BlobError::NotFound(hash.clone(), "s3"));
            }
            Err(e) => return Err(self.err(e)),
        };
        let (bucket, endpoint) = (self.bucket.clone(), self.endpoint.clone());
        Ok(Box::pin(got.into_stream().map_err(move |e| {
            io::Error::other(format!("S3 bucket {bucket} at {endpoint}: {e}"))
        })))
    }

    async fn list(&self) -> Result<Vec<BlobEntry>, BlobError> {
        let prefix = ObjectPath::from(format!("{}sha256", self.prefix));
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let hash = ContentHash::parse(m.location.filename()?).ok()?;
                Some(BlobEntry {
                    hash,
                    stored_at: m.last_modified,
                })
            })
            .collect())
    }

    async fn delete(&self, hash: &ContentHash) -> Result<(), BlobError> {
        match self.store.delete(&self.key(hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}

/// `object_store`'s message, and the root cause beneath it when that says more (a refused
/// connection, a DNS failure): its messages repeat their sources, so the chain is not printed.
fn s3_detail(e: &object_store::Error) -> String {
    let top = e.to_string();
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let root = root.to_string();
    if top.contains(&root) {
        top
    } else {
        format!("{top} (cause: {root})")
    }
}

/// An S3 object younger than this is not stored again when the same body comes.
const RECENT: Duration = Duration::from_secs(3600);

impl Store {
    /// Whether any referral file refers to this body.
    pub(crate) async fn blob_referenced(&self, hash: &ContentHash) -> Result<bool, BlobError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM referral_files WHERE sha256 = $1")
            .bind(hash.as_str())
            .fetch_one(self.reader())
            .await
            .map_err(crate::StorageError::from)?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;
    use crate::StoreOptions;
    use crate::test_util::{fresh_database_url, test_backend};

    /// The test S3 server (`scripts/start-s3.sh`); `None` when not running, which CI forbids.
    pub(crate) fn test_s3() -> Option<S3Config> {
        match std::env::var("REFBRIDGE_TEST_S3_ENDPOINT") {
            Ok(endpoint) => Some(S3Config {
                bucket: std::env::var("REFBRIDGE_TEST_S3_BUCKET")
                    .unwrap_or_else(|_| "refbridge-test".into()),
                prefix: format!("t-{}/", uuid::Uuid::new_v4().simple()),
                endpoint,
                region: "us-east-1".into(),
                access_key_id: "test-key".into(),
                secret_access_key: "test-secret".into(),
                allow_http: true,
            }),
            Err(_) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI must run the S3 tests: scripts/test.sh starts scripts/start-s3.sh"
                );
                eprintln!("REFBRIDGE_TEST_S3_ENDPOINT unset: the s3 backend is not tested");
                None
            }
        }
    }

    /// 11 MiB and 7 bytes: eleven PostgreSQL chunks and the twelfth short, three S3 parts.
    fn body() -> Vec<u8> {
        (0..(11 * CHUNK_BYTES + 7) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    async fn backends(dir: &Path) -> (Store, Vec<Blobs>) {
        let url = fresh_database_url(dir).await;
        let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
        let mut out = Vec::new();
        let local = |name: &str| FileStore::open(dir.join(name)).unwrap();
        out.push(Blobs::open(&BlobTarget::Folder, local("folder"), &store).unwrap());
        if test_backend() == Backend::Postgres {
            out.push(Blobs::open(&BlobTarget::Auto, local("pg"), &store).unwrap());
        }
        if let Some(s3) = test_s3() {
            out.push(Blobs::open(&BlobTarget::S3(s3), local("s3"), &store).unwrap());
        }
        (store, out)
    }

    async fn read_all(blobs: &Blobs, hash: &ContentHash) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = blobs.open_stream(hash).await.unwrap();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    fn leftovers(blobs: &Blobs) -> usize {
        std::fs::read_dir(blobs.local().root().join("tmp"))
            .unwrap()
            .count()
    }

    #[tokio::test]
    async fn every_backend_takes_a_body_in_chunks_and_gives_it_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (store, all) = backends(dir.path()).await;
        let data = body();
        let text = base64::engine::general_purpose::STANDARD.encode(&data);
        for blobs in &all {
            let name = blobs.backend_name();
            let t = text.clone();
            let b = blobs.clone();
            let staged = tokio::task::spawn_blocking(move || b.put_base64(t.into_bytes(), 1 << 30))
                .await
                .unwrap()
                .unwrap();
            let blob = blobs.commit(staged).await.unwrap();
            assert_eq!(blob.size, data.len() as u64, "{name}");
            assert!(blobs.contains(&blob.hash).await.unwrap(), "{name}");
            assert_eq!(read_all(blobs, &blob.hash).await, data, "{name}");
            let copy = blobs.local_copy(&blob.hash).await.unwrap();
            assert_eq!(std::fs::read(copy.path()).unwrap(), data, "{name}");
            let listed = blobs.list().await.unwrap();
            assert_eq!(
                listed.iter().map(|e| &e.hash).collect::<Vec<_>>(),
                vec![&blob.hash],
                "{name}"
            );
            if name != "folder" {
                // Only the backend holds it: the working folder keeps nothing once done.
                assert!(!blobs.local().contains(&blob.hash), "{name}");
                drop(copy);
                assert_eq!(leftovers(blobs), 0, "{name}: tmp/ is left empty");
            }
            let missing = ContentHash::from_digest(&[7; 32]);
            assert!(matches!(
                blobs.open_stream(&missing).await,
                Err(BlobError::NotFound(..))
            ));
            assert!(!blobs.contains(&missing).await.unwrap(), "{name}");
        }
        if test_backend() == Backend::Postgres {
            let chunks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM blob_chunks")
                .fetch_one(&store.pool)
                .await
                .unwrap();
            assert_eq!(chunks, 12, "1 MiB rows");
        }
        store.close().await;
    }

    #[tokio::test]
    async fn a_body_stored_again_is_kept_once_and_its_time_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, all) = backends(dir.path()).await;
        for blobs in &all {
            let name = blobs.backend_name();
            let mut w = blobs.writer(1 << 20).unwrap();
            w.write(b"%PDF-1.4 once").unwrap();
            let first = blobs.commit(w.finish().unwrap()).await.unwrap();
            let before = blobs.list().await.unwrap()[0].stored_at;
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let mut w = blobs.writer(1 << 20).unwrap();
            w.write(b"%PDF-1.4 once").unwrap();
            let again = blobs.commit(w.finish().unwrap()).await.unwrap();
            assert_eq!(first, again);
            assert_eq!(first.media_type, "application/pdf");
            let listed = blobs.list().await.unwrap();
            assert_eq!(listed.len(), 1, "{name}");
            if name != "s3" {
                // S3 stores again only past an hour (it has no touch): see RECENT.
                assert!(listed[0].stored_at > before, "{name}: renewed");
            }
        }
        store.close().await;
    }

    #[tokio::test]
    async fn the_postgres_backend_needs_postgresql() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
        let local = FileStore::open(dir.path().join("f")).unwrap();
        assert!(matches!(
            Blobs::open(&BlobTarget::Postgres, local.clone(), &store),
            Err(BlobError::Config(_))
        ));
        let auto = Blobs::open(&BlobTarget::Auto, local, &store).unwrap();
        assert_eq!(auto.backend_name(), "folder");
        store.close().await;
    }

    #[tokio::test]
    async fn a_bucket_that_does_not_answer_is_named_at_start() {
        let Some(mut cfg) = test_s3() else { return };
        cfg.bucket = "no-such-bucket".into();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
        let local = FileStore::open(dir.path().join("f")).unwrap();
        let endpoint = cfg.endpoint.clone();
        let blobs = Blobs::open(&BlobTarget::S3(cfg), local.clone(), &store).unwrap();
        let err = blobs.check().await.unwrap_err().to_string();
        assert!(
            err.contains("no-such-bucket") && err.contains(&endpoint),
            "{err}"
        );
        let good = Blobs::open(&BlobTarget::S3(test_s3().unwrap()), local, &store).unwrap();
        good.check().await.unwrap();
        store.close().await;
    }

    #[test]
    fn s3_settings_hide_the_secret() {
        let cfg = S3Config {
            bucket: "b".into(),
            prefix: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: "AKIA".into(),
            secret_access_key: "very-secret".into(),
            allow_http: false,
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
