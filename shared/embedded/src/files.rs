//! Blobs and secrets as files under the data directory.

use async_trait::async_trait;
use secrecy::SecretString;
use std::path::{Path, PathBuf};
use testrelay_domain::ports::{BlobStore, SecretError, SecretStore, StoreError, Tagged};
use tokio::io::AsyncWriteExt;

/// Keys are relative paths of plain segments; anything that could climb out of the root is
/// refused.
fn safe_join(root: &Path, key: &str) -> Option<PathBuf> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    ok.then(|| root.join(key))
}

/// Report blobs as files: `<data_dir>/blobs/<key>`, written to a temporary file, then
/// renamed, so a reader never sees half a blob. Like the SQLite store (WAL,
/// `synchronous=NORMAL`), a blob survives a crash of the process, not of the machine: no
/// fsync per report.
pub struct FileBlobStore {
    root: PathBuf,
}

impl FileBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileBlobStore { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        safe_join(&self.root, key)
            .ok_or_else(|| StoreError::new("blob store", format!("invalid key {key:?}")))
    }
}

/// Conditional writes hold this for their read-compare-rename: testrelay runs locally as one
/// process, so one lock makes them atomic (for every store on every data directory).
static CONDITIONAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A file version's tag: every write renames a new file into place, so its inode and
/// modification time change with each version.
fn tag_of(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{:x}-{:x}-{:x}",
        meta.ino(),
        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
        meta.len()
    )
}

async fn read_tagged(path: &Path) -> Result<Option<Tagged>, StoreError> {
    let err = |e: std::io::Error| StoreError::new("blob store", e);
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    // The open file is the version read, whatever is renamed over the path meanwhile.
    let tag = tag_of(&f.metadata().await.map_err(err)?);
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut f, &mut bytes)
        .await
        .map_err(err)?;
    Ok(Some(Tagged {
        bytes: bytes.into(),
        tag,
    }))
}

#[async_trait]
impl BlobStore for FileBlobStore {
    async fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let err = |e: std::io::Error| StoreError::new("blob store", e);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(err)?;
        }
        let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
        let mut f = tokio::fs::File::create(&tmp).await.map_err(err)?;
        f.write_all(&bytes).await.map_err(err)?;
        f.flush().await.map_err(err)?;
        drop(f);
        tokio::fs::rename(&tmp, &path).await.map_err(err)
    }

    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::new("blob store", e)),
        }
    }

    async fn get_tagged(&self, key: &str) -> Result<Option<Tagged>, StoreError> {
        read_tagged(&self.path(key)?).await
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        expected: Option<&str>,
    ) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        let _held = CONDITIONAL.lock().await;
        let current = match tokio::fs::metadata(&path).await {
            Ok(m) => Some(tag_of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::new("blob store", e)),
        };
        if current.as_deref() != expected {
            return Ok(false);
        }
        self.put(key, bytes).await?;
        Ok(true)
    }
}

/// Secrets as files: `<data_dir>/secrets/<name>`, content trimmed. Keep the directory
/// readable by the testrelay user only.
pub struct FileSecretStore {
    root: PathBuf,
}

impl FileSecretStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileSecretStore { root: root.into() }
    }

    /// Writes a secret with owner-only permissions (used for the dev defaults and tests).
    pub fn put(&self, name: &str, value: &str) -> std::io::Result<()> {
        let path = safe_join(&self.root, name).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid secret name")
        })?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        std::io::Write::write_all(&mut opts.open(path)?, value.as_bytes())
    }
}

#[async_trait]
impl SecretStore for FileSecretStore {
    async fn get(&self, name: &str) -> Result<SecretString, SecretError> {
        let path =
            safe_join(&self.root, name).ok_or_else(|| SecretError::NotFound(name.to_string()))?;
        match tokio::fs::read_to_string(&path).await {
            Ok(v) => Ok(SecretString::from(v.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(SecretError::NotFound(name.to_string()))
            }
            Err(e) => Err(SecretError::Unavailable(e.kind().to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_join;
    use std::path::Path;

    #[test]
    fn keys_cannot_escape_the_root() {
        let root = Path::new("/data");
        assert!(safe_join(root, "runs/01J.json").is_some());
        for bad in [
            "../x",
            "/etc/passwd",
            "runs/../../x",
            "a//b",
            "",
            "a/./b",
            "a b",
        ] {
            assert!(safe_join(root, bad).is_none(), "{bad}");
        }
    }
}
