//! `refbridge backup --to DIR` and `refbridge restore --from DIR`, for the embedded SQLite
//! database (PostgreSQL: pg_dump and the blob backend's own backup; README, "Deploying").
//!
//! A backup is taken while the service runs: the database is copied with `VACUUM INTO` (one
//! read transaction, so a consistent snapshot whatever is being written meanwhile), then the
//! file bodies *that snapshot* refers to are copied from the blob backend. Bodies are
//! immutable and named by their hash, and a referenced body is never pruned, so they are there
//! to copy however long that takes; each is checked against its hash on the way. The manifest
//! is written last: a folder without one is not a finished backup.
//!
//! ```text
//! DIR/manifest.json          format, when, counts
//! DIR/refbridge.db           the database
//! DIR/files/sha256/ab/ab…    the bodies it refers to
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use refbridge_domain::ContentHash;
use refbridge_storage::{Backend, FileStore, Store, StoreOptions};
use serde::{Deserialize, Serialize};

use crate::config::Config;

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// An empty or new folder for the backup.
    #[arg(long)]
    pub to: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// A folder written by `refbridge backup`.
    #[arg(long)]
    pub from: PathBuf,
}

const MANIFEST: &str = "manifest.json";
const DATABASE: &str = "refbridge.db";
const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    created_at: String,
    database: String,
    blobs: usize,
    blob_bytes: u64,
}

fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("{}", dir.display())),
    }
}

pub async fn backup(cfg: Config, args: BackupArgs) -> anyhow::Result<()> {
    if Backend::of_url(cfg.database_url.expose()) != Some(Backend::Sqlite) {
        bail!(
            "database_url is PostgreSQL: back it up with pg_dump, and the files with the blob \
             backend's own backup (README, \"Deploying\")"
        );
    }
    if !is_empty_dir(&args.to)? {
        bail!(
            "{} is not empty: a backup goes to a new or empty folder",
            args.to.display()
        );
    }
    std::fs::create_dir_all(&args.to).with_context(|| format!("{}", args.to.display()))?;
    let state = crate::open_state(&cfg).await?;
    let db_path = args.to.join(DATABASE);
    state.store.snapshot_sqlite_into(&db_path).await?;

    let snapshot = open_sqlite(&db_path).await?;
    let hashes = snapshot.referenced_blobs().await;
    snapshot.close().await;
    let hashes = hashes?;

    let out = FileStore::open(args.to.join("files"))
        .with_context(|| format!("{}", args.to.join("files").display()))?;
    let mut bytes = 0;
    for hash in &hashes {
        let mut stream = state
            .files
            .open_stream(hash)
            .await
            .with_context(|| format!("blob {hash}"))?;
        let mut w = out
            .writer(u64::MAX)
            .with_context(|| format!("{}", out.root().display()))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("blob {hash}"))?;
            w.write(&chunk)
                .with_context(|| format!("blob {hash} into {}", out.root().display()))?;
        }
        let blob = w
            .finish()
            .with_context(|| format!("blob {hash} into {}", out.root().display()))?;
        if blob.hash != *hash {
            bail!(
                "blob {hash} read from the {} blob store has another hash",
                state.files.backend_name()
            );
        }
        bytes += blob.size;
    }
    let manifest = Manifest {
        format: FORMAT,
        created_at: refbridge_storage::format_ts(refbridge_storage::now()),
        database: DATABASE.to_owned(),
        blobs: hashes.len(),
        blob_bytes: bytes,
    };
    write_manifest(&args.to, &manifest)?;
    tracing::info!(to = %args.to.display(), blobs = hashes.len(), blob_bytes = bytes, "backup written");
    println!(
        "backup of {} written to {}: the database and {} file bodies ({} bytes)",
        db_display(&cfg),
        args.to.display(),
        hashes.len(),
        bytes
    );
    state.store.close().await;
    Ok(())
}

pub async fn restore(cfg: Config, args: RestoreArgs) -> anyhow::Result<()> {
    let manifest_path = args.from.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "{}: not a finished refbridge backup (no manifest)",
            manifest_path.display()
        )
    })?;
    let manifest: Manifest =
        serde_json::from_str(&text).with_context(|| format!("{}", manifest_path.display()))?;
    if manifest.format != FORMAT {
        bail!(
            "{}: backup format {} (this refbridge reads {FORMAT})",
            manifest_path.display(),
            manifest.format
        );
    }
    let Some(db_file) = refbridge_storage::sqlite_path_of_url(cfg.database_url.expose()) else {
        bail!("database_url must be a sqlite: file to restore into (PostgreSQL: pg_restore)");
    };
    if db_file.exists() {
        bail!(
            "{} exists: restore goes into an empty data folder",
            db_file.display()
        );
    }
    if !is_empty_dir(&cfg.files_dir)? {
        bail!(
            "files_dir {} is not empty: restore goes into an empty data folder",
            cfg.files_dir.display()
        );
    }
    let dir = db_file.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let source = args.from.join(&manifest.database);
    let partial = db_file.with_extension("restoring");
    std::fs::copy(&source, &partial)
        .with_context(|| format!("copy {} to {}", source.display(), partial.display()))?;
    std::fs::rename(&partial, &db_file).with_context(|| format!("{}", db_file.display()))?;

    let state = crate::open_state(&cfg).await?;
    let files_root = args.from.join("files").join("sha256");
    let mut restored = 0usize;
    for path in walk(&files_root)? {
        let Some(hash) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| ContentHash::parse(n).ok())
        else {
            continue;
        };
        let mut file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("{}", path.display()))?;
        let mut w = state
            .files
            .writer(u64::MAX)
            .with_context(|| format!("{}", cfg.files_dir.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            use tokio::io::AsyncReadExt;
            let n = file
                .read(&mut buf)
                .await
                .with_context(|| format!("{}", path.display()))?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n])
                .with_context(|| format!("{}", cfg.files_dir.display()))?;
        }
        let staged = w
            .finish()
            .with_context(|| format!("{}", cfg.files_dir.display()))?;
        if staged.blob.hash != hash {
            bail!("{}: content does not match its name", path.display());
        }
        state.files.commit(staged).await?;
        restored += 1;
    }
    for hash in state.store.referenced_blobs().await? {
        if !state.files.contains(&hash).await? {
            bail!("the backup lacks blob {hash}, which a referral refers to");
        }
    }
    tracing::info!(from = %args.from.display(), blobs = restored, "backup restored");
    println!(
        "restored {} (taken {}) into {} with {} file bodies in the {} blob store",
        args.from.display(),
        manifest.created_at,
        db_display(&cfg),
        restored,
        state.files.backend_name()
    );
    state.store.close().await;
    Ok(())
}

fn db_display(cfg: &Config) -> String {
    refbridge_storage::sqlite_path_of_url(cfg.database_url.expose())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the database".into())
}

async fn open_sqlite(path: &Path) -> anyhow::Result<Store> {
    Store::connect(
        &format!("sqlite://{}", path.display()),
        &StoreOptions::default(),
    )
    .await
    .with_context(|| format!("{}", path.display()))
}

fn write_manifest(dir: &Path, m: &Manifest) -> anyhow::Result<()> {
    let path = dir.join(MANIFEST);
    let tmp = dir.join("manifest.json.partial");
    std::fs::write(&tmp, serde_json::to_vec_pretty(m)?)
        .with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

/// The files two levels under `root` (`sha256/ab/ab…`).
fn walk(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let dirs = match std::fs::read_dir(root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("{}", root.display())),
    };
    for d in dirs {
        let d = d.with_context(|| format!("{}", root.display()))?.path();
        if d.is_dir() {
            for f in std::fs::read_dir(&d).with_context(|| format!("{}", d.display()))? {
                out.push(f.with_context(|| format!("{}", d.display()))?.path());
            }
        }
    }
    out.sort();
    Ok(out)
}
