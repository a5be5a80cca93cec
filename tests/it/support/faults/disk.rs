//! The disk under a SQLite database, made to fail: a tmpfs of the test's own to fill up,
//! and files made immutable (`chattr +i`). Both need root; a test without it, or on a
//! filesystem without the flag, skips, saying why (in CI it fails).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{is_root, run};
use crate::support::skip;

/// A tmpfs of the test's own, unmounted (lazily, should the server still hold files on it)
/// on drop.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (with the reason printed) when mounting is not possible; a panic in CI.
    pub async fn mount(test: &str, size: &str) -> Option<Self> {
        if !is_root() {
            skip(test, "mounting a small tmpfs needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("hubbub-disk-")
            .tempdir()
            .unwrap();
        let mut mount = Command::new("mount");
        mount
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path());
        let out = run(mount).await;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            skip(test, &format!("mount -t tmpfs failed: {stderr}"));
            return None;
        }
        Some(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Writes a file until the disk is full; returns its size.
    pub fn fill(&self) -> u64 {
        use std::io::Write;
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let chunk = vec![0_u8; 64 * 1024];
        let mut written = 0;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(err) if err.raw_os_error() == Some(28) => break, // ENOSPC
                Err(err) => panic!("filling the disk: {err}"),
            }
        }
        written
    }

    pub fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(self.dir.path())
            .status();
    }
}

/// Files made immutable (`chattr +i`): even descriptors the server already holds open
/// then fail every write with EPERM, and opening them for writing fails. Root is not
/// exempt. The flag is cleared again on drop, before the directory holding the files is
/// removed (an immutable file cannot be deleted), whether the test passed or not.
pub struct ReadOnlyFiles {
    files: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl ReadOnlyFiles {
    /// A directory under `/var/tmp`, which is on disk where `/tmp` may be a tmpfs (one
    /// that supports the flag only on recent kernels). `None` (with the reason printed)
    /// when the flag cannot be set there; a panic in CI.
    pub async fn dir(test: &str) -> Option<Self> {
        if !is_root() {
            skip(test, "making a file immutable (chattr +i) needs root");
            return None;
        }
        let parent = Path::new("/var/tmp");
        let dir = if parent.is_dir() {
            tempfile::Builder::new()
                .prefix("hubbub-ro-")
                .tempdir_in(parent)
        } else {
            tempfile::Builder::new().prefix("hubbub-ro-").tempdir()
        }
        .unwrap();
        let files = Self {
            files: Vec::new(),
            dir,
        };
        // Try the flag on a file of its own first, so an unsupported filesystem skips
        // before any server starts.
        let probe = files.path().join("probe");
        std::fs::write(&probe, b"probe").unwrap();
        let failed = files.chattr("+i", std::slice::from_ref(&probe)).await.err();
        files
            .chattr("-i", std::slice::from_ref(&probe))
            .await
            .unwrap();
        std::fs::remove_file(probe).unwrap();
        match failed {
            Some(failed) => {
                skip(test, &failed);
                None
            }
            None => Some(files),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    async fn chattr(&self, flag: &str, files: &[PathBuf]) -> Result<(), String> {
        let mut chattr = Command::new("chattr");
        chattr.arg(flag).args(files);
        let out = run(chattr).await;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "chattr {flag} failed in {}: {}",
                self.path().display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Makes `files` (in this directory) immutable until [`Self::writable`] or drop.
    pub async fn read_only(&mut self, files: &[&str]) {
        let files: Vec<PathBuf> = files.iter().map(|f| self.path().join(f)).collect();
        for file in &files {
            assert!(file.exists(), "{} does not exist", file.display());
        }
        // Recorded first: a flag set on some files before a failure is still cleared.
        self.files.clone_from(&files);
        self.chattr("+i", &files).await.unwrap();
    }

    pub async fn writable(&mut self) {
        let files = std::mem::take(&mut self.files);
        self.chattr("-i", &files).await.unwrap();
    }
}

impl Drop for ReadOnlyFiles {
    fn drop(&mut self) {
        if !self.files.is_empty() {
            let _ = Command::new("chattr").arg("-i").args(&self.files).status();
        }
    }
}
