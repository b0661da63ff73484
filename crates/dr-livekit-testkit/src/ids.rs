//! Server-assigned ids (`RM_`, `PA_`, `EG_`, ... and twelve base-62 characters, as LiveKit's
//! `guid.New`), secrets and clocks.

use std::time::{SystemTime, UNIX_EPOCH};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A small generator (splitmix64) seeded from the OS once: ids need to be unique and
/// unguessable enough for tests, not cryptographic, and must be cheap for 50 000 joins.
#[derive(Debug)]
pub(crate) struct Ids {
    state: u64,
}

impl Ids {
    pub(crate) fn new() -> Self {
        let seed = getrandom::u64().unwrap_or_else(|_| now_ns() as u64);
        Ids { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `prefix` and `len` random base-62 characters.
    pub(crate) fn with_len(&mut self, prefix: &str, len: usize) -> String {
        let mut id = String::with_capacity(prefix.len() + len);
        id.push_str(prefix);
        let mut bits = self.next();
        let mut left = 10;
        for _ in 0..len {
            if left == 0 {
                bits = self.next();
                left = 10;
            }
            id.push(char::from(BASE62[(bits % 62) as usize]));
            bits /= 62;
            left -= 1;
        }
        id
    }

    /// `prefix` and twelve random base-62 characters, as LiveKit's `guid.New(prefix)`.
    pub(crate) fn id(&mut self, prefix: &str) -> String {
        self.with_len(prefix, 12)
    }
}

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

pub(crate) fn now_s() -> i64 {
    since_epoch().as_secs() as i64
}

pub(crate) fn now_ms() -> i64 {
    since_epoch().as_millis() as i64
}

pub(crate) fn now_ns() -> i64 {
    since_epoch().as_nanos() as i64
}
