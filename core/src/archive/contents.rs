//! The archive's contents, once per hash, in one append-only file
//! (`contents.log`): each entry is the content's SHA-256, its length (a
//! big-endian `u64`) and the bytes. A batch of new contents is written and
//! `fdatasync`ed once, before the records naming them — one file for every
//! content, not one per content (creating a file per message cost more
//! than the rest of the archive together). Opening recovers the file to its
//! last whole entry; an index of where each hash is stays in memory.
//!
//! Archives written before this file have `content/<sha256>` files; those
//! are read still ([`ContentReader`] falls back to them).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{files, io, record, ArchiveError};
use crate::protocol::mac::sha256;

/// Bytes before each content: its SHA-256 and its length.
const HEADER: u64 = 40;

/// Where each content is: offset of its bytes, length.
type Index = HashMap<[u8; 32], (u64, u64)>;

/// Reads the headers of `file` from the start: the index, and where the
/// whole entries end.
fn scan(file: &mut File, path: &Path) -> Result<(Index, u64), ArchiveError> {
    let size = file.metadata().map_err(io(path))?.len();
    file.seek(SeekFrom::Start(0)).map_err(io(path))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, &*file);
    let mut index = Index::new();
    let mut at = 0u64;
    let mut header = [0u8; HEADER as usize];
    while at + HEADER <= size {
        reader.read_exact(&mut header).map_err(io(path))?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&header[..32]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&header[32..]);
        let len = u64::from_be_bytes(len);
        let Some(end) = (at + HEADER).checked_add(len).filter(|e| *e <= size) else {
            break;
        };
        index.entry(hash).or_insert((at + HEADER, len));
        let skip = i64::try_from(len).map_err(|_| {
            ArchiveError::Record(format!("a content of {len} bytes in {}", path.display()))
        })?;
        reader.seek_relative(skip).map_err(io(path))?;
        at = end;
    }
    Ok((index, at))
}

/// The contents file, open for appends.
pub struct Contents {
    path: PathBuf,
    file: File,
    index: Index,
    end: u64,
}

impl Contents {
    /// Opens (or makes) `DIR/contents.log`, cutting a torn tail (a crash
    /// mid-append: no record names it).
    ///
    /// # Errors
    /// [`ArchiveError::Io`].
    pub fn open(dir: &Path) -> Result<Self, ArchiveError> {
        let path = dir.join(files::CONTENTS);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let (index, end) = scan(&mut file, &path)?;
        let size = file.metadata().map_err(io(&path))?.len();
        if size > end {
            tracing::warn!(path = %path.display(), torn = size - end, "archive contents: a torn tail cut off");
            file.set_len(end).map_err(io(&path))?;
            file.sync_data().map_err(io(&path))?;
        }
        Ok(Self {
            path,
            file,
            index,
            end,
        })
    }

    /// Whether the content with this hash is stored.
    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.index.contains_key(hash)
    }

    /// Appends each content not stored yet, durably (one `fdatasync`).
    ///
    /// # Errors
    /// [`ArchiveError::Io`]; then nothing new is in the index.
    pub fn append<'a>(
        &mut self,
        contents: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), ArchiveError> {
        let mut buf = Vec::new();
        let mut added = Vec::new();
        for c in contents {
            let hash = sha256(c);
            if self.index.contains_key(&hash) || added.iter().any(|(h, _, _)| *h == hash) {
                continue;
            }
            added.push((hash, self.end + buf.len() as u64 + HEADER, c.len() as u64));
            buf.extend_from_slice(&hash);
            buf.extend_from_slice(&(c.len() as u64).to_be_bytes());
            buf.extend_from_slice(c);
        }
        if buf.is_empty() {
            return Ok(());
        }
        let written = self
            .file
            .seek(SeekFrom::Start(self.end))
            .and_then(|_| self.file.write_all(&buf))
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Whatever part was written is a torn tail the next open cuts.
            let _ = self.file.set_len(self.end);
            return Err(ArchiveError::Io(self.path.clone(), e));
        }
        self.end += buf.len() as u64;
        for (hash, at, len) in added {
            self.index.insert(hash, (at, len));
        }
        Ok(())
    }

    /// Rewrites the file with only the contents `keep` names (a purge),
    /// under another name then renamed.
    ///
    /// # Errors
    /// [`ArchiveError::Io`].
    pub fn retain(
        &mut self,
        keep: &std::collections::HashSet<[u8; 32]>,
    ) -> Result<(), ArchiveError> {
        let tmp = self.path.with_extension("tmp");
        let mut out = Vec::new();
        for hash in keep {
            if let Some(&(at, len)) = self.index.get(hash) {
                let bytes = read_at(&self.file, &self.path, at, len)?;
                out.extend_from_slice(hash);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        std::fs::write(&tmp, &out).map_err(io(&tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        *self = Self::open(dir)?;
        Ok(())
    }
}

fn read_at(file: &File, path: &Path, at: u64, len: u64) -> Result<Vec<u8>, ArchiveError> {
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut bytes, at).map_err(io(path))?;
    Ok(bytes)
}

/// Reads contents of an archive without opening it for appends (a running
/// archive may append meanwhile: what it appends after this opened is not
/// seen).
pub struct ContentReader {
    dir: PathBuf,
    file: Option<File>,
    index: Index,
}

impl ContentReader {
    /// The contents of the archive in `dir` as they are now.
    ///
    /// # Errors
    /// [`ArchiveError::Io`].
    pub fn open(dir: &Path) -> Result<Self, ArchiveError> {
        let path = dir.join(files::CONTENTS);
        let (file, index) = match File::open(&path) {
            Ok(mut f) => {
                let (index, _) = scan(&mut f, &path)?;
                (Some(f), index)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, Index::new()),
            Err(e) => return Err(ArchiveError::Io(path, e)),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            index,
        })
    }

    /// The content with SHA-256 `sha256_hex` as stored (not checked against
    /// its hash: verification does that).
    ///
    /// # Errors
    /// [`ArchiveError::Record`] for a name that is not a SHA-256,
    /// [`ArchiveError::Io`] when it is not stored or cannot be read.
    pub fn read(&self, sha256_hex: &str) -> Result<Vec<u8>, ArchiveError> {
        let hash: [u8; 32] = record::unhex(sha256_hex)
            .filter(|_| record::is_hex_digest(sha256_hex))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ArchiveError::Record(format!("not a SHA-256: {sha256_hex:?}")))?;
        if let (Some(&(at, len)), Some(f)) = (self.index.get(&hash), &self.file) {
            return read_at(f, &self.dir.join(files::CONTENTS), at, len);
        }
        let legacy = self.dir.join(files::CONTENT).join(sha256_hex);
        std::fs::read(&legacy).map_err(io(&legacy))
    }
}
