//! LZF decompression (the format of liblzf's `lzf_d.c`, written anew):
//! a control byte below 32 copies that many plus one literal bytes; any other
//! copies `len + 2` bytes from `offset + 1` back in the output, where `len`
//! is the top three bits (7 meaning "add the next byte") and `offset` the low
//! five bits and the next byte.
//!
//! **The output never grows past the declared length**, and the declared
//! length is believed only as far as the compressed bytes could expand to.

/// The most one input byte can expand to (a three-byte back reference copies
/// up to 264 bytes): a declared length beyond `compressed * MAX_RATIO` is a lie.
const MAX_RATIO: u64 = 132;

/// The decompressed bytes, exactly `len` of them.
pub(crate) fn decompress(input: &[u8], len: u64) -> Result<Vec<u8>, String> {
    let bound = (input.len() as u64).saturating_mul(MAX_RATIO);
    if len > bound {
        return Err(format!(
            "LZF string claims {len} bytes from {} compressed bytes",
            input.len()
        ));
    }
    let len = usize::try_from(len).map_err(|_| "LZF length too large for this machine")?;
    // The bound above keeps this within 132 times bytes actually held.
    let mut out = vec![0; len];
    let mut o = 0;
    let mut pos = 0;
    while pos < input.len() {
        let control = usize::from(input[pos]);
        pos += 1;
        if control < 32 {
            let run = control + 1;
            if pos + run > input.len() {
                return Err("LZF literal runs past the compressed bytes".into());
            }
            if o + run > len {
                return Err("LZF output longer than declared".into());
            }
            if pos + BLOCK <= input.len() && o + BLOCK <= len {
                // A whole block, of a size the compiler copies inline: what
                // lies past the run is written over by what follows it.
                out[o..o + BLOCK].copy_from_slice(&input[pos..pos + BLOCK]);
            } else {
                out[o..o + run].copy_from_slice(&input[pos..pos + run]);
            }
            pos += run;
            o += run;
        } else {
            let mut run = control >> 5;
            if run == 7 {
                run += usize::from(*input.get(pos).ok_or("LZF back reference cut short")?);
                pos += 1;
            }
            run += 2;
            let low = usize::from(*input.get(pos).ok_or("LZF back reference cut short")?);
            pos += 1;
            let distance = ((control & 0x1f) << 8) + low + 1;
            let start = o
                .checked_sub(distance)
                .ok_or("LZF back reference before the start")?;
            if o + run > len {
                return Err("LZF output longer than declared".into());
            }
            if distance >= BLOCK && run <= BLOCK && o + BLOCK <= len {
                out.copy_within(start..start + BLOCK, o);
            } else if distance >= run {
                out.copy_within(start..start + run, o);
            } else {
                // A reference closer than its length repeats the `distance`
                // bytes before it.
                for i in 0..run {
                    out[o + i] = out[start + i];
                }
            }
            o += run;
        }
    }
    if o != len {
        return Err(format!("LZF string expands to {o} bytes, declared {len}"));
    }
    Ok(out)
}

/// The size of the fixed copies of short runs.
const BLOCK: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_references() {
        // "abcabcabcabc": three literals, then a back reference of 9 at distance 3.
        let compressed = [2, b'a', b'b', b'c', (7 << 5), 0, 2];
        assert_eq!(decompress(&compressed, 12).unwrap(), b"abcabcabcabc");
        // Distance 3, length 4 (control 0b010_00000 + 2 = 4).
        let compressed = [2, b'x', b'y', b'z', (2 << 5), 2];
        assert_eq!(decompress(&compressed, 7).unwrap(), b"xyzxyzx");
        // Distance 1, length 264: one byte repeated, as Redis writes padding.
        let compressed = [1, b'v', 0, 0xe0, 255, 0];
        let mut expected = b"v".to_vec();
        expected.extend([0; 265]);
        assert_eq!(decompress(&compressed, 266).unwrap(), expected);
        // Distance 2 over an odd length.
        let compressed = [1, b'a', b'b', (3 << 5), 1];
        assert_eq!(decompress(&compressed, 7).unwrap(), b"abababa");
    }

    #[test]
    fn lies_are_errors() {
        assert!(decompress(&[2, b'a', b'b', b'c'], 4).is_err());
        assert!(decompress(&[2, b'a', b'b', b'c'], 2).is_err());
        assert!(decompress(&[5, b'a'], 6).is_err());
        assert!(decompress(&[0, b'a', (1 << 5), 5], 4).is_err());
        assert!(decompress(&[0, b'a'], u64::MAX).is_err());
        assert!(decompress(&[0, b'a', 0xe0], 10).is_err());
    }
}
