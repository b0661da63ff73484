//! Chunk boundaries for a tar stream ([`dr_core::StreamLayout::Tar`]).
//!
//! A member at least `big` long starts a chunk with its header, is cut
//! every `step` bytes of its data counted from the data's start, and ends
//! its last chunk. Smaller members are gathered: a chunk ends before the
//! first header that finds it `big` long already. A page rewritten in place
//! changes one chunk, a file grown at its end only its last, and a member
//! added or dropped only its neighbours: the same dedup content-defined
//! chunking finds in such data, without hashing every byte to find it.
//!
//! Every decision depends on stream offsets and header bytes alone, never
//! on how the stream was split into reads. A header that does not check
//! out (or the end-of-archive zeros) hands the rest of the stream to
//! content-defined chunking.

/// What the cutter knows next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A member header starts at this stream offset.
    Header(u64),
    /// Inside a large member's data: the next fixed cut, and the data's
    /// padded end (where the next header starts).
    Member { next: u64, end: u64 },
    /// Not (or no longer) tar.
    Opaque,
}

/// The next boundary [`TarCuts::next_cut`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// A chunk ends at this stream offset.
    Cut(u64),
    /// More bytes are needed to decide.
    More,
    /// The stream is not tar from here on: cut by content.
    Opaque,
}

/// Where the members of a tar stream are, as far as it has been read.
#[derive(Debug, Clone)]
pub(super) struct TarCuts {
    state: State,
    big: u64,
    step: u64,
}

const BLOCK: u64 = 512;

impl TarCuts {
    /// A cutter for a stream starting with a member header; members of at
    /// least `big` bytes are cut every `step` bytes.
    pub(super) fn new(big: u64, step: u64) -> Self {
        Self {
            state: State::Header(0),
            big: big.max(1),
            step: step.max(BLOCK),
        }
    }

    /// The first boundary after `start` (where the current chunk starts),
    /// from `buf`, the stream's bytes from offset `base` (at most `start`).
    pub(super) fn next_cut(&mut self, buf: &[u8], base: u64, start: u64) -> Next {
        let end = base + buf.len() as u64;
        loop {
            match self.state {
                State::Opaque => return Next::Opaque,
                State::Member {
                    next,
                    end: member_end,
                } => {
                    let cut = next.min(member_end);
                    if cut <= start {
                        self.state = if cut == member_end {
                            State::Header(member_end)
                        } else {
                            State::Member {
                                next: next + self.step,
                                end: member_end,
                            }
                        };
                        continue;
                    }
                    return if cut <= end {
                        Next::Cut(cut)
                    } else {
                        Next::More
                    };
                }
                State::Header(at) => {
                    if at < base {
                        // Its bytes are gone (a cut forced inside a member).
                        self.state = State::Opaque;
                        continue;
                    }
                    if at + BLOCK > end {
                        return Next::More;
                    }
                    let offset = (at - base) as usize;
                    let Some(size) = member_size(&buf[offset..offset + BLOCK as usize]) else {
                        self.state = State::Opaque;
                        continue;
                    };
                    let data = at + BLOCK;
                    let member_end = data + size.next_multiple_of(BLOCK);
                    if size >= self.big {
                        if at > start {
                            return Next::Cut(at);
                        }
                        self.state = State::Member {
                            next: data + self.step,
                            end: member_end,
                        };
                    } else {
                        if at > start && at - start >= self.big {
                            return Next::Cut(at);
                        }
                        self.state = State::Header(member_end);
                    }
                }
            }
        }
    }
}

/// The data size a tar header announces; `None` if the block is not a
/// header (its checksum does not match, or it is the end-of-archive zeros).
fn member_size(header: &[u8]) -> Option<u64> {
    let stored = octal(&header[148..156])?;
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    if header.iter().all(|&b| b == 0) || sum != stored {
        return None;
    }
    let size = &header[124..136];
    if size[0] & 0x80 != 0 {
        // GNU base-256 for sizes of 8 GiB and more.
        let mut value = u64::from(size[0] & 0x7F);
        for &b in &size[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        Some(value)
    } else {
        octal(size)
    }
}

/// An octal field: digits, padded with spaces or NULs.
fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(digits, 8).ok()
}

/// Tar streams for tests.
#[cfg(test)]
pub(super) mod test_tar {
    /// A ustar header for a regular file.
    pub(crate) fn header(name: &str, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000600\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    /// A tar of members of these sizes, with the end-of-archive blocks;
    /// and where each member's header starts.
    pub(crate) fn tar(sizes: &[u64]) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            starts.push(bytes.len() as u64);
            bytes.extend(header(&format!("base/1/{i}"), size));
            bytes.extend((0..size).map(|j| (j % 253) as u8 ^ i as u8));
            bytes.resize(bytes.len().next_multiple_of(512), 0);
        }
        bytes.resize(bytes.len() + 1024, 0);
        (bytes, starts)
    }
}

#[cfg(test)]
mod tests {
    use super::test_tar::tar;
    use super::*;
    use proptest::prelude::*;

    /// Every cut, the stream arriving `read` bytes at a time; where content-
    /// defined chunking would take over, the list ends.
    fn cuts(bytes: &[u8], big: u64, step: u64, read: usize) -> Vec<u64> {
        let mut cutter = TarCuts::new(big, step);
        let mut cuts = Vec::new();
        let mut start = 0u64;
        let mut have = read.min(bytes.len());
        loop {
            // What is cut off is gone: the buffer starts where the chunk does.
            match cutter.next_cut(&bytes[start as usize..have], start, start) {
                Next::Cut(at) => {
                    assert!(at > start && at <= have as u64);
                    cuts.push(at);
                    start = at;
                }
                Next::More if have < bytes.len() => have = (have + read).min(bytes.len()),
                Next::More | Next::Opaque => return cuts,
            }
        }
    }

    #[test]
    fn large_members_are_cut_at_fixed_offsets_and_small_ones_gathered() {
        let (bytes, starts) = tar(&[100, 3000, 10_000, 200, 300, 5000, 8191]);
        // Members of 4096 and more stand alone, cut every 4096 data bytes.
        let got = cuts(&bytes, 4096, 4096, bytes.len());
        let data = starts[2] + 512;
        let mut want = vec![starts[2], data + 4096, data + 8192, data + 10_240];
        assert_eq!(want[3], starts[3]);
        // 200 and 300 gathered with nothing before 5000's header.
        want.extend([starts[5], starts[5] + 512 + 4096, starts[6]]);
        want.extend([starts[6] + 512 + 4096, starts[6] + 512 + 8192]);
        assert_eq!(got, want);
    }

    #[test]
    fn what_is_not_tar_goes_to_content_defined_chunking() {
        let (mut bytes, starts) = tar(&[10_000, 100]);
        bytes[starts[1] as usize + 10] ^= 1;
        let got = cuts(&bytes, 4096, 4096, bytes.len());
        assert_eq!(got, vec![512 + 4096, 512 + 8192, starts[1]]);
        let mut cutter = TarCuts::new(4096, 4096);
        assert_eq!(cutter.next_cut(b"not a tar at all", 0, 0), Next::More);
        assert_eq!(cutter.next_cut(&[7u8; 600], 0, 0), Next::Opaque);
    }

    #[test]
    fn growing_a_member_moves_only_its_last_cut() {
        let (before, _) = tar(&[100, 20_000, 700]);
        let (after, _) = tar(&[100, 22_000, 700]);
        let (a, b) = (
            cuts(&before, 4096, 4096, 999),
            cuts(&after, 4096, 4096, 999),
        );
        // The same cuts up to the old end; one more after it.
        assert_eq!(a[..5], b[..5]);
        assert_eq!(b.len(), a.len() + 1);
    }

    proptest! {
        #[test]
        fn cuts_do_not_depend_on_how_the_stream_is_read(
            sizes in prop::collection::vec(0u64..20_000, 0..12),
            read in 1usize..9000,
        ) {
            let (bytes, _) = tar(&sizes);
            prop_assert_eq!(cuts(&bytes, 4096, 4096, read), cuts(&bytes, 4096, 4096, bytes.len()));
        }
    }
}
