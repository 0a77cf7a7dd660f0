//! Keys of the archive format. Each archive has a random data key (DK); the DK is wrapped by the
//! repository's master key (MK); the MK is wrapped by key slots: a password (Argon2id) and a
//! recovery key. Archives carry copies of the MK slots, so an archive alone plus the password or
//! the recovery key opens it (disaster recovery without the repository file).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorCode, Result};

pub const KEY_LEN: usize = 32;

/// A 256-bit secret key. Never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub [u8; KEY_LEN]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    pub fn random() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut k);
        Self(k)
    }
    pub fn cipher(&self) -> Aes256Gcm {
        // A 32-byte slice is always a valid AES-256 key.
        Aes256Gcm::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("32-byte key"))
    }
    /// A key for a purpose, derived from this one (so one key never serves two roles).
    pub fn derive(&self, purpose: &str) -> SecretKey {
        let mut h = Sha256::new();
        h.update(b"safehold-derive\0");
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(self.0);
        SecretKey(h.finalize().into())
    }
}

/// Argon2id parameters, stored with each password slot so they can be raised later.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        // OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
        Self { m_cost_kib: 19_456, t_cost: 2, p_cost: 1 }
    }
}

/// One way to unwrap a key: the wrapped key, and how to get the key-encryption key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeySlot {
    /// KEK = Argon2id(password, salt).
    Password { salt: String, kdf: KdfParams, nonce: String, wrapped: String },
    /// KEK derived from the printable recovery key.
    Recovery { nonce: String, wrapped: String },
    /// The archive's data key wrapped by the repository's master key.
    Repository { repository_id: String, nonce: String, wrapped: String },
    /// The archive's data key sealed to the repository's X25519 public key: KEK = SHA-256 of the
    /// Diffie-Hellman secret of a one-time key pair (`ephemeral`, its public half) and the
    /// repository's key pair. Writing needs only the public key; reading needs the private key,
    /// which the master key (password, recovery kit) opens.
    Public { public_key: String, ephemeral: String, nonce: String, wrapped: String },
}

/// A new X25519 key pair: (private key, public key hex).
pub fn x25519_pair() -> (SecretKey, String) {
    let private = SecretKey::random();
    let public = x25519_public(&private);
    (private, public)
}

/// The public key (hex) of an X25519 private key.
pub fn x25519_public(private: &SecretKey) -> String {
    hex::encode(x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private.0)).as_bytes())
}

fn x25519_kek(shared: &[u8; 32], ephemeral: &[u8; 32], public: &[u8; 32]) -> SecretKey {
    let mut h = Sha256::new();
    h.update(b"safehold-x25519\0");
    h.update(shared);
    h.update(ephemeral);
    h.update(public);
    SecretKey(h.finalize().into())
}

fn public_bytes(hex_key: &str) -> Option<[u8; 32]> {
    hex::decode(hex_key).ok()?.try_into().ok()
}

/// Seals `key` to the public key `public_hex` (binding `aad`).
pub fn seal_to_public(public_hex: &str, key: &SecretKey, aad: &[u8]) -> Result<KeySlot> {
    let public = public_bytes(public_hex).ok_or_else(|| Error::validation("the repository's public key is damaged"))?;
    let eph = x25519_dalek::StaticSecret::from(SecretKey::random().0);
    let eph_pub = x25519_dalek::PublicKey::from(&eph);
    let shared = eph.diffie_hellman(&x25519_dalek::PublicKey::from(public));
    if !shared.was_contributory() {
        // A low-order point would make the key known to anyone.
        return Err(Error::validation("the repository's public key is not a valid key: the repository file was changed"));
    }
    let (nonce, wrapped) = wrap(&x25519_kek(shared.as_bytes(), eph_pub.as_bytes(), &public), key, aad)?;
    Ok(KeySlot::Public { public_key: public_hex.to_string(), ephemeral: hex::encode(eph_pub.as_bytes()), nonce, wrapped })
}

/// Opens a [`KeySlot::Public`] with the private key; `None` when it is not the right key.
pub fn open_sealed(private: &SecretKey, slot: &KeySlot, aad: &[u8]) -> Option<SecretKey> {
    let KeySlot::Public { public_key, ephemeral, nonce, wrapped } = slot else { return None };
    let (public, eph) = (public_bytes(public_key)?, public_bytes(ephemeral)?);
    let secret = x25519_dalek::StaticSecret::from(private.0);
    if x25519_dalek::PublicKey::from(&secret).as_bytes() != &public {
        return None;
    }
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(eph));
    unwrap(&x25519_kek(shared.as_bytes(), &eph, &public), nonce, wrapped, aad)
}

fn crypto_error(what: &str) -> Error {
    Error::new(ErrorCode::Internal, format!("encryption failed while {what}"))
}

/// Encrypts `key` under `kek` with AES-256-GCM, binding `aad`. Returns (nonce hex, ciphertext hex).
pub fn wrap(kek: &SecretKey, key: &SecretKey, aad: &[u8]) -> Result<(String, String)> {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let ct = kek
        .cipher()
        .encrypt(&nonce.into(), Payload { msg: &key.0, aad })
        .map_err(|_| crypto_error("wrapping a key"))?;
    Ok((hex::encode(nonce), hex::encode(ct)))
}

/// Reverses [`wrap`]; `None` when the KEK is wrong or the slot was altered.
pub fn unwrap(kek: &SecretKey, nonce: &str, wrapped: &str, aad: &[u8]) -> Option<SecretKey> {
    let nonce: [u8; 12] = hex::decode(nonce).ok()?.try_into().ok()?;
    let ct = hex::decode(wrapped).ok()?;
    let pt = kek.cipher().decrypt(&nonce.into(), Payload { msg: &ct, aad }).ok()?;
    Some(SecretKey(pt.try_into().ok()?))
}

/// Derives a key-encryption key from a password.
pub fn password_kek(password: &str, salt: &[u8], kdf: KdfParams) -> Result<SecretKey> {
    let params = argon2::Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(KEY_LEN))
        .map_err(|e| Error::validation(format!("invalid key-derivation parameters in the archive: {e}")).caused_by(&e))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; KEY_LEN];
    argon
        .hash_password_into(password.as_bytes(), salt, &mut out)
        .map_err(|e| Error::validation(format!("cannot derive a key from the password: {e}")).caused_by(&e))?;
    Ok(SecretKey(out))
}

pub fn password_slot(password: &str, mk: &SecretKey, aad: &[u8], kdf: KdfParams) -> Result<KeySlot> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let kek = password_kek(password, &salt, kdf)?;
    let (nonce, wrapped) = wrap(&kek, mk, aad)?;
    Ok(KeySlot::Password { salt: hex::encode(salt), kdf, nonce, wrapped })
}

pub fn recovery_kek(recovery: &SecretKey) -> SecretKey {
    recovery.derive("recovery-kek")
}

pub fn recovery_slot(recovery: &SecretKey, mk: &SecretKey, aad: &[u8]) -> Result<KeySlot> {
    let (nonce, wrapped) = wrap(&recovery_kek(recovery), mk, aad)?;
    Ok(KeySlot::Recovery { nonce, wrapped })
}

/// What opens a repository or an archive.
#[derive(Clone)]
pub enum Unlock {
    Password(String),
    Recovery(SecretKey),
    /// A super admin's own X25519 private key (opened by their sign-in password): opens the
    /// master key sealed to their public key.
    Operator(SecretKey),
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unlock::Password(_) => "Unlock::Password(…)",
            Unlock::Recovery(_) => "Unlock::Recovery(…)",
            Unlock::Operator(_) => "Unlock::Operator(…)",
        })
    }
}

/// Opens the master key from `slots` with `unlock`; `None` when nothing matches.
pub fn open_master(slots: &[KeySlot], unlock: &Unlock, aad: &[u8]) -> Result<Option<SecretKey>> {
    for slot in slots {
        match (slot, unlock) {
            (KeySlot::Password { salt, kdf, nonce, wrapped }, Unlock::Password(pw)) => {
                let salt = hex::decode(salt).map_err(|_| Error::validation("a password key slot is damaged"))?;
                if let Some(k) = unwrap(&password_kek(pw, &salt, *kdf)?, nonce, wrapped, aad) {
                    return Ok(Some(k));
                }
            }
            (KeySlot::Recovery { nonce, wrapped }, Unlock::Recovery(rk)) => {
                if let Some(k) = unwrap(&recovery_kek(rk), nonce, wrapped, aad) {
                    return Ok(Some(k));
                }
            }
            (KeySlot::Public { .. }, Unlock::Operator(private)) => {
                if let Some(k) = open_sealed(private, slot, aad) {
                    return Ok(Some(k));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// The printable form of a recovery key: `SHRK-` and 16 groups of 4 hex digits.
pub fn format_recovery_key(k: &SecretKey) -> String {
    let hex = hex::encode_upper(k.0);
    let groups: Vec<&str> = (0..hex.len()).step_by(4).map(|i| &hex[i..i + 4]).collect();
    format!("SHRK-{}", groups.join("-"))
}

/// Reads a recovery key as printed (dashes, spaces and case do not matter).
pub fn parse_recovery_key(text: &str) -> Result<SecretKey> {
    let cleaned: String = text
        .trim()
        .trim_start_matches("SHRK-")
        .trim_start_matches("shrk-")
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    let bytes = hex::decode(&cleaned).ok().filter(|b| b.len() == KEY_LEN).ok_or_else(|| {
        Error::validation("that is not a Safehold recovery key: it has the form SHRK-XXXX-XXXX-… with 64 hex digits")
    })?;
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&bytes);
    Ok(SecretKey(k))
}

/// What the master key is derived to for sealing the repository's private key.
pub const PRIVATE_SEAL: &str = "x25519-private";

/// Opens a repository's (or an archive's copy of its) sealed private key with the master key.
pub fn open_private(master: &SecretKey, sealed: &(String, String), repository_id: &str) -> Option<SecretKey> {
    unwrap(&master.derive(PRIVATE_SEAL), &sealed.0, &sealed.1, &super::master_aad(repository_id))
}
