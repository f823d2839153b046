//! The archive's append-only files: [`Records`] (each a big-endian `u32`
//! length, then the bytes) and [`Fixed`] (entries of one size). Appends are
//! written and `fdatasync`ed before they return; opening recovers a file to
//! its last whole entry (a crash mid-append leaves a torn tail, which was
//! never acknowledged).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{io, ArchiveError};

/// Longest record, bytes (a record holds meta information, never content).
pub const MAX_RECORD: usize = 1 << 20;

fn open_append(path: &Path) -> Result<File, ArchiveError> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(io(path))
}

fn read_all(path: &Path) -> Result<Vec<u8>, ArchiveError> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ArchiveError::Io(path.to_path_buf(), e)),
    }
}

/// Splits `bytes` into length-prefixed entries: the entries, and where the
/// whole ones end.
pub fn split_records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = bytes.get(at..at + 4) {
        let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if n > MAX_RECORD {
            break;
        }
        let Some(entry) = bytes.get(at + 4..at + 4 + n) else {
            break;
        };
        out.push(entry);
        at += 4 + n;
    }
    (out, at)
}

/// The records file.
pub struct Records {
    path: PathBuf,
    file: File,
}

impl Records {
    /// Opens `path` (see [`Records::cut_torn`]).
    ///
    /// # Errors
    /// [`ArchiveError::Io`].
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        Ok(Self {
            path: path.to_path_buf(),
            file: open_append(path)?,
        })
    }

    /// Cuts the file back to its last whole record (a crash mid-append);
    /// the caller makes sure what is cut was never linked. Returns how
    /// many bytes were cut.
    ///
    /// # Errors
    /// [`ArchiveError::Io`].
    pub fn cut_torn(&self) -> Result<usize, ArchiveError> {
        let bytes = read_all(&self.path)?;
        let (_, whole) = split_records(&bytes);
        let torn = bytes.len() - whole;
        if torn > 0 {
            tracing::warn!(path = %self.path.display(), torn, "archive records: a torn tail cut off");
            self.file.set_len(whole as u64).map_err(io(&self.path))?;
            self.file.sync_data().map_err(io(&self.path))?;
        }
        Ok(torn)
    }

    /// Appends `entries`, durably.
    ///
    /// # Errors
    /// [`ArchiveError::Io`]; a record over [`MAX_RECORD`] is refused.
    pub fn append(&mut self, entries: &[Vec<u8>]) -> Result<(), ArchiveError> {
        let mut buf = Vec::new();
        for e in entries {
            if e.len() > MAX_RECORD {
                return Err(ArchiveError::Record(format!(
                    "a record of {} bytes (at most {MAX_RECORD})",
                    e.len()
                )));
            }
            buf.extend_from_slice(&(e.len() as u32).to_be_bytes());
            buf.extend_from_slice(e);
        }
        self.file.write_all(&buf).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }

    /// Every whole record's bytes.
    ///
    /// # Errors
    /// [`ArchiveError::Io`].
    pub fn entries(&self) -> Result<Vec<Vec<u8>>, ArchiveError> {
        let bytes = read_all(&self.path)?;
        Ok(split_records(&bytes)
            .0
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect())
    }
}

/// A file of `N`-byte entries.
pub struct Fixed<const N: usize> {
    path: PathBuf,
    file: File,
}

impl<const N: usize> Fixed<N> {
    /// Opens `path`, cut back to its last whole entry.
    ///
    /// # Errors
    /// [`ArchiveError::Io`].
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        let mut file = open_append(path)?;
        let len = file.seek(SeekFrom::End(0)).map_err(io(path))?;
        let whole = len - len % N as u64;
        if whole < len {
            tracing::warn!(path = %path.display(), torn = len - whole, "archive fingerprints: a torn tail cut off");
            file.set_len(whole).map_err(io(path))?;
            file.sync_data().map_err(io(path))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends `entries`, durably.
    ///
    /// # Errors
    /// [`ArchiveError::Io`].
    pub fn append(&mut self, entries: &[[u8; N]]) -> Result<(), ArchiveError> {
        let buf: Vec<u8> = entries.iter().flatten().copied().collect();
        self.file.write_all(&buf).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }

    /// Every entry.
    ///
    /// # Errors
    /// [`ArchiveError::Io`].
    pub fn entries(&self) -> Result<Vec<[u8; N]>, ArchiveError> {
        read_fixed(&self.path)
    }
}

/// The whole `N`-byte entries of the file at `path` (none when it is
/// missing).
///
/// # Errors
/// [`ArchiveError::Io`].
pub fn read_fixed<const N: usize>(path: &Path) -> Result<Vec<[u8; N]>, ArchiveError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(io(path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ArchiveError::Io(path.to_path_buf(), e)),
    }
    Ok(bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0; N];
            a.copy_from_slice(c);
            a
        })
        .collect())
}

/// The whole records of the file at `path`, and whether bytes followed the
/// last whole one (a torn or damaged tail).
///
/// # Errors
/// [`ArchiveError::Io`].
pub fn read_records(path: &Path) -> Result<(Vec<Vec<u8>>, bool), ArchiveError> {
    let bytes = read_all(path)?;
    let (entries, whole) = split_records(&bytes);
    Ok((
        entries.into_iter().map(<[u8]>::to_vec).collect(),
        whole < bytes.len(),
    ))
}
