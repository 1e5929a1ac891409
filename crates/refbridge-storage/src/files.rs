//! The local, content-addressed file store: each distinct file body is kept once on disk,
//! under its SHA-256, whatever name or referral it came with. It is the `folder` blob backend
//! and, whatever the backend, every process's working folder: bodies are decoded and hashed
//! into its `tmp/` before [`crate::Blobs`] commits them elsewhere.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use refbridge_domain::ContentHash;
use sha2::{Digest, Sha256};

/// Standard alphabet; padding optional (it is stripped before decoding).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Characters decoded per chunk: a multiple of 4, so chunks split on quantum boundaries.
const CHUNK_CHARS: usize = 64 * 1024;
/// Bytes kept from the start of a file to detect its type.
const SNIFF_BYTES: usize = 8 * 1024;

/// A file body now in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub hash: ContentHash,
    pub size: u64,
    /// Detected from the magic bytes; `application/octet-stream` when unknown.
    pub media_type: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("not valid base64")]
    InvalidBase64,
    #[error("larger than {limit} bytes once decoded")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FileStore> {
        let root = root.into();
        fs::create_dir_all(root.join("sha256"))?;
        fs::create_dir_all(root.join("tmp"))?;
        Ok(FileStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// An anonymous scratch file beside the store's blobs, gone once closed: for spooling a
    /// request body that is too large to hold in memory.
    pub fn scratch_file(&self) -> io::Result<fs::File> {
        tempfile::tempfile_in(self.root.join("tmp"))
    }

    /// Where the body with this hash lives.
    pub fn path_of(&self, hash: &ContentHash) -> PathBuf {
        let h = hash.as_str();
        self.root.join("sha256").join(&h[..2]).join(h)
    }

    /// Decodes base64 text (padding optional, whitespace and line breaks ignored) straight
    /// into the store, never holding the decoded file in memory. The text comes as bytes one
    /// at a time, so a caller can unescape it on the way without copying it. Blocking: call it
    /// from a blocking task.
    pub fn put_base64(
        &self,
        encoded: impl IntoIterator<Item = u8>,
        max_size: u64,
    ) -> Result<StoredBlob, PutError> {
        Ok(self.decode_base64(encoded, max_size, true)?.0)
    }

    /// [`FileStore::put_base64`], the body installed under `sha256/` when `install`, else
    /// left in a temporary file (returned) for another backend to take.
    pub(crate) fn decode_base64(
        &self,
        encoded: impl IntoIterator<Item = u8>,
        max_size: u64,
        install: bool,
    ) -> Result<(StoredBlob, Option<tempfile::TempPath>), PutError> {
        let mut sink = Sink::new(self, max_size, install)?;
        decode_base64_chunks(encoded, |bytes| sink.write(bytes))?;
        sink.finish()
    }

    /// A writer that streams a body into the store chunk by chunk (an upload), never holding
    /// it whole in memory.
    pub fn writer(&self, max_size: u64) -> io::Result<BlobWriter<'_>> {
        self.writer_installing(max_size, true)
    }

    pub(crate) fn writer_installing(
        &self,
        max_size: u64,
        install: bool,
    ) -> io::Result<BlobWriter<'_>> {
        Ok(BlobWriter {
            sink: Sink::new(self, max_size, install)?,
        })
    }

    /// Removes (or, `dry_run`, counts) the files in `tmp/` last written before `cutoff`: left
    /// by a process that was killed while it wrote them. How many.
    pub fn remove_stale_scratch(
        &self,
        cutoff: std::time::SystemTime,
        dry_run: bool,
    ) -> io::Result<u64> {
        let tmp = self.root.join("tmp");
        let mut n = 0;
        for entry in fs::read_dir(&tmp)? {
            let entry = entry?;
            let modified = entry.metadata().and_then(|m| m.modified())?;
            if modified < cutoff && entry.file_type()?.is_file() {
                if !dry_run {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                }
                n += 1;
            }
        }
        Ok(n)
    }

    /// Whether the body with this hash is here.
    pub fn contains(&self, hash: &ContentHash) -> bool {
        self.path_of(hash).is_file()
    }
}

/// A body being streamed into the store; dropped unfinished, it leaves nothing behind.
pub struct BlobWriter<'a> {
    sink: Sink<'a>,
}

impl BlobWriter<'_> {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), PutError> {
        self.sink.write(bytes)
    }

    pub fn finish(self) -> Result<StoredBlob, PutError> {
        Ok(self.sink.finish()?.0)
    }

    pub(crate) fn finish_staged(
        self,
    ) -> Result<(StoredBlob, Option<tempfile::TempPath>), PutError> {
        self.sink.finish()
    }
}

/// Decodes base64 text as [`FileStore::put_base64`] does (the same decoder, chunk by chunk)
/// and keeps nothing: the decoded size. What an intake costs before its files are stored
/// (`refbridge bench intake`'s decode-only baseline).
pub fn decode_base64_len(
    encoded: impl IntoIterator<Item = u8>,
    max_size: u64,
) -> Result<u64, PutError> {
    let mut size = 0u64;
    decode_base64_chunks(encoded, |bytes| {
        size += bytes.len() as u64;
        if size > max_size {
            return Err(PutError::TooLarge { limit: max_size });
        }
        Ok(())
    })?;
    Ok(size)
}

/// Base64 text (padding optional, whitespace ignored) to `write`, one decoded chunk at a time.
fn decode_base64_chunks(
    encoded: impl IntoIterator<Item = u8>,
    mut write: impl FnMut(&[u8]) -> Result<(), PutError>,
) -> Result<(), PutError> {
    let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK_CHARS);
    let mut out: Vec<u8> = Vec::with_capacity(CHUNK_CHARS / 4 * 3);
    let mut padded = false;
    for b in encoded {
        match b {
            b if b.is_ascii_whitespace() => continue,
            b'=' => padded = true,
            // Padding belongs at the end only.
            _ if padded => return Err(PutError::InvalidBase64),
            _ => chunk.push(b),
        }
        if chunk.len() == CHUNK_CHARS {
            decode_into(&chunk, &mut out)?;
            write(&out)?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        decode_into(&chunk, &mut out)?;
        write(&out)?;
    }
    Ok(())
}

fn decode_into(chunk: &[u8], out: &mut Vec<u8>) -> Result<(), PutError> {
    out.clear();
    B64.decode_vec(chunk, out)
        .map_err(|_| PutError::InvalidBase64)
}

/// A file being written: a temporary file, its running hash and size, its first bytes.
struct Sink<'a> {
    store: &'a FileStore,
    tmp_path: PathBuf,
    file: Option<BufWriter<fs::File>>,
    hasher: Sha256,
    size: u64,
    max_size: u64,
    head: Vec<u8>,
    /// Rename into `sha256/` when finished; else the temporary file is handed back.
    install: bool,
}

impl<'a> Sink<'a> {
    fn new(store: &'a FileStore, max_size: u64, install: bool) -> io::Result<Self> {
        let tmp_path = store
            .root
            .join("tmp")
            .join(uuid::Uuid::new_v4().to_string());
        let file = fs::File::create(&tmp_path)?;
        Ok(Sink {
            store,
            tmp_path,
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            hasher: Sha256::new(),
            size: 0,
            max_size,
            head: Vec::new(),
            install,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), PutError> {
        self.size += bytes.len() as u64;
        if self.size > self.max_size {
            return Err(PutError::TooLarge {
                limit: self.max_size,
            });
        }
        if self.head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        self.hasher.update(bytes);
        if let Some(f) = self.file.as_mut() {
            f.write_all(bytes)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(StoredBlob, Option<tempfile::TempPath>), PutError> {
        let digest: [u8; 32] = self.hasher.clone().finalize().into();
        let hash = ContentHash::from_digest(&digest);
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("file already finished"))?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        let media_type = infer::get(&self.head)
            .map(|t| t.mime_type().to_owned())
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let blob = StoredBlob {
            hash,
            size: self.size,
            media_type,
        };
        if !self.install {
            // Another backend takes it from here; the file goes when the path is dropped.
            drop(file);
            return Ok((
                blob,
                Some(tempfile::TempPath::try_from_path(&self.tmp_path)?),
            ));
        }
        let dest = self.store.path_of(&blob.hash);
        if dest.exists() {
            // Touched, so that a prune of unreferenced bodies leaves it alone a while longer.
            let _ = fs::File::options()
                .write(true)
                .open(&dest)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            // Already stored (and made durable when it was): the copy is not needed.
            drop(file);
            fs::remove_file(&self.tmp_path)?;
        } else {
            // The content, then its name, reach the disk before the caller records the blob.
            file.sync_all()?;
            drop(file);
            let dir = dest
                .parent()
                .ok_or_else(|| io::Error::other("blob path has no folder"))?;
            fs::create_dir_all(dir)?;
            fs::rename(&self.tmp_path, &dest)?;
            sync_dir(dir)?;
        }
        Ok((blob, None))
    }
}

/// Makes a rename inside `dir` durable (a no-op where folders cannot be opened as files).
fn sync_dir(dir: &Path) -> io::Result<()> {
    if cfg!(unix) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Drop for Sink<'_> {
    fn drop(&mut self) {
        // An abandoned write (bad base64, too large) leaves nothing behind.
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let fs = FileStore::open(dir.path()).unwrap();
        (dir, fs)
    }

    const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNk+A8AAQUBAScY42YAAAAASUVORK5CYII=";

    #[test]
    fn decodes_padded_unpadded_and_wrapped_base64_to_the_same_blob() {
        let (_d, fs) = store();
        let a = fs.put_base64(PNG_B64.bytes(), 1 << 20).unwrap();
        let b = fs
            .put_base64(PNG_B64.trim_end_matches('=').bytes(), 1 << 20)
            .unwrap();
        let wrapped: String = PNG_B64
            .as_bytes()
            .chunks(10)
            .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let c = fs.put_base64(wrapped.bytes(), 1 << 20).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.media_type, "image/png");
        let bytes = std::fs::read(fs.path_of(&a.hash)).unwrap();
        assert_eq!(bytes.len() as u64, a.size);
        assert_eq!(&bytes[1..4], b"PNG");
    }

    #[test]
    fn large_input_spans_many_chunks_and_round_trips() {
        let (_d, fs) = store();
        let data: Vec<u8> = (0..300_001u32).map(|i| (i * 7 % 251) as u8).collect();
        let enc = base64::engine::general_purpose::STANDARD.encode(&data);
        let blob = fs.put_base64(enc.bytes(), 1 << 20).unwrap();
        assert_eq!(std::fs::read(fs.path_of(&blob.hash)).unwrap(), data);
        assert_eq!(blob.media_type, "application/octet-stream");
    }

    #[test]
    fn rejects_invalid_base64_and_leaves_no_temporary_file() {
        let (_d, fs) = store();
        assert!(matches!(
            fs.put_base64("abc$def".bytes(), 100),
            Err(PutError::InvalidBase64)
        ));
        assert!(matches!(
            fs.put_base64("ab=cd".bytes(), 100),
            Err(PutError::InvalidBase64)
        ));
        assert_eq!(std::fs::read_dir(fs.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn rejects_a_body_one_byte_over_the_limit() {
        let (_d, fs) = store();
        let enc = base64::engine::general_purpose::STANDARD.encode([0u8; 101]);
        assert!(matches!(
            fs.put_base64(enc.bytes(), 100),
            Err(PutError::TooLarge { limit: 100 })
        ));
        let enc = base64::engine::general_purpose::STANDARD.encode([0u8; 100]);
        assert_eq!(fs.put_base64(enc.bytes(), 100).unwrap().size, 100);
    }
}
