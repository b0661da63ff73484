//! [`KeyPatterns`]: which keys a restore writes, as Redis's glob patterns.

use std::fmt;
use std::str::FromStr;

/// Glob patterns of key names, as Redis's `KEYS` and `SCAN MATCH` take
/// them: `*` any run of bytes, `?` any one byte, `[abc]`, `[a-z]` and
/// `[^a]` a byte of a set, `\` the next byte as it is. A key is taken when
/// one pattern matches it whole.
///
/// ```
/// use dr_redis::KeyPatterns;
///
/// let durable: KeyPatterns = "ingress,{ingress}_*,sip_*".parse()?;
/// assert!(durable.matches(b"{ingress}_stream_key"));
/// assert!(durable.matches(b"sip_dispatch_rule"));
/// assert!(!durable.matches(b"rooms"));
/// # Ok::<(), dr_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPatterns {
    patterns: Vec<Vec<u8>>,
}

impl KeyPatterns {
    /// The keys matching any of `patterns`.
    ///
    /// # Errors
    /// [`dr_core::Error`] (invalid input) for no pattern, an empty one, or
    /// a `[` without its `]`.
    pub fn new<I, P>(patterns: I) -> dr_core::Result<Self>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        let patterns: Vec<Vec<u8>> = patterns.into_iter().map(|p| p.as_ref().to_vec()).collect();
        if patterns.is_empty() {
            return Err(dr_core::Error::invalid("key patterns", "none given"));
        }
        for pattern in &patterns {
            check(pattern).map_err(|reason| {
                dr_core::Error::invalid(
                    format!("key pattern {:?}", String::from_utf8_lossy(pattern)),
                    reason,
                )
            })?;
        }
        Ok(Self { patterns })
    }

    /// Whether `key` is taken.
    pub fn matches(&self, key: &[u8]) -> bool {
        self.patterns.iter().any(|p| glob(p, key))
    }

    /// The patterns, as given.
    pub fn patterns(&self) -> impl Iterator<Item = &[u8]> {
        self.patterns.iter().map(Vec::as_slice)
    }
}

impl FromStr for KeyPatterns {
    type Err = dr_core::Error;

    /// Comma-separated patterns.
    fn from_str(s: &str) -> dr_core::Result<Self> {
        Self::new(s.split(',').map(str::trim))
    }
}

impl fmt::Display for KeyPatterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<String> = self
            .patterns
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        f.write_str(&words.join(","))
    }
}

/// Why `pattern` cannot be matched with.
fn check(pattern: &[u8]) -> Result<(), &'static str> {
    if pattern.is_empty() {
        return Err("it is empty");
    }
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' => i += 2,
            b'[' => {
                let close = pattern[i + 1..]
                    .iter()
                    .position(|&b| b == b']')
                    .ok_or("a [ without its ]")?;
                i += close + 2;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Whether `pattern` matches all of `text`. Iterative, with one point to
/// go back to for the last `*`: linear in practice, never exponential.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(pattern, p, text[t])
                        && matched
                    {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == text[t] => {
                    p += 2;
                    t += 1;
                    continue;
                }
                b'\\' if p + 1 < pattern.len() => {}
                byte if byte == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            // The last `*` takes one byte more.
            Some((star_p, star_t)) => {
                star = Some((star_p, star_t + 1));
                p = star_p + 1;
                t = star_t + 1;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Whether the class at `pattern[at]` (a `[`) takes `byte`, and where the
/// pattern goes on after it; `None` for a class without its `]`.
fn class(pattern: &[u8], at: usize, byte: u8) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        let low = if pattern[i] == b'\\' && i + 1 < pattern.len() {
            i += 1;
            pattern[i]
        } else {
            pattern[i]
        };
        if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let high = pattern[i + 2];
            let (low, high) = if low <= high {
                (low, high)
            } else {
                (high, low)
            };
            matched |= (low..=high).contains(&byte);
            i += 3;
        } else {
            matched |= low == byte;
            i += 1;
        }
    }
    (i < pattern.len()).then_some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, key: &str) -> bool {
        KeyPatterns::new([pattern]).unwrap().matches(key.as_bytes())
    }

    #[test]
    fn globs_match_as_redis_matches_them() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("room_{ingress}:*", "room_{ingress}:standup"));
        assert!(!m("room_{ingress}:*", "room_participants:standup"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!m("*a*b*c*", "xxaxxcxxbxx"));
        assert!(m("sip_*", "sip_trunk"));
        assert!(!m("sip_*", "xsip_trunk"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(KeyPatterns::new(Vec::<&str>::new()).is_err());
        assert!(KeyPatterns::new([""]).is_err());
        assert!(KeyPatterns::new(["abc[de"]).is_err());
        assert!("a,b*".parse::<KeyPatterns>().unwrap().matches(b"bee"));
    }

    #[test]
    fn many_stars_take_linear_time() {
        let pattern = "*a".repeat(30) + "b";
        let key = "a".repeat(5000);
        assert!(!m(&pattern, &key));
    }
}
