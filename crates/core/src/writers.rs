//! Who wrote an archive. Every Safehold home (a workstation, a server) has a writer key —
//! Ed25519, `HOME/writer.key`, its owner's alone — and signs every archive it writes with it.
//! A repository keeps the list of writers a holder of its master key approved, authenticated by
//! the master key together with the repository's public key (so neither can be swapped by
//! someone who can only write to the storage), and each archive carries a copy of that list.
//! A restore or a deep verify accepts an archive only when its signature checks out and its
//! writer is on an approved list; `--trust-unsigned` is the administrator's explicit override.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::{Signer, SigningKey};
use hmac::{KeyInit, Mac};
use serde::Serialize;

use crate::archive::SecretKey;
use crate::error::{Error, ErrorCode, Result};

pub use crate::archive::{verify_signature as verify, ApprovedWriter, Writers};

const KEY_FILE: &str = "writer.key";

/// This home's writer key.
pub struct WriterKey {
    signing: SigningKey,
    pub name: String,
    home: PathBuf,
}

impl std::fmt::Debug for WriterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterKey").field("name", &self.name).field("public_key", &self.public_hex()).finish()
    }
}

fn default_name() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "safehold".into());
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).ok().filter(|h| !h.is_empty()).or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

impl WriterKey {
    /// The writer key of the home `home`, made on first use.
    pub fn for_home(home: &Path) -> Result<Arc<Self>> {
        let path = home.join(KEY_FILE);
        let io = |e: std::io::Error| Error::io(format!("cannot read or make the writer key {}", path.display()), &e);
        crate::private::create_dir_all(home).map_err(io)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
                let text = format!("{}\n{}\n", hex::encode(seed), default_name());
                // Two processes making it at once: the first one's stays, the other reads it.
                let tmp = crate::private::partial_beside(&path);
                crate::private::write(&tmp, text.as_bytes()).map_err(io)?;
                match std::fs::hard_link(&tmp, &path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(io(e));
                    }
                }
                let _ = std::fs::remove_file(&tmp);
                std::fs::read_to_string(&path).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        };
        let mut lines = text.lines();
        let seed: [u8; 32] = lines
            .next()
            .and_then(|l| hex::decode(l.trim()).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::validation(format!("{} is damaged: it holds no key; remove it and a new one is made (then approve it again)", path.display())))?;
        let name = lines.next().map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).unwrap_or_else(default_name);
        Ok(Arc::new(Self { signing: SigningKey::from_bytes(&seed), name, home: home.to_path_buf() }))
    }

    /// The writer key of the default home (`SAFEHOLD_HOME`, else the OS data directory).
    pub fn of_default_home() -> Result<Arc<Self>> {
        Self::for_home(&crate::private::default_home()?)
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }

    /// The signature of an archive whose bytes before the signature hash to `prefix_sha256`.
    pub fn sign(&self, prefix_sha256: &[u8; 32]) -> [u8; 64] {
        self.signing.sign(&crate::archive::signed_message(prefix_sha256)).to_bytes()
    }

    /// Remembers the public key a repository seals backups to the first time this home writes
    /// to it, and refuses a different one later (a repository file replaced on the storage by
    /// someone who wants the backups sealed to their own key).
    pub fn pin_repository_key(&self, repository_id: &str, public_key: &str) -> Result<()> {
        let dir = self.home.join("repository-keys");
        let path = dir.join(format!("{}.pub", repository_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>()));
        match std::fs::read_to_string(&path) {
            Ok(known) if known.trim() == public_key => Ok(()),
            Ok(known) => Err(Error::new(
                ErrorCode::AuthFailed,
                format!(
                    "the repository {repository_id} now gives the public key {public_key}, not {} as before: its repository file was replaced; nothing was written. If a super admin changed the key on purpose, remove {} and try again",
                    known.trim(),
                    path.display()
                ),
            )),
            Err(_) => {
                crate::private::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), &e))?;
                crate::private::write(&path, public_key.as_bytes()).map_err(|e| Error::io(format!("cannot write {}", path.display()), &e))
            }
        }
    }
}

/// HMAC-SHA256 of `body` under a key derived from the master key for `purpose`.
pub fn mac(master: &SecretKey, purpose: &str, body: &[u8]) -> String {
    let key = master.derive(purpose);
    let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key.0).expect("any key length");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// Whether `given` is the [`mac`] of `body`.
pub fn mac_ok(master: &SecretKey, purpose: &str, body: &[u8], given: &str) -> bool {
    !given.is_empty() && constant_eq(mac(master, purpose, body).as_bytes(), given.as_bytes())
}

fn mac_of(master: &SecretKey, repository_id: &str, list: &[ApprovedWriter]) -> String {
    mac(master, "approved-writers", &serde_json::to_vec(&(repository_id, list)).unwrap_or_default())
}

impl Writers {
    /// The list with `writer` approved (a new authenticator).
    /// The list with `writer` approved (a new authenticator). A list that does not check out is
    /// started again.
    pub fn with(&self, master: &SecretKey, repository_id: &str, writer: ApprovedWriter) -> Writers {
        let mut list = if self.authentic(master, repository_id) { self.list.clone() } else { Vec::new() };
        if !list.iter().any(|w| w.public_key == writer.public_key) {
            list.push(writer);
        }
        let mac = mac_of(master, repository_id, &list);
        Writers { list, mac }
    }

    /// Whether the master key authenticated this list, for this repository.
    pub fn authentic(&self, master: &SecretKey, repository_id: &str) -> bool {
        !self.mac.is_empty() && constant_eq(mac_of(master, repository_id, &self.list).as_bytes(), self.mac.as_bytes())
    }

    pub fn find(&self, public_key: &str) -> Option<&ApprovedWriter> {
        self.list.iter().find(|w| w.public_key == public_key)
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What an archive says of its writer, once checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Provenance {
    /// Signed by a writer a holder of the master key approved.
    Approved { writer: String, public_key: String },
    /// Signed, the signature sound, by a writer nobody approved (yet).
    Unapproved { writer: String, public_key: String },
    /// Signed, but the signature does not match the archive: changed after it was written.
    Forged,
    /// No signature (written before archives were signed, or by something else).
    Unsigned,
}

impl Provenance {
    pub fn is_approved(&self) -> bool {
        matches!(self, Provenance::Approved { .. })
    }

    /// Why a restore refuses the archive at `path`, and what to do.
    pub fn refusal(&self, path: &Path) -> Option<Error> {
        let p = path.display();
        let msg = match self {
            Provenance::Approved { .. } => return None,
            Provenance::Unapproved { writer, public_key } => format!(
                "the archive {p} was written by {writer} (writer key {}…), which no holder of this repository's key approved: if you trust that writer, approve it (safehold key approve-writer REPO {}) — or restore once with --trust-unsigned; nothing was restored",
                &public_key[..16.min(public_key.len())],
                &public_key[..16.min(public_key.len())]
            ),
            Provenance::Forged => format!("the archive {p} is not as its writer signed it: it was changed after it was written (or planted); nothing was restored"),
            Provenance::Unsigned => format!(
                "the archive {p} carries no writer's signature (written by a Safehold from before archives were signed, or planted): check where it came from, then restore with --trust-unsigned; nothing was restored"
            ),
        };
        Some(Error::new(ErrorCode::AuthFailed, msg))
    }
}

impl crate::archive::Signer for WriterKey {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn public_key(&self) -> String {
        self.public_hex()
    }
    fn sign(&self, prefix_sha256: &[u8; 32]) -> [u8; 64] {
        WriterKey::sign(self, prefix_sha256)
    }
}

/// What `reader`'s archive says of its writer, checked: its signature, and whether a list of
/// approved writers that the master key authenticates — the archive's own copy or `repository`'s —
/// names it (the reader must be unlocked for the master key to tell).
pub fn provenance(reader: &crate::archive::ArchiveReader, repository: Option<&Writers>) -> Result<Provenance> {
    let q = reader.quick_check()?;
    let Some(writer) = reader.header.writer.clone() else { return Ok(Provenance::Unsigned) };
    match q.signature_ok {
        None => return Ok(Provenance::Unsigned),
        Some(false) => return Ok(Provenance::Forged),
        Some(true) => {}
    }
    let approved = reader.master_key().is_some_and(|mk| {
        let id = &reader.header.repository_id;
        [reader.header.writers.as_ref(), repository].into_iter().flatten().any(|w| w.authentic(mk, id) && w.find(&writer.public_key).is_some())
    });
    Ok(if approved {
        Provenance::Approved { writer: writer.name, public_key: writer.public_key }
    } else {
        Provenance::Unapproved { writer: writer.name, public_key: writer.public_key }
    })
}
