//! Encryption at rest: a random master key, wrapped by a key derived from a
//! password or key file (Argon2id), and per object the repository's
//! [`Cipher`]: AES-256-GCM under a key of the object's own (new
//! repositories), or XChaCha20-Poly1305 (repositories of format 2).

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// What an object that fails its seal is said to be.
pub(crate) const AUTHENTICATION_FAILED: &str = "authentication failed (damaged or altered)";

/// The secret that unlocks a repository: a password or the bytes of a key file.
/// Its `Debug` output never shows it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A password.
    pub fn password(password: impl Into<String>) -> Self {
        Self(password.into().into_bytes())
    }

    /// The contents of a key file.
    pub fn key_file(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Argon2id cost parameters, stored with each key so it can be opened later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// OWASP's recommended Argon2id setting: 64 MiB, 3 passes, 1 lane.
    pub const RECOMMENDED: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    /// A cheap setting for tests only: it protects a weak password poorly.
    pub const INSECURE_FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn derive(&self, secret: &Secret, salt: &[u8]) -> Result<[u8; 32]> {
        #[cfg(test)]
        derivations::count(secret);
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| Error::InvalidInput {
                what: "key derivation parameters".into(),
                reason: e.to_string(),
            })?;
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(secret.as_bytes(), salt, &mut out)
            .map_err(|e| Error::InvalidInput {
                what: "password or key file".into(),
                reason: e.to_string(),
            })?;
        Ok(out)
    }
}

/// The repository's secret keys. `Debug` never shows them.
#[derive(Clone)]
pub(crate) struct MasterKey {
    /// Encrypts blobs.
    encryption: [u8; 32],
    /// Keys the chunk ids (keyed BLAKE3), so ids do not reveal content.
    id: [u8; 32],
    /// Seeds the chunker, so chunk boundaries do not reveal content.
    pub(crate) chunker_seed: u64,
    /// Derives each object's AES-256-GCM key ([`Cipher::Aes256GcmDerived`]):
    /// itself derived from `encryption`, so no key serves both ciphers.
    object_kdf: [u8; 32],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

const MASTER_LEN: usize = 32 + 32 + 8;

impl MasterKey {
    pub(crate) fn generate() -> Result<Self> {
        let mut bytes = [0u8; MASTER_LEN];
        fill_random(&mut bytes)?;
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; MASTER_LEN]) -> Self {
        let mut encryption = [0u8; 32];
        let mut id = [0u8; 32];
        encryption.copy_from_slice(&bytes[..32]);
        id.copy_from_slice(&bytes[32..64]);
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&bytes[64..]);
        Self {
            object_kdf: blake3::derive_key("drkit 2026-12 AES-256-GCM object keys", &encryption),
            encryption,
            id,
            chunker_seed: u64::from_le_bytes(seed),
        }
    }

    /// Encrypts `buf[NONCE_LEN..]` where it lies under `cipher`, writes a
    /// fresh nonce over `buf[..NONCE_LEN]` and appends the tag.
    fn seal_in_place(&self, cipher: Cipher, buf: &mut Vec<u8>, aad: &[u8]) -> Result<()> {
        match cipher {
            Cipher::XChaCha20Poly1305 => seal_in_place(&self.encryption, buf, aad),
            Cipher::Aes256GcmDerived => {
                let too_large = || Error::InvalidInput {
                    what: "blob".into(),
                    reason: "too large to encrypt, or no room for the nonce".into(),
                };
                if buf.len() < NONCE_LEN {
                    return Err(too_large());
                }
                let (nonce, body) = buf.split_at_mut(NONCE_LEN);
                fill_nonce(nonce)?;
                let (key, gcm_nonce) = self.object_key(nonce).map_err(|()| too_large())?;
                let tag = key
                    .seal_in_place_separate_tag(gcm_nonce, aws_lc_rs::aead::Aad::from(aad), body)
                    .map_err(|_| too_large())?;
                buf.extend_from_slice(tag.as_ref());
                Ok(())
            }
        }
    }

    /// Opens `sealed` (nonce, ciphertext, tag) where it lies under
    /// `cipher`: the plaintext's range in it. On failure the bytes may be
    /// changed.
    fn open_in_place(
        &self,
        cipher: Cipher,
        sealed: &mut [u8],
        aad: &[u8],
    ) -> std::result::Result<std::ops::Range<usize>, ()> {
        match cipher {
            Cipher::XChaCha20Poly1305 => open_in_place(&self.encryption, sealed, aad),
            Cipher::Aes256GcmDerived => {
                if sealed.len() < NONCE_LEN + TAG_LEN {
                    return Err(());
                }
                let (nonce, body) = sealed.split_at_mut(NONCE_LEN);
                let (key, gcm_nonce) = self.object_key(nonce)?;
                let plain = key
                    .open_in_place(gcm_nonce, aws_lc_rs::aead::Aad::from(aad), body)
                    .map_err(|_| ())?;
                Ok(NONCE_LEN..NONCE_LEN + plain.len())
            }
        }
    }

    /// The AES-256-GCM key and nonce of the object whose 24-byte nonce is
    /// `nonce`.
    fn object_key(
        &self,
        nonce: &[u8],
    ) -> std::result::Result<(aws_lc_rs::aead::LessSafeKey, aws_lc_rs::aead::Nonce), ()> {
        use aws_lc_rs::aead::{
            AES_256_GCM, LessSafeKey, NONCE_LEN as GCM_NONCE_LEN, Nonce, UnboundKey,
        };
        let key = blake3::keyed_hash(&self.object_kdf, &nonce[..16]);
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.as_bytes()).map_err(|_| ())?);
        let mut gcm = [0u8; GCM_NONCE_LEN];
        gcm[..8].copy_from_slice(&nonce[16..NONCE_LEN]);
        Ok((key, Nonce::assume_unique_for_key(gcm)))
    }

    fn to_bytes(&self) -> [u8; MASTER_LEN] {
        let mut out = [0u8; MASTER_LEN];
        out[..32].copy_from_slice(&self.encryption);
        out[32..64].copy_from_slice(&self.id);
        out[64..].copy_from_slice(&self.chunker_seed.to_le_bytes());
        out
    }
}

/// A key file: the master key wrapped by a key derived from a secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WrappedKey {
    pub(crate) kdf: String,
    pub(crate) params: KdfParams,
    #[serde(with = "b64")]
    pub(crate) salt: Vec<u8>,
    /// Nonce, then the encrypted master key and its tag.
    #[serde(with = "b64")]
    pub(crate) wrapped: Vec<u8>,
}

const KDF_NAME: &str = "argon2id";

impl WrappedKey {
    pub(crate) fn wrap(master: &MasterKey, secret: &Secret, params: KdfParams) -> Result<Self> {
        let mut salt = vec![0u8; 16];
        fill_random(&mut salt)?;
        let kek = params.derive(secret, &salt)?;
        let wrapped = seal(&kek, &master.to_bytes(), KDF_NAME.as_bytes())?;
        Ok(Self {
            kdf: KDF_NAME.into(),
            params,
            salt,
            wrapped,
        })
    }

    /// The master key, or `None` if the secret is not the right one.
    pub(crate) fn unwrap_with(&self, secret: &Secret) -> Result<Option<MasterKey>> {
        if self.kdf != KDF_NAME {
            return Err(Error::InvalidInput {
                what: "key file".into(),
                reason: format!("unknown key derivation {:?}", self.kdf),
            });
        }
        let kek = self.params.derive(secret, &self.salt)?;
        let Ok(plain) = open(&kek, &self.wrapped, KDF_NAME.as_bytes()) else {
            return Ok(None);
        };
        let bytes: [u8; MASTER_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| Error::corrupt("key file", "master key has the wrong length"))?;
        Ok(Some(MasterKey::from_bytes(&bytes)))
    }
}

/// What seals a key cache entry: a key derived cheaply (BLAKE3, not
/// Argon2id) from the secret and the salt of the wrapped key the entry
/// stands for, and the entry's address as associated data. Only the secret
/// that unwraps the key opens the entry; a wrong one, or an entry of
/// another repository or key file, does not open. `Debug` never shows the key.
#[derive(Clone)]
pub(crate) struct CacheSeal {
    key: [u8; 32],
    aad: Vec<u8>,
}

/// The plaintext of a cache entry starts with this version byte.
const CACHE_ENTRY_FORMAT: u8 = 1;

impl CacheSeal {
    /// The seal of the cache entry `address` (the repository id and the key
    /// file's content name) for `wrapped`, opened with `secret`.
    pub(crate) fn new(secret: &Secret, wrapped: &WrappedKey, address: &str) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("drkit 2025-01 key cache entry key");
        hasher.update(&(secret.as_bytes().len() as u64).to_le_bytes());
        hasher.update(secret.as_bytes());
        hasher.update(&wrapped.salt);
        let mut aad = b"drkit key cache entry ".to_vec();
        aad.extend_from_slice(address.as_bytes());
        Self {
            key: hasher.finalize().into(),
            aad,
        }
    }

    /// `master` and `note` (free bytes the cache keeps beside the key),
    /// sealed.
    pub(crate) fn seal(&self, master: &MasterKey, note: &[u8]) -> Result<Vec<u8>> {
        let mut plain = Vec::with_capacity(1 + MASTER_LEN + note.len());
        plain.push(CACHE_ENTRY_FORMAT);
        plain.extend_from_slice(&master.to_bytes());
        plain.extend_from_slice(note);
        seal(&self.key, &plain, &self.aad)
    }

    /// The master key and the note of a sealed entry, or `None` if it does
    /// not open (another secret, damage) or is of an unknown format.
    pub(crate) fn open(&self, sealed: &[u8]) -> Option<(MasterKey, Vec<u8>)> {
        let plain = open(&self.key, sealed, &self.aad).ok()?;
        let (&format, rest) = plain.split_first()?;
        if format != CACHE_ENTRY_FORMAT || rest.len() < MASTER_LEN {
            return None;
        }
        let (master, note) = rest.split_at(MASTER_LEN);
        let master: &[u8; MASTER_LEN] = master.try_into().ok()?;
        Some((MasterKey::from_bytes(master), note.to_vec()))
    }
}

/// The AEAD a repository seals its objects with. Both take a random
/// 24-byte nonce per object and add a 16-byte tag, so objects are laid out
/// alike: nonce, ciphertext, tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cipher {
    /// AES-256-GCM under a key of the object's own: derived (keyed BLAKE3,
    /// from a key the master key derives for this alone) from the first 16
    /// bytes of its nonce, with the last 8 (zero-padded) as GCM's nonce.
    /// XChaCha's nonce space, so that random nonces never repeat under one
    /// key however many objects there are, at the speed of the processor's
    /// AES instructions (several times XChaCha20-Poly1305's where it has
    /// vector AES). What new repositories use.
    #[serde(rename = "aes-256-gcm-derived")]
    Aes256GcmDerived,
    /// XChaCha20-Poly1305 under the master key: repositories of format 2.
    #[serde(rename = "xchacha20-poly1305")]
    XChaCha20Poly1305,
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cipher::Aes256GcmDerived => "AES-256-GCM (a key per object)",
            Cipher::XChaCha20Poly1305 => "XChaCha20-Poly1305",
        })
    }
}

/// How blobs are sealed and named: with a master key, or in the clear.
#[derive(Debug, Clone)]
pub(crate) enum Crypter {
    /// No encryption; ids are plain BLAKE3.
    Plain,
    /// Sealed with the cipher; ids are BLAKE3 keyed with the id key.
    Keyed(MasterKey, Cipher),
}

/// A blob or chunk id: 32 bytes.
pub(crate) type Id = [u8; 32];

/// Hashing for maps keyed by [`Id`]: an id is already a cryptographic
/// hash, so its first eight bytes, mixed with a key of this process's own,
/// stand in for SipHash over all 32 (a backup of a large data set looks up
/// and inserts hundreds of thousands of them).
#[derive(Clone)]
pub(crate) struct IdHash {
    key: u64,
}

impl Default for IdHash {
    fn default() -> Self {
        static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let key = *KEY.get_or_init(|| {
            let mut bytes = [0u8; 8];
            // Without randomness the key is fixed; the ids stay as spread.
            getrandom::fill(&mut bytes).ok();
            u64::from_le_bytes(bytes) | 1
        });
        Self { key }
    }
}

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            key: self.key,
            state: 0,
        }
    }
}

/// [`IdHash`]'s hasher.
pub(crate) struct IdHasher {
    key: u64,
    state: u64,
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // An id arrives in one write of its 32 bytes (after its length):
        // the first eight are enough. Anything else is folded in whole.
        let take = if bytes.len() == 32 { 8 } else { bytes.len() };
        for word in bytes[..take].chunks(8) {
            let mut le = [0u8; 8];
            le[..word.len()].copy_from_slice(word);
            self.state = (self.state.rotate_left(29) ^ u64::from_le_bytes(le))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_usize(&mut self, _length: usize) {}

    fn finish(&self) -> u64 {
        let mixed = (self.state ^ self.key).wrapping_mul(0xff51_afd7_ed55_8ccd);
        mixed ^ (mixed >> 32)
    }
}

/// A map keyed by [`Id`].
pub(crate) type IdMap<V> = std::collections::HashMap<Id, V, IdHash>;

/// A set of [`Id`]s.
pub(crate) type IdSet = std::collections::HashSet<Id, IdHash>;

impl Crypter {
    /// The id of a chunk's plaintext.
    pub(crate) fn id(&self, data: &[u8]) -> Id {
        match self {
            Crypter::Plain => blake3::hash(data).into(),
            Crypter::Keyed(key, _) => blake3::keyed_hash(&key.id, data).into(),
        }
    }

    /// The chunker's gear seed.
    pub(crate) fn chunker_seed(&self) -> u64 {
        match self {
            Crypter::Plain => 0,
            Crypter::Keyed(key, _) => key.chunker_seed,
        }
    }

    /// Seals `plain`; `context` (the object's role) is authenticated too.
    pub(crate) fn seal(&self, plain: &[u8], context: &[u8]) -> Result<Vec<u8>> {
        match self {
            Crypter::Plain => Ok(plain.to_vec()),
            Crypter::Keyed(key, cipher) => {
                let mut buf = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
                buf.resize(NONCE_LEN, 0);
                buf.extend_from_slice(plain);
                key.seal_in_place(*cipher, &mut buf, context)?;
                Ok(buf)
            }
        }
    }

    /// Bytes [`Crypter::seal_in_place`] expects in front of the plaintext.
    pub(crate) fn prefix_len(&self) -> usize {
        match self {
            Crypter::Plain => 0,
            Crypter::Keyed(..) => NONCE_LEN,
        }
    }

    /// Bytes sealing adds in all: a buffer of the plaintext's length plus
    /// this never reallocates.
    pub(crate) fn overhead(&self) -> usize {
        match self {
            Crypter::Plain => 0,
            Crypter::Keyed(..) => NONCE_LEN + TAG_LEN,
        }
    }

    /// Seals `buf[prefix_len..]` where it lies: the same bytes [`Crypter::seal`]
    /// returns, without copying the plaintext. The first
    /// [`Crypter::prefix_len`] bytes of `buf` are overwritten (with the nonce).
    pub(crate) fn seal_in_place(&self, buf: &mut Vec<u8>, context: &[u8]) -> Result<()> {
        match self {
            Crypter::Plain => Ok(()),
            Crypter::Keyed(key, cipher) => key.seal_in_place(*cipher, buf, context),
        }
    }

    /// Opens a sealed object where it lies in `sealed` (nonce, ciphertext,
    /// tag): the plaintext is decrypted over the ciphertext, and its range
    /// in `sealed` returned. On failure (`Err(())`) the bytes are as they
    /// were.
    pub(crate) fn open_in_place(
        &self,
        sealed: &mut [u8],
        context: &[u8],
    ) -> std::result::Result<std::ops::Range<usize>, ()> {
        match self {
            Crypter::Plain => Ok(0..sealed.len()),
            Crypter::Keyed(key, cipher) => key.open_in_place(*cipher, sealed, context),
        }
    }

    /// Opens a sealed blob, failing with `Corrupt` naming `what` if it was altered.
    pub(crate) fn open(&self, sealed: &[u8], context: &[u8], what: &str) -> Result<Vec<u8>> {
        match self {
            Crypter::Plain => Ok(sealed.to_vec()),
            Crypter::Keyed(key, cipher) => {
                let mut buf = sealed.to_vec();
                let plain = key
                    .open_in_place(*cipher, &mut buf, context)
                    .map_err(|()| Error::corrupt(what, AUTHENTICATION_FAILED))?;
                buf.truncate(plain.end);
                buf.drain(..plain.start);
                Ok(buf)
            }
        }
    }
}

/// `nonce | ciphertext | tag` of `plain`.
fn seal(key: &[u8; 32], plain: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
    buf.resize(NONCE_LEN, 0);
    buf.extend_from_slice(plain);
    seal_in_place(key, &mut buf, aad)?;
    Ok(buf)
}

/// Encrypts `buf[NONCE_LEN..]` where it lies, writes a fresh nonce over
/// `buf[..NONCE_LEN]` and appends the tag: what [`seal`] returns.
fn seal_in_place(key: &[u8; 32], buf: &mut Vec<u8>, aad: &[u8]) -> Result<()> {
    if buf.len() < NONCE_LEN {
        return Err(Error::InvalidInput {
            what: "blob".into(),
            reason: "no room for the nonce".into(),
        });
    }
    let (nonce, body) = buf.split_at_mut(NONCE_LEN);
    fill_nonce(nonce)?;
    let tag = XChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, body)
        .map_err(|_| Error::InvalidInput {
            what: "blob".into(),
            reason: "too large to encrypt".into(),
        })?;
    buf.extend_from_slice(&tag);
    Ok(())
}

fn open(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> std::result::Result<Vec<u8>, ()> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(());
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
        .map_err(|_| ())
}

thread_local! {
    /// Random bytes from the system, taken a nonce at a time: one
    /// `getrandom` call for many small blobs rather than one for each.
    static NONCES: std::cell::RefCell<(Vec<u8>, usize)> = const {
        std::cell::RefCell::new((Vec::new(), 0))
    };
}

/// Fills `nonce` with random bytes never handed out before, from this
/// thread's reserve of the system's random bytes.
fn fill_nonce(nonce: &mut [u8]) -> Result<()> {
    const RESERVE: usize = 170 * NONCE_LEN;
    NONCES.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (reserve, used) = &mut *cell;
        if reserve.len() - *used < nonce.len() {
            reserve.resize(RESERVE.max(nonce.len()), 0);
            fill_random(reserve)?;
            *used = 0;
        }
        nonce.copy_from_slice(&reserve[*used..*used + nonce.len()]);
        // Bytes handed out are not kept.
        reserve[*used..*used + nonce.len()].fill(0);
        *used += nonce.len();
        Ok(())
    })
}

fn open_in_place(
    key: &[u8; 32],
    sealed: &mut [u8],
    aad: &[u8],
) -> std::result::Result<std::ops::Range<usize>, ()> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(());
    }
    let end = sealed.len() - TAG_LEN;
    let (head, tag) = sealed.split_at_mut(end);
    let (nonce, body) = head.split_at_mut(NONCE_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, body, (&*tag).into())
        .map_err(|_| ())?;
    Ok(NONCE_LEN..end)
}

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::InvalidInput {
        what: "random source".into(),
        reason: e.to_string(),
    })
}

/// The name of an object named by its content: the hex BLAKE3 of its bytes.
pub(crate) fn content_name(bytes: &[u8]) -> String {
    hex(blake3::hash(bytes).as_bytes())
}

/// `bytes` in lowercase hexadecimal. A table, not `format!`: a commit
/// writes the ids of every chunk of a snapshot this way.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    // Only ASCII digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

pub(crate) fn parse_hex_id(text: &str) -> Option<Id> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// How many times each secret went through Argon2id in this process: what
/// tests count to tell that an open did not derive a key.
#[cfg(test)]
pub(crate) mod derivations {
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};

    use super::Secret;

    static COUNTS: Mutex<Option<HashMap<Vec<u8>, usize>>> = Mutex::new(None);

    pub(super) fn count(secret: &Secret) {
        let mut counts = COUNTS.lock().unwrap_or_else(PoisonError::into_inner);
        *counts
            .get_or_insert_with(HashMap::new)
            .entry(secret.as_bytes().to_vec())
            .or_default() += 1;
    }

    /// Argon2id derivations from `secret` so far (tests use a secret of their own).
    pub(crate) fn of(secret: &Secret) -> usize {
        COUNTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|c| c.get(secret.as_bytes()).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_keys_open_only_with_their_secret() {
        let master = MasterKey::generate().unwrap();
        let wrapped = WrappedKey::wrap(
            &master,
            &Secret::password("right"),
            KdfParams::INSECURE_FAST,
        )
        .unwrap();
        let opened = wrapped
            .unwrap_with(&Secret::password("right"))
            .unwrap()
            .unwrap();
        assert_eq!(opened.to_bytes(), master.to_bytes());
        assert!(
            wrapped
                .unwrap_with(&Secret::password("wrong"))
                .unwrap()
                .is_none()
        );
        let json = serde_json::to_string(&wrapped).unwrap();
        let back: WrappedKey = serde_json::from_str(&json).unwrap();
        assert!(
            back.unwrap_with(&Secret::password("right"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn sealing_in_place_opens_like_sealing() {
        for c in [
            Crypter::Plain,
            Crypter::Keyed(MasterKey::generate().unwrap(), Cipher::Aes256GcmDerived),
            Crypter::Keyed(MasterKey::generate().unwrap(), Cipher::XChaCha20Poly1305),
        ] {
            let mut buf = vec![0xAA; c.prefix_len()];
            buf.extend_from_slice(b"in place");
            let capacity = buf.len() + c.overhead();
            buf.reserve_exact(c.overhead());
            c.seal_in_place(&mut buf, b"data").unwrap();
            assert_eq!(buf.len(), b"in place".len() + c.overhead());
            assert!(buf.capacity() >= capacity);
            assert_eq!(c.open(&buf, b"data", "x").unwrap(), b"in place");
            if matches!(c, Crypter::Keyed(..)) {
                assert!(c.open(&buf, b"index", "x").is_err());
            }
        }
    }

    #[test]
    fn sealed_blobs_detect_tampering() {
        for cipher in [Cipher::Aes256GcmDerived, Cipher::XChaCha20Poly1305] {
            let c = Crypter::Keyed(MasterKey::generate().unwrap(), cipher);
            let sealed = c.seal(b"hello", b"data").unwrap();
            assert_eq!(sealed.len(), 5 + NONCE_LEN + TAG_LEN);
            assert_eq!(c.open(&sealed, b"data", "x").unwrap(), b"hello");
            assert!(
                c.open(&sealed, b"index", "x").is_err(),
                "{cipher}: context must be authenticated"
            );
            // Every byte, nonce and tag included.
            for at in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[at] ^= 1;
                assert!(
                    matches!(c.open(&bad, b"data", "x"), Err(Error::Corrupt { .. })),
                    "{cipher}: byte {at}"
                );
            }
            assert!(c.open(&sealed[..10], b"data", "x").is_err());
        }
    }

    #[test]
    fn each_cipher_opens_only_its_own_objects() {
        let master = MasterKey::generate().unwrap();
        let aes = Crypter::Keyed(master.clone(), Cipher::Aes256GcmDerived);
        let chacha = Crypter::Keyed(master, Cipher::XChaCha20Poly1305);
        let a = aes.seal(b"same plaintext", b"data").unwrap();
        let b = chacha.seal(b"same plaintext", b"data").unwrap();
        assert!(chacha.open(&a, b"data", "x").is_err());
        assert!(aes.open(&b, b"data", "x").is_err());
        // Fresh nonces: the same plaintext never seals alike.
        assert_ne!(a, aes.seal(b"same plaintext", b"data").unwrap());
        // A large object (GCM's counter runs over many blocks) round-trips.
        let big: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(
            aes.open(&aes.seal(&big, b"data").unwrap(), b"data", "x")
                .unwrap(),
            big
        );
    }

    #[test]
    fn keys_never_print() {
        let master = MasterKey::generate().unwrap();
        assert_eq!(format!("{master:?}"), "MasterKey(<redacted>)");
        assert_eq!(
            format!("{:?}", Crypter::Keyed(master, Cipher::Aes256GcmDerived)),
            "Keyed(MasterKey(<redacted>), Aes256GcmDerived)"
        );
        assert_eq!(
            format!("{:?}", Secret::password("hunter2")),
            "Secret(<redacted>)"
        );
    }

    #[test]
    fn ids_are_keyed_when_encrypted() {
        let plain = Crypter::Plain.id(b"abc");
        assert_eq!(
            hex(&plain),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        let a = Crypter::Keyed(MasterKey::generate().unwrap(), Cipher::Aes256GcmDerived).id(b"abc");
        let b = Crypter::Keyed(MasterKey::generate().unwrap(), Cipher::Aes256GcmDerived).id(b"abc");
        assert_ne!(a, b);
        assert_ne!(a, plain);
        assert_eq!(parse_hex_id(&hex(&a)), Some(a));
    }
}
