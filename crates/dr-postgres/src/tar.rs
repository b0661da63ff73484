//! Reading the tar archives `BASE_BACKUP` sends, as a stream.
//!
//! PostgreSQL writes plain ustar (`src/port/tar.c`): names of at most 99
//! bytes, sizes in octal or, past 8 GiB, base-256; regular files,
//! directories and symlinks (`pg_tblspc/<oid>`). That is all this reader
//! accepts: anything else is an error naming the entry, never a guess.
//! Paths are checked to stay inside the archive (no `..`, no leading `/`).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The tar block size: headers, and the unit content is padded to.
pub(crate) const BLOCK: usize = 512;

/// What a tar entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file; its bytes follow.
    File,
    /// A directory.
    Directory,
    /// A symbolic link to the given target.
    Symlink(String),
}

/// One entry's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The path inside the archive, without a trailing `/`.
    pub(crate) path: String,
    pub(crate) kind: EntryKind,
    /// Permission bits.
    pub(crate) mode: u32,
    /// Content length (files only).
    pub(crate) size: u64,
}

/// A tar archive read entry by entry.
pub(crate) struct TarReader<R> {
    inner: R,
    /// Unread content bytes of the current entry, then its padding.
    remaining: u64,
    padding: u64,
    what: String,
}

fn invalid(what: &str, reason: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {reason}"))
}

impl<R: AsyncRead + Unpin> TarReader<R> {
    /// Reads the archive `what` (a name for messages) from `inner`.
    pub(crate) fn new(inner: R, what: impl Into<String>) -> Self {
        Self {
            inner,
            remaining: 0,
            padding: 0,
            what: what.into(),
        }
    }

    /// The next entry, skipping whatever of the previous one's content was
    /// not read; `None` at the end-of-archive blocks.
    ///
    /// # Errors
    /// `InvalidData` for a malformed or truncated archive or an entry this
    /// reader does not accept; the reader's own errors.
    pub(crate) async fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        let skip = self.remaining + self.padding;
        if skip > 0 {
            let skipped =
                tokio::io::copy(&mut (&mut self.inner).take(skip), &mut tokio::io::sink()).await?;
            if skipped != skip {
                return Err(invalid(&self.what, "truncated inside an entry"));
            }
            self.remaining = 0;
            self.padding = 0;
        }
        let mut header = [0u8; BLOCK];
        if let Err(e) = self.inner.read_exact(&mut header).await {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid(&self.what, "truncated: no end-of-archive marker")
            } else {
                e
            });
        }
        if header.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        let entry = parse_header(&header).map_err(|reason| invalid(&self.what, reason))?;
        if entry.kind == EntryKind::File {
            self.remaining = entry.size;
            self.padding = (BLOCK as u64 - entry.size % BLOCK as u64) % BLOCK as u64;
        }
        Ok(Some(entry))
    }

    /// Reads the rest of the stream, past the end-of-archive blocks, to its
    /// end: a stream that checks itself as it ends (a repository stream's
    /// length and SHA-256) says only there whether it was whole.
    ///
    /// # Errors
    /// The stream's own errors, its verdict among them.
    pub(crate) async fn finish(mut self) -> io::Result<()> {
        tokio::io::copy(&mut self.inner, &mut tokio::io::sink())
            .await
            .map(drop)
    }

    /// The current entry's content (all of it, or what is left).
    pub(crate) fn content(&mut self) -> Content<'_, R> {
        let limit = self.remaining;
        Content {
            take: (&mut self.inner).take(limit),
            remaining: &mut self.remaining,
            what: &self.what,
        }
    }
}

/// The content of the current entry; ends where the entry ends, and fails
/// if the archive ends first.
pub(crate) struct Content<'a, R> {
    take: tokio::io::Take<&'a mut R>,
    remaining: &'a mut u64,
    what: &'a str,
}

impl<R: AsyncRead + Unpin> AsyncRead for Content<'_, R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        if *this.remaining == 0 || buf.remaining() == 0 {
            return std::task::Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut this.take).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &poll {
            if buf.filled().len() == before {
                return std::task::Poll::Ready(Err(invalid(
                    this.what,
                    "truncated inside a file's content",
                )));
            }
            *this.remaining = this.take.limit();
        }
        poll
    }
}

/// Parses and checks one header block.
pub(crate) fn parse_header(h: &[u8; BLOCK]) -> Result<Entry, String> {
    let stored: u64 = parse_number(&h[148..156]).ok_or("bad header checksum field")?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    if sum != stored {
        return Err("header checksum mismatch (damaged or not a tar archive)".into());
    }
    let name = text(&h[0..100])?;
    let prefix = if &h[257..262] == b"ustar" {
        text(&h[345..500])?
    } else {
        String::new()
    };
    let raw = if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    };
    let path = clean_path(&raw)?;
    let mode =
        parse_number(&h[100..108]).ok_or_else(|| format!("{path}: bad mode"))? as u32 & 0o7777;
    let size = parse_number(&h[124..136]).ok_or_else(|| format!("{path}: bad size"))?;
    let kind = match h[156] {
        b'0' | 0 => EntryKind::File,
        b'5' => EntryKind::Directory,
        b'2' => EntryKind::Symlink(text(&h[157..257])?),
        other => {
            return Err(format!(
                "{path}: entry type {:?} is not one PostgreSQL writes",
                other as char
            ));
        }
    };
    if kind != EntryKind::File && size != 0 {
        return Err(format!("{path}: a non-file entry with content"));
    }
    Ok(Entry {
        path,
        kind,
        mode,
        size,
    })
}

/// A NUL-terminated (or full-width) UTF-8 field.
fn text(field: &[u8]) -> Result<String, String> {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8(field[..end].to_vec()).map_err(|_| "a name that is not UTF-8".to_owned())
}

/// An octal field (spaces/NULs around it), or base-256 when the high bit is set.
fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(value);
    }
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok()
}

/// A relative path with no `.`/`..`/empty components, without a trailing `/`.
fn clean_path(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_end_matches('/');
    let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
    if trimmed.is_empty() || trimmed.starts_with('/') {
        return Err(format!("entry {raw:?}: not a relative path"));
    }
    if trimmed
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!("entry {raw:?}: path leaves the archive"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ustar header the way PostgreSQL writes one.
    pub(crate) fn header(name: &str, kind: u8, size: u64, link: &str) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000600\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    /// An archive of `(name, type, content, link target)` entries, with the end-of-archive blocks.
    pub(crate) fn archive(entries: &[(&str, u8, &[u8], &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, content, link) in entries {
            out.extend_from_slice(&header(name, *kind, content.len() as u64, link));
            out.extend_from_slice(content);
            out.resize(out.len().next_multiple_of(BLOCK), 0);
        }
        out.extend_from_slice(&[0u8; 2 * BLOCK]);
        out
    }

    #[tokio::test]
    async fn reads_files_directories_and_symlinks() {
        let bytes = archive(&[
            ("global", b'5', b"", ""),
            ("global/pg_control", b'0', &[7u8; 700], ""),
            ("PG_VERSION", b'0', b"15\n", ""),
            ("pg_tblspc/16384", b'2', b"", "/srv/ts"),
        ]);
        let mut tar = TarReader::new(&bytes[..], "base.tar");
        let dir = tar.next_entry().await.unwrap().unwrap();
        assert_eq!(
            (dir.path.as_str(), dir.kind),
            ("global", EntryKind::Directory)
        );
        let control = tar.next_entry().await.unwrap().unwrap();
        assert_eq!(control.size, 700);
        let mut content = Vec::new();
        tar.content().read_to_end(&mut content).await.unwrap();
        assert_eq!(content, vec![7u8; 700]);
        // Unread content is skipped.
        let version = tar.next_entry().await.unwrap().unwrap();
        assert_eq!(version.path, "PG_VERSION");
        let link = tar.next_entry().await.unwrap().unwrap();
        assert_eq!(link.kind, EntryKind::Symlink("/srv/ts".into()));
        assert_eq!(tar.next_entry().await.unwrap(), None);
    }

    /// Bytes, then an error where a checked stream would give its verdict.
    struct FailsAtEnd(Vec<u8>, usize);

    impl AsyncRead for FailsAtEnd {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let at = self.1;
            if at == self.0.len() {
                return std::task::Poll::Ready(Err(invalid("the stream", "SHA-256 differs")));
            }
            let n = buf.remaining().min(self.0.len() - at);
            buf.put_slice(&self.0[at..at + n]);
            self.1 += n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn finishing_reads_the_streams_verdict_after_the_archive_ends() {
        let bytes = archive(&[("PG_VERSION", b'0', b"15\n", "")]);
        let mut tar = TarReader::new(FailsAtEnd(bytes, 0), "base.tar");
        tar.next_entry().await.unwrap().unwrap();
        assert_eq!(tar.next_entry().await.unwrap(), None);
        let err = tar.finish().await.unwrap_err();
        assert!(err.to_string().contains("SHA-256 differs"), "{err}");

        let bytes = archive(&[("PG_VERSION", b'0', b"15\n", "")]);
        let mut tar = TarReader::new(&bytes[..], "base.tar");
        while tar.next_entry().await.unwrap().is_some() {}
        tar.finish().await.unwrap();
    }

    #[tokio::test]
    async fn damage_and_escapes_are_errors() {
        let good = archive(&[("PG_VERSION", b'0', b"15\n", "")]);
        let mut truncated = TarReader::new(&good[..600], "base.tar");
        truncated.next_entry().await.unwrap().unwrap();
        // The content is whole; the archive ends inside its padding.
        let mut content = Vec::new();
        truncated.content().read_to_end(&mut content).await.unwrap();
        assert_eq!(content, b"15\n");
        let err = truncated.next_entry().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let mut flipped = good.clone();
        flipped[3] ^= 1;
        let err = TarReader::new(&flipped[..], "base.tar")
            .next_entry()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");

        for name in ["../etc/passwd", "/etc/passwd", "a/../../b"] {
            let bad = archive(&[(name, b'0', b"x", "")]);
            let err = TarReader::new(&bad[..], "base.tar")
                .next_entry()
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{name}");
        }
        let hard_link = archive(&[("a", b'1', b"", "b")]);
        assert!(
            TarReader::new(&hard_link[..], "base.tar")
                .next_entry()
                .await
                .is_err()
        );
        assert!(
            TarReader::new(&[][..], "base.tar")
                .next_entry()
                .await
                .is_err()
        );
    }

    #[test]
    fn numbers_in_octal_and_base_256() {
        assert_eq!(parse_number(b"00000001750\0"), Some(1000));
        assert_eq!(parse_number(b"     17 \0"), Some(15));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 1;
        big[10] = 2;
        assert_eq!(parse_number(&big), Some(513));
    }
}
