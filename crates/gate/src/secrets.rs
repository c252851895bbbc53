//! Envelope encryption of the Jenkins tokens jgate stores (security.md §3.1, §3.2).
//!
//! # How a secret is stored
//!
//! * One **master key** (32 random bytes) per installation, loaded by [`MasterKey::load_or_create`] from
//!   `JGATE_MASTER_KEY` or a `0600` key file. It never encrypts data itself: two sub-keys are derived from it
//!   (HKDF-Expand with HMAC-SHA-256 and versioned labels), one to wrap data keys and one for the audit log HMAC
//!   ([`MasterKey::audit_hmac_key`]), so the two uses can never share a key. The derived audit key is audit key
//!   version 1; later versions are random keys. All are stored sealed with [`seal_key`] and re-wrapped by a
//!   rotation, so records sealed under any version keep verifying after any number of rotations.
//! * [`MasterKey::check_value`] (an HMAC of a fixed message under a third sub-key) is stored on first use and
//!   compared on every open, so a wrong master key is refused before anything is written.
//! * [`seal`] encrypts each secret with its **own random data key** (XChaCha20-Poly1305, random 24-byte nonce),
//!   then wraps that data key with the master key's wrapping sub-key. The result, [`Sealed`], is what goes into
//!   the database row, together with the id of the master key that wrapped it.
//! * The caller passes an **`aad`** string naming the row (e.g. `"controller:prod:token"`). It is authenticated
//!   with the ciphertext and with the wrapped data key, so a sealed value copied into another row does not open.
//! * [`rewrap`] moves a secret to a new master key by re-wrapping only its data key (key rotation; the ciphertext
//!   is not touched), like Vault Transit's `rewrap`.
//!
//! # Handling rules
//!
//! * Plaintext goes in and comes out as [`SecretString`] (redacted `Debug`, zeroized on drop).
//! * Key material lives in [`Zeroizing`] buffers and is wiped when dropped; `Debug` of [`MasterKey`] prints only
//!   its non-secret [id](MasterKey::id).
//! * No error message contains key material or plaintext; each says what the operator can do about it.
//!
//! ```ignore
//! let (master, source) = MasterKey::load_or_create("JGATE_MASTER_KEY", &data_dir.join("master.key"))?;
//! let sealed = seal(&master, &token, "controller:prod:token")?;
//! // ... store `sealed` in the row ...
//! let token = open(&master, &sealed, "controller:prod:token")?;
//! ```

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// Length in bytes of the master key and of every derived or data key.
pub const KEY_LEN: usize = 32;
/// Length in bytes of an XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;
/// The [`Sealed::version`] written by this code. Version 1 means: XChaCha20-Poly1305 for both layers, data
/// key wrapped with the `"jgate secrets kek v1"` sub-key, associated data as described on [`seal`].
pub const SEALED_VERSION: u8 = 1;

/// HKDF `info` label of the sub-key that wraps data keys.
const KEK_LABEL: &[u8] = b"jgate secrets kek v1";
/// HKDF `info` label of the sub-key used for the audit log HMAC.
const AUDIT_LABEL: &[u8] = b"jgate audit hmac v1";
/// HMAC message whose output is the (public) key id.
const KEY_ID_LABEL: &[u8] = b"jgate key id";
/// HKDF `info` label of the sub-key that computes the master key's check value.
const CHECK_LABEL: &[u8] = b"jgate master key check v1";
/// The fixed message whose MAC under the check sub-key is the check value.
const CHECK_MESSAGE: &[u8] = b"jgate: this is the installation's master key";
/// Prefix of the associated data of the secret's ciphertext.
const CT_AAD_PREFIX: &str = "jgate:v1:ct:";
/// Prefix of the associated data of the wrapped data key.
const DEK_AAD_PREFIX: &str = "jgate:v1:dek:";
/// Length of the HMAC-SHA-256 block, which is also its native key size.
const HMAC_BLOCK_LEN: usize = 64;

/// Everything that can go wrong while loading keys or sealing/opening secrets.
///
/// Messages are written for the operator: they say what to do, and never contain key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A master key string that is not base64 of exactly 32 bytes.
    #[error(
        "invalid master key: {reason}; expected the base64 (standard or URL-safe) encoding of exactly 32 random \
         bytes, e.g. the output of `openssl rand -base64 32`"
    )]
    InvalidMasterKey {
        /// What is wrong with it (never the value itself).
        reason: &'static str,
    },
    /// The master key environment variable is set, but its value is unusable.
    #[error(
        "the environment variable {var} does not hold a valid master key: {reason}; set it to the base64 \
         (standard or URL-safe) encoding of exactly 32 random bytes (e.g. `openssl rand -base64 32`), or unset it \
         to use the key file"
    )]
    InvalidEnvKey {
        /// Name of the environment variable.
        var: String,
        /// What is wrong with it (never the value itself).
        reason: &'static str,
    },
    /// The key file exists, but does not hold a usable key.
    #[error(
        "the master key file {} does not hold a valid master key: {reason}; it must contain the base64 encoding \
         of exactly 32 random bytes. Restore it from your backup (do not replace it with a new key if secrets \
         were already stored: they could no longer be decrypted)",
        path.display()
    )]
    InvalidKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it (never the value itself).
        reason: &'static str,
    },
    /// The key file can be read or written by other users.
    #[error(
        "the master key file {} is accessible by group or others (mode {mode:03o}); only its owner may read it. \
         Run `chmod 600 {}` and consider rotating the key if others may have read it",
        path.display(),
        path.display()
    )]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading, creating or writing the key file (or its directory) failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read the master key file".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The secret was wrapped by another master key than the one loaded.
    #[error(
        "the master key does not match the one that encrypted this secret (key id {key_id}, expected \
         {expected}): set JGATE_MASTER_KEY to the original key or restore the key file"
    )]
    WrongMasterKey {
        /// Id of the master key that was loaded.
        key_id: String,
        /// Id of the master key recorded in the sealed secret.
        expected: String,
    },
    /// Authentication failed: the stored value was modified, or belongs to another row.
    #[error(
        "the secret could not be decrypted: its stored value was modified, or it was copied from another row \
         (the associated data does not match). Enter the secret again"
    )]
    DecryptionFailed,
    /// The stored value is structurally invalid (e.g. a nonce of the wrong length).
    #[error("the stored secret is malformed ({reason}); enter the secret again")]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The stored value was written by a newer (or unknown) format version.
    #[error(
        "the stored secret uses format version {version}, which this jgate does not support (it writes version \
         {SEALED_VERSION}); upgrade jgate or enter the secret again"
    )]
    UnsupportedVersion {
        /// The version found in the row.
        version: u8,
    },
    /// The store was set up with another master key (its check value does not match).
    #[error(
        "the master key in use (key id {key_id}) is not this installation's master key (the store was set up \
         with key id {expected}), so jgate refused to open it and wrote nothing. Fix: set JGATE_MASTER_KEY to the \
         installation's key, or point --key-file / JGATE_MASTER_KEY_FILE at its key file (restore it from your \
         backup); after `jgate key rotate`, use the new key"
    )]
    MasterKeyMismatch {
        /// Id of the master key that was loaded.
        key_id: String,
        /// Id of the master key the store was set up with ("unknown" if not recorded).
        expected: String,
    },
    /// The cipher refused to encrypt (only possible for absurdly large inputs).
    #[error("the secret could not be encrypted (it is too large)")]
    EncryptionFailed,
}

/// Where [`MasterKey::load_or_create`] found the master key. Useful for a startup log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// From the environment variable.
    Env,
    /// From an existing key file.
    File(PathBuf),
    /// A new key was generated and written to this file. Tell the operator to back it up.
    Created(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env => f.write_str("environment variable"),
            KeySource::File(path) => write!(f, "key file {}", path.display()),
            KeySource::Created(path) => write!(f, "newly created key file {}", path.display()),
        }
    }
}

/// The installation's master key (32 bytes).
///
/// It is never used directly as a cipher key; see the [module docs](self) for the derived sub-keys. All key
/// bytes are zeroized when the value is dropped. `Debug` prints only the [id](Self::id), and there is no
/// `Display`, `Clone` or `Serialize`: share it behind an `Arc`, and export it only with [`Self::to_base64`].
pub struct MasterKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    /// Sub-key that wraps data keys.
    kek: Zeroizing<[u8; KEY_LEN]>,
    /// Sub-key for the audit log HMAC.
    audit: Zeroizing<[u8; KEY_LEN]>,
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Generates a new random master key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(key.as_mut());
        Self::from_key(key)
    }

    /// Parses a master key given as base64 of 32 bytes: standard or URL-safe alphabet, with or without `=`
    /// padding. Surrounding whitespace (such as a trailing newline in a file) is ignored.
    ///
    /// The error names the expected form but never repeats the value.
    pub fn from_base64(s: &str) -> Result<Self, SecretsError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SecretsError::InvalidMasterKey { reason: "the value is empty" });
        }
        if s.len() > 1024 {
            return Err(SecretsError::InvalidMasterKey { reason: "the value is far too long" });
        }
        // Decode into a pre-sized, zeroized buffer, so no stray copy of the key is left behind by reallocation.
        let mut buf = Zeroizing::new(Vec::with_capacity(s.len()));
        let mut decoded = false;
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            buf.zeroize();
            if engine.decode_vec(s.as_bytes(), &mut buf).is_ok() {
                decoded = true;
                break;
            }
        }
        if !decoded {
            return Err(SecretsError::InvalidMasterKey { reason: "the value is not valid base64" });
        }
        match buf.len() {
            KEY_LEN => {
                let mut key = Zeroizing::new([0u8; KEY_LEN]);
                key.copy_from_slice(&buf);
                Ok(Self::from_key(key))
            }
            n if n < KEY_LEN => Err(SecretsError::InvalidMasterKey { reason: "it decodes to fewer than 32 bytes" }),
            _ => Err(SecretsError::InvalidMasterKey { reason: "it decodes to more than 32 bytes" }),
        }
    }

    /// The key as standard, padded base64 (the form [`Self::from_base64`] and the key file use).
    pub fn to_base64(&self) -> SecretString {
        // 32 bytes encode to exactly 44 characters; pre-sizing avoids reallocations that would leave copies.
        let mut out = String::with_capacity(44);
        STANDARD.encode_string(self.key.as_ref(), &mut out);
        SecretString::from(out)
    }

    /// Loads the master key, in this order:
    ///
    /// 1. from the environment variable `env_var` (e.g. `JGATE_MASTER_KEY`) if it is set — an empty or invalid
    ///    value is an error, not a reason to fall back to the file;
    /// 2. else from `key_file`, which must not be accessible by group or others (on Unix; fix with `chmod 600`);
    /// 3. else a new key is generated and written to `key_file`, created with mode `0600` (never overwriting a
    ///    file that appears meanwhile); missing parent directories are created with mode `0700`.
    ///
    /// Returns the key and where it came from. When the source is [`KeySource::Created`], tell the operator to
    /// back the file up: losing it makes every stored secret unreadable.
    pub fn load_or_create(env_var: &str, key_file: &Path) -> Result<(Self, KeySource), SecretsError> {
        load_or_create_with(env_var, std::env::var_os(env_var), key_file)
    }

    /// A short, non-secret fingerprint of the key: the first 8 hex characters of `HMAC-SHA-256(key, "jgate key
    /// id")`. Stored in every [`Sealed`] to tell which key wrapped it; safe to log.
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// The 32-byte key for the audit log HMAC, derived with its own label so it is never the wrapping key.
    ///
    /// The returned copy is the caller's to protect: keep it in a [`Zeroizing`] wrapper or zeroize it.
    pub fn audit_hmac_key(&self) -> [u8; KEY_LEN] {
        *self.audit
    }

    /// The master key's check value: hex of an HMAC of a fixed message under a sub-key derived for
    /// this purpose only. Stored by the store on first open and compared on every open, so a wrong
    /// key is refused before anything is written. Reveals nothing about the key or its other
    /// sub-keys.
    pub fn check_value(&self) -> String {
        let sub = hkdf_expand(&self.key, CHECK_LABEL);
        hex::encode(*hmac_sha256(&sub, &[CHECK_MESSAGE]))
    }

    fn from_key(key: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let kek = hkdf_expand(&key, KEK_LABEL);
        let audit = hkdf_expand(&key, AUDIT_LABEL);
        let id_bytes = hmac_sha256(&key, &[KEY_ID_LABEL]);
        let id = hex::encode(&id_bytes[..4]);
        Self { key, kek, audit, id }
    }

    fn wrapping_cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.kek.as_ref().into())
    }
}

/// [`MasterKey::load_or_create`] with the environment value passed in, so tests need not mutate the process
/// environment.
fn load_or_create_with(
    env_var: &str,
    env_value: Option<std::ffi::OsString>,
    key_file: &Path,
) -> Result<(MasterKey, KeySource), SecretsError> {
    if let Some(value) = env_value {
        let value = Zeroizing::new(value.into_string().map_err(|_| SecretsError::InvalidEnvKey {
            var: env_var.to_owned(),
            reason: "the value is not valid UTF-8",
        })?);
        let key = MasterKey::from_base64(&value)
            .map_err(|e| SecretsError::InvalidEnvKey { var: env_var.to_owned(), reason: invalid_reason(&e) })?;
        return Ok((key, KeySource::Env));
    }
    match fs::File::open(key_file) {
        Ok(file) => Ok((read_key_file(file, key_file)?, KeySource::File(key_file.to_owned()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_key_file(key_file),
        Err(source) => Err(SecretsError::Io { action: "open the master key file", path: key_file.to_owned(), source }),
    }
}

fn invalid_reason(e: &SecretsError) -> &'static str {
    match e {
        SecretsError::InvalidMasterKey { reason } => reason,
        _ => "the value is invalid",
    }
}

fn read_key_file(mut file: fs::File, path: &Path) -> Result<MasterKey, SecretsError> {
    let io_err = |source| SecretsError::Io { action: "read the master key file", path: path.to_owned(), source };
    let metadata = file.metadata().map_err(io_err)?;
    check_permissions(&metadata, path)?;
    if !metadata.is_file() {
        return Err(SecretsError::InvalidKeyFile { path: path.to_owned(), reason: "it is not a regular file" });
    }
    // A valid file is 44 characters plus a newline; refuse anything much larger instead of reading it.
    if metadata.len() > 1024 {
        return Err(SecretsError::InvalidKeyFile { path: path.to_owned(), reason: "it is far too large" });
    }
    let mut contents = Zeroizing::new(String::with_capacity(1025));
    file.read_to_string(&mut contents).map_err(|source| match source.kind() {
        io::ErrorKind::InvalidData => {
            SecretsError::InvalidKeyFile { path: path.to_owned(), reason: "it is not valid UTF-8" }
        }
        _ => io_err(source),
    })?;
    MasterKey::from_base64(&contents)
        .map_err(|e| SecretsError::InvalidKeyFile { path: path.to_owned(), reason: invalid_reason(&e) })
}

#[cfg(unix)]
fn check_permissions(metadata: &fs::Metadata, path: &Path) -> Result<(), SecretsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::InsecureKeyFile { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_metadata: &fs::Metadata, _path: &Path) -> Result<(), SecretsError> {
    Ok(())
}

fn create_key_file(path: &Path) -> Result<(MasterKey, KeySource), SecretsError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(parent).map_err(|source| SecretsError::Io {
            action: "create the directory for the master key file",
            path: parent.to_owned(),
            source,
        })?;
    }

    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        // Another process created it between our open and create: use its key, never overwrite it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let file = fs::File::open(path).map_err(|source| SecretsError::Io {
                action: "open the master key file",
                path: path.to_owned(),
                source,
            })?;
            return Ok((read_key_file(file, path)?, KeySource::File(path.to_owned())));
        }
        Err(source) => {
            return Err(SecretsError::Io { action: "create the master key file", path: path.to_owned(), source });
        }
    };

    let key = MasterKey::generate();
    let encoded = key.to_base64();
    let mut line = Zeroizing::new(String::with_capacity(encoded.expose_secret().len() + 1));
    line.push_str(encoded.expose_secret());
    line.push('\n');
    file.write_all(line.as_bytes()).and_then(|()| file.sync_all()).map_err(|source| SecretsError::Io {
        action: "write the master key file",
        path: path.to_owned(),
        source,
    })?;
    tracing::info!(
        path = %path.display(),
        key_id = %key.id(),
        "created a new master key file; back it up: without it, stored Jenkins tokens cannot be decrypted"
    );
    Ok((key, KeySource::Created(path.to_owned())))
}

/// HMAC-SHA-256 of the concatenated `parts` under a 32-byte key.
fn hmac_sha256(key: &[u8; KEY_LEN], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    // HMAC pads keys shorter than its block with zeros (RFC 2104), so padding the key ourselves gives the same
    // MAC while using the infallible fixed-size constructor.
    let mut block = Zeroizing::new([0u8; HMAC_BLOCK_LEN]);
    block[..KEY_LEN].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(block.as_ref().into());
    for part in parts {
        mac.update(part);
    }
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// HKDF-Expand (RFC 5869) for one 32-byte output block: `T(1) = HMAC(prk, info || 0x01)`. The master key is
/// already uniformly random, so it serves as the pseudorandom key directly (RFC 5869 §3.3: Extract may be skipped).
fn hkdf_expand(prk: &[u8; KEY_LEN], info: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    hmac_sha256(prk, &[info, &[1u8]])
}

/// An encrypted secret, as stored in a database row. None of its fields is secret.
///
/// Store all fields; [`open`] needs them together with the same `aad` string that was given to [`seal`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    /// The secret, encrypted with its data key (includes the 16-byte Poly1305 tag).
    pub ciphertext: Vec<u8>,
    /// The 24-byte nonce of `ciphertext`.
    pub nonce: Vec<u8>,
    /// The data key, encrypted with the master key's wrapping sub-key (32 bytes + 16-byte tag).
    pub wrapped_key: Vec<u8>,
    /// The 24-byte nonce of `wrapped_key`.
    pub key_nonce: Vec<u8>,
    /// [`MasterKey::id`] of the key that wrapped `wrapped_key`. Lets a rotation find the rows still on an old
    /// key, and turns "wrong key" into a clear error instead of a generic decryption failure.
    pub master_key_id: String,
    /// Format version, [`SEALED_VERSION`] for values written by this code.
    pub version: u8,
}

/// Encrypts `plaintext` for storage in the row named by `aad`.
///
/// A fresh random 32-byte data key and a fresh random 24-byte nonce are drawn for every call, so sealing the same
/// text twice gives unrelated outputs. The ciphertext is authenticated with `"jgate:v1:ct:" + aad`, the wrapped
/// data key with `"jgate:v1:dek:" + aad`: pick an `aad` that identifies the row and the purpose, e.g.
/// `"controller:prod:token"`, and pass the same string to [`open`]. Opening with any other `aad` fails.
pub fn seal(master: &MasterKey, plaintext: &SecretString, aad: &str) -> Result<Sealed, SecretsError> {
    seal_bytes(master, plaintext.expose_secret().as_bytes(), aad)
}

/// [`seal`] for a 32-byte key (an audit key), opened again with [`open_key`].
pub fn seal_key(master: &MasterKey, key: &[u8; KEY_LEN], aad: &str) -> Result<Sealed, SecretsError> {
    seal_bytes(master, key, aad)
}

/// Opens a key sealed with [`seal_key`].
pub fn open_key(master: &MasterKey, sealed: &Sealed, aad: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, SecretsError> {
    let plain = open_bytes(master, sealed, aad)?;
    if plain.len() != KEY_LEN {
        return Err(SecretsError::Malformed { reason: "the sealed key is not 32 bytes long" });
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&plain);
    Ok(key)
}

/// A fresh random 32-byte key (a new audit key version).
pub fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(key.as_mut());
    key
}

fn seal_bytes(master: &MasterKey, plaintext: &[u8], aad: &str) -> Result<Sealed, SecretsError> {
    let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(data_key.as_mut());
    let nonce = random_nonce();
    let ct_aad = format!("{CT_AAD_PREFIX}{aad}");
    let ciphertext = XChaCha20Poly1305::new(data_key.as_ref().into())
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: ct_aad.as_bytes() })
        .map_err(|_| SecretsError::EncryptionFailed)?;
    let (wrapped_key, key_nonce) = wrap_data_key(master, &data_key, aad)?;
    Ok(Sealed {
        ciphertext,
        nonce: nonce.to_vec(),
        wrapped_key,
        key_nonce,
        master_key_id: master.id(),
        version: SEALED_VERSION,
    })
}

/// Decrypts a value produced by [`seal`] (or [`rewrap`]), given the same `aad`.
///
/// Fails with [`SecretsError::WrongMasterKey`] if another master key wrapped it, and with
/// [`SecretsError::DecryptionFailed`] if the row was modified or the `aad` differs (the two cannot be told
/// apart, by design).
pub fn open(master: &MasterKey, sealed: &Sealed, aad: &str) -> Result<SecretString, SecretsError> {
    let plain = open_bytes(master, sealed, aad)?;
    let text = std::str::from_utf8(&plain).map_err(|_| SecretsError::Malformed { reason: "it is not UTF-8 text" })?;
    // Copy into an exactly-sized String: `SecretString::from` would otherwise shrink (reallocate) the buffer and
    // leave an unzeroized copy behind. `plain` is zeroized when it goes out of scope.
    let mut out = String::with_capacity(text.len());
    out.push_str(text);
    Ok(SecretString::from(out))
}

fn open_bytes(master: &MasterKey, sealed: &Sealed, aad: &str) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    let data_key = unwrap_data_key(master, sealed, aad)?;
    if sealed.nonce.len() != NONCE_LEN {
        return Err(SecretsError::Malformed { reason: "the nonce is not 24 bytes long" });
    }
    let ct_aad = format!("{CT_AAD_PREFIX}{aad}");
    let plain = Zeroizing::new(
        XChaCha20Poly1305::new(data_key.as_ref().into())
            .decrypt(XNonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad: ct_aad.as_bytes() })
            .map_err(|_| SecretsError::DecryptionFailed)?,
    );
    Ok(plain)
}

/// Key rotation: unwraps the data key with `old` and wraps it again with `new` under a fresh nonce.
///
/// The ciphertext and its nonce are copied unchanged (the data is not re-encrypted); `master_key_id` becomes
/// `new`'s id. Afterwards the value opens with `new` and no longer with `old`. `aad` must be the row's aad.
pub fn rewrap(old: &MasterKey, new: &MasterKey, sealed: &Sealed, aad: &str) -> Result<Sealed, SecretsError> {
    let data_key = unwrap_data_key(old, sealed, aad)?;
    let (wrapped_key, key_nonce) = wrap_data_key(new, &data_key, aad)?;
    Ok(Sealed { wrapped_key, key_nonce, master_key_id: new.id(), ..sealed.clone() })
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

/// Encrypts a data key with the master key's wrapping sub-key; returns `(wrapped_key, key_nonce)`.
fn wrap_data_key(master: &MasterKey, data_key: &[u8; KEY_LEN], aad: &str) -> Result<(Vec<u8>, Vec<u8>), SecretsError> {
    let key_nonce = random_nonce();
    let dek_aad = format!("{DEK_AAD_PREFIX}{aad}");
    let wrapped = master
        .wrapping_cipher()
        .encrypt(XNonce::from_slice(&key_nonce), Payload { msg: data_key, aad: dek_aad.as_bytes() })
        .map_err(|_| SecretsError::EncryptionFailed)?;
    Ok((wrapped, key_nonce.to_vec()))
}

/// Checks version and key id, then decrypts the data key.
fn unwrap_data_key(master: &MasterKey, sealed: &Sealed, aad: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, SecretsError> {
    if sealed.version != SEALED_VERSION {
        return Err(SecretsError::UnsupportedVersion { version: sealed.version });
    }
    if sealed.master_key_id != master.id {
        return Err(SecretsError::WrongMasterKey { key_id: master.id(), expected: sealed.master_key_id.clone() });
    }
    if sealed.key_nonce.len() != NONCE_LEN {
        return Err(SecretsError::Malformed { reason: "the key nonce is not 24 bytes long" });
    }
    let dek_aad = format!("{DEK_AAD_PREFIX}{aad}");
    let mut plain = master
        .wrapping_cipher()
        .decrypt(XNonce::from_slice(&sealed.key_nonce), Payload { msg: &sealed.wrapped_key, aad: dek_aad.as_bytes() })
        .map_err(|_| SecretsError::DecryptionFailed)?;
    let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
    let result = if plain.len() == KEY_LEN {
        data_key.copy_from_slice(&plain);
        Ok(data_key)
    } else {
        Err(SecretsError::Malformed { reason: "the wrapped data key has the wrong length" })
    };
    plain.zeroize();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> SecretString {
        SecretString::from("11aa22bb33cc44dd55ee66ff77889900aa")
    }

    const AAD: &str = "controller:prod:token";

    /// A fresh, empty directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("jgate-secrets-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn round_trip() {
        let master = MasterKey::generate();
        let sealed = seal(&master, &token(), AAD).unwrap();
        assert_eq!(sealed.version, SEALED_VERSION);
        assert_eq!(sealed.master_key_id, master.id());
        assert_eq!(sealed.nonce.len(), NONCE_LEN);
        assert_eq!(sealed.key_nonce.len(), NONCE_LEN);
        assert_eq!(sealed.wrapped_key.len(), KEY_LEN + 16);
        let opened = open(&master, &sealed, AAD).unwrap();
        assert_eq!(opened.expose_secret(), token().expose_secret());
    }

    #[test]
    fn round_trip_empty_and_unicode() {
        let master = MasterKey::generate();
        for text in ["", "pässwörd ✓"] {
            let sealed = seal(&master, &SecretString::from(text), AAD).unwrap();
            assert_eq!(open(&master, &sealed, AAD).unwrap().expose_secret(), text);
        }
    }

    #[test]
    fn sealed_survives_serde() {
        let master = MasterKey::generate();
        let sealed = seal(&master, &token(), AAD).unwrap();
        let json = serde_json::to_string(&sealed).unwrap();
        let back: Sealed = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sealed);
        assert_eq!(open(&master, &back, AAD).unwrap().expose_secret(), token().expose_secret());
    }

    #[test]
    fn wrong_aad_fails() {
        let master = MasterKey::generate();
        let sealed = seal(&master, &token(), AAD).unwrap();
        let err = open(&master, &sealed, "controller:staging:token").unwrap_err();
        assert!(matches!(err, SecretsError::DecryptionFailed), "{err:?}");
        assert!(open(&master, &sealed, "").is_err());
    }

    #[test]
    fn ciphertext_swapped_between_rows_fails() {
        // Same key, another row's data key: the ciphertext of row A with row B's wrapped key must not open.
        let master = MasterKey::generate();
        let a = seal(&master, &token(), "controller:a:token").unwrap();
        let b = seal(&master, &token(), "controller:b:token").unwrap();
        let mixed = Sealed { wrapped_key: b.wrapped_key.clone(), key_nonce: b.key_nonce.clone(), ..a.clone() };
        assert!(open(&master, &mixed, "controller:a:token").is_err());
        assert!(open(&master, &mixed, "controller:b:token").is_err());
    }

    #[test]
    fn wrong_master_key_names_both_ids() {
        let master = MasterKey::generate();
        let other = MasterKey::generate();
        let sealed = seal(&master, &token(), AAD).unwrap();
        let err = open(&other, &sealed, AAD).unwrap_err();
        assert!(matches!(err, SecretsError::WrongMasterKey { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("master key does not match"), "{msg}");
        assert!(msg.contains(&other.id()) && msg.contains(&master.id()), "{msg}");
        assert!(msg.contains("JGATE_MASTER_KEY"), "{msg}");
    }

    #[test]
    fn wrong_master_key_with_forged_id_still_fails() {
        let master = MasterKey::generate();
        let other = MasterKey::generate();
        let mut sealed = seal(&master, &token(), AAD).unwrap();
        sealed.master_key_id = other.id();
        assert!(matches!(open(&other, &sealed, AAD), Err(SecretsError::DecryptionFailed)));
    }

    #[test]
    fn tampering_fails() {
        let master = MasterKey::generate();
        let sealed = seal(&master, &token(), AAD).unwrap();
        let flip = |v: &Vec<u8>, i: usize| {
            let mut v = v.clone();
            v[i] ^= 0x01;
            v
        };
        let cases = [
            Sealed { ciphertext: flip(&sealed.ciphertext, 0), ..sealed.clone() },
            Sealed { ciphertext: flip(&sealed.ciphertext, sealed.ciphertext.len() - 1), ..sealed.clone() },
            Sealed { nonce: flip(&sealed.nonce, 5), ..sealed.clone() },
            Sealed { wrapped_key: flip(&sealed.wrapped_key, 3), ..sealed.clone() },
            Sealed { key_nonce: flip(&sealed.key_nonce, 23), ..sealed.clone() },
        ];
        for case in cases {
            let err = open(&master, &case, AAD).unwrap_err();
            assert!(matches!(err, SecretsError::DecryptionFailed), "{err:?}");
        }
        // Structural damage is reported without panicking.
        let truncated = Sealed { nonce: sealed.nonce[..12].to_vec(), ..sealed.clone() };
        assert!(matches!(open(&master, &truncated, AAD), Err(SecretsError::Malformed { .. })));
        let truncated = Sealed { key_nonce: vec![], ..sealed.clone() };
        assert!(matches!(open(&master, &truncated, AAD), Err(SecretsError::Malformed { .. })));
        let short = Sealed { ciphertext: vec![1, 2, 3], ..sealed.clone() };
        assert!(matches!(open(&master, &short, AAD), Err(SecretsError::DecryptionFailed)));
        let future = Sealed { version: 2, ..sealed.clone() };
        assert!(matches!(open(&master, &future, AAD), Err(SecretsError::UnsupportedVersion { version: 2 })));
    }

    #[test]
    fn rewrap_moves_to_new_key() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let sealed = seal(&old, &token(), AAD).unwrap();
        let rewrapped = rewrap(&old, &new, &sealed, AAD).unwrap();
        assert_eq!(rewrapped.ciphertext, sealed.ciphertext);
        assert_eq!(rewrapped.nonce, sealed.nonce);
        assert_ne!(rewrapped.wrapped_key, sealed.wrapped_key);
        assert_ne!(rewrapped.key_nonce, sealed.key_nonce);
        assert_eq!(rewrapped.master_key_id, new.id());
        assert_eq!(open(&new, &rewrapped, AAD).unwrap().expose_secret(), token().expose_secret());
        assert!(matches!(open(&old, &rewrapped, AAD), Err(SecretsError::WrongMasterKey { .. })));
        // Rewrapping needs the right old key and aad.
        assert!(rewrap(&new, &old, &sealed, AAD).is_err());
        assert!(rewrap(&old, &new, &sealed, "other").is_err());
    }

    #[test]
    fn each_seal_is_fresh() {
        let master = MasterKey::generate();
        let a = seal(&master, &token(), AAD).unwrap();
        let b = seal(&master, &token(), AAD).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.key_nonce, b.key_nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_ne!(a.wrapped_key, b.wrapped_key);
        // Different data keys: a's ciphertext does not open under b's data key.
        let mixed = Sealed { ciphertext: a.ciphertext.clone(), nonce: a.nonce.clone(), ..b.clone() };
        assert!(open(&master, &mixed, AAD).is_err());
    }

    #[test]
    fn base64_forms() {
        let master = MasterKey::generate();
        let b64 = master.to_base64();
        assert_eq!(b64.expose_secret().len(), 44);
        let again = MasterKey::from_base64(b64.expose_secret()).unwrap();
        assert_eq!(again.id(), master.id());
        // URL-safe, unpadded, and with a trailing newline.
        let url = URL_SAFE_NO_PAD.encode(*master.key);
        assert_eq!(MasterKey::from_base64(&url).unwrap().id(), master.id());
        let line = format!("{}\n", b64.expose_secret());
        assert_eq!(MasterKey::from_base64(&line).unwrap().id(), master.id());

        for bad in ["", "not base64!", &STANDARD.encode([7u8; 16]), &STANDARD.encode([7u8; 33])] {
            let err = MasterKey::from_base64(bad).unwrap_err();
            assert!(err.to_string().contains("exactly 32"), "{err}");
        }
    }

    #[test]
    fn derived_keys_are_distinct() {
        let master = MasterKey::generate();
        let audit = master.audit_hmac_key();
        assert_ne!(audit, *master.key);
        assert_ne!(audit, *master.kek);
        assert_ne!(*master.kek, *master.key);
        assert_eq!(master.id().len(), 8);
        assert!(master.id().chars().all(|c| c.is_ascii_hexdigit()));
        // Deterministic for a given key.
        let same = MasterKey::from_base64(master.to_base64().expose_secret()).unwrap();
        assert_eq!(same.audit_hmac_key(), audit);
        assert_ne!(MasterKey::generate().audit_hmac_key(), audit);
    }

    #[test]
    fn known_answer_derivation() {
        // Pins the derivation so a refactor cannot silently change keys (which would orphan stored secrets).
        let master = MasterKey::from_key(Zeroizing::new([0u8; KEY_LEN]));
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; KEY_LEN]).unwrap();
        mac.update(b"jgate key id");
        assert_eq!(master.id(), hex::encode(&mac.finalize().into_bytes()[..4]));
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; KEY_LEN]).unwrap();
        mac.update(b"jgate audit hmac v1\x01");
        assert_eq!(master.audit_hmac_key().as_slice(), mac.finalize().into_bytes().as_slice());
    }

    #[test]
    fn debug_and_display_hide_secrets() {
        let master = MasterKey::generate();
        let b64 = master.to_base64();
        let key_hex = hex::encode(*master.key);
        let sealed = seal(&master, &token(), AAD).unwrap();
        let texts = [
            format!("{master:?}"),
            format!("{master:#?}"),
            format!("{sealed:?}"),
            format!("{b64:?}"),
            format!("{:?}", token()),
            open(&MasterKey::generate(), &sealed, AAD).unwrap_err().to_string(),
            open(&master, &sealed, "x").unwrap_err().to_string(),
        ];
        for text in &texts {
            assert!(!text.contains(b64.expose_secret()), "{text}");
            assert!(!text.contains(&key_hex), "{text}");
            assert!(!text.contains(token().expose_secret()), "{text}");
        }
        assert!(texts[0].contains(&master.id()));
    }

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    const UNSET_VAR: &str = "JGATE_TEST_MASTER_KEY_NEVER_SET_4f1c";

    #[test]
    fn load_or_create_creates_then_reloads() {
        let tmp = TempDir::new("create");
        let path = tmp.0.join("nested/dir/master.key");
        let (created, source) = MasterKey::load_or_create(UNSET_VAR, &path).unwrap();
        assert_eq!(source, KeySource::Created(path.clone()));
        #[cfg(unix)]
        {
            assert_eq!(mode_of(&path), 0o600);
            assert_eq!(mode_of(&tmp.0.join("nested")), 0o700);
            assert_eq!(mode_of(&tmp.0.join("nested/dir")), 0o700);
        }
        let (loaded, source) = MasterKey::load_or_create(UNSET_VAR, &path).unwrap();
        assert_eq!(source, KeySource::File(path.clone()));
        assert_eq!(loaded.id(), created.id());
        let sealed = seal(&created, &token(), AAD).unwrap();
        assert_eq!(open(&loaded, &sealed, AAD).unwrap().expose_secret(), token().expose_secret());
    }

    #[cfg(unix)]
    #[test]
    fn load_or_create_refuses_readable_file() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new("insecure");
        let path = tmp.0.join("master.key");
        fs::write(&path, format!("{}\n", MasterKey::generate().to_base64().expose_secret())).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_or_create(UNSET_VAR, &path).unwrap_err();
        assert!(matches!(err, SecretsError::InsecureKeyFile { mode: 0o644, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("chmod 600") && msg.contains("644"), "{msg}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(MasterKey::load_or_create(UNSET_VAR, &path).is_ok());
    }

    #[test]
    fn load_or_create_reports_invalid_file() {
        let tmp = TempDir::new("invalid-file");
        let path = tmp.0.join("master.key");
        MasterKey::load_or_create(UNSET_VAR, &path).unwrap();
        fs::write(&path, "garbage").unwrap();
        let err = MasterKey::load_or_create(UNSET_VAR, &path).unwrap_err();
        assert!(matches!(err, SecretsError::InvalidKeyFile { .. }), "{err:?}");
        assert!(err.to_string().contains("master.key"), "{err}");
        assert!(!err.to_string().contains("garbage"), "{err}");
    }

    #[test]
    fn env_var_wins_over_file() {
        let tmp = TempDir::new("env");
        let path = tmp.0.join("master.key");
        let (file_key, _) = MasterKey::load_or_create(UNSET_VAR, &path).unwrap();
        let env_key = MasterKey::generate();
        let value = env_key.to_base64().expose_secret().into();
        let (key, source) = load_or_create_with("JGATE_MASTER_KEY", Some(value), &path).unwrap();
        assert_eq!(source, KeySource::Env);
        assert_eq!(key.id(), env_key.id());
        assert_ne!(key.id(), file_key.id());
        // The env var alone never creates a file.
        let missing = tmp.0.join("absent.key");
        let value = env_key.to_base64().expose_secret().into();
        load_or_create_with("JGATE_MASTER_KEY", Some(value), &missing).unwrap();
        assert!(!missing.exists());
    }

    #[test]
    fn invalid_env_value_is_a_clear_error() {
        let tmp = TempDir::new("env-invalid");
        let path = tmp.0.join("master.key");
        for value in ["", "hunter2-not-a-key", "c2hvcnQ="] {
            let err = load_or_create_with("JGATE_MASTER_KEY", Some(value.into()), &path).unwrap_err();
            assert!(matches!(err, SecretsError::InvalidEnvKey { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(msg.contains("JGATE_MASTER_KEY") && msg.contains("32"), "{msg}");
            if !value.is_empty() {
                assert!(!msg.contains(value), "{msg}");
            }
        }
        // No fallback to the file when the variable is set but wrong.
        assert!(!path.exists());
    }

    #[test]
    fn check_value_is_stable_and_per_key() {
        let master = MasterKey::generate();
        let again = MasterKey::from_base64(master.to_base64().expose_secret()).unwrap();
        assert_eq!(master.check_value(), again.check_value());
        assert_eq!(master.check_value().len(), 64);
        assert_ne!(master.check_value(), MasterKey::generate().check_value());
        // Not any of the other derived values.
        assert_ne!(master.check_value(), hex::encode(master.audit_hmac_key()));
        assert!(!master.check_value().starts_with(&master.id()));
        let err = SecretsError::MasterKeyMismatch { key_id: "aaaa".into(), expected: "bbbb".into() }.to_string();
        assert!(
            err.contains("JGATE_MASTER_KEY") && err.contains("--key-file") && err.contains("wrote nothing"),
            "{err}"
        );
    }

    #[test]
    fn keys_seal_and_rewrap() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let key = random_key();
        let sealed = seal_key(&old, &key, "jgate:audit-key:2").unwrap();
        assert_eq!(*open_key(&old, &sealed, "jgate:audit-key:2").unwrap(), *key);
        assert!(open_key(&old, &sealed, "jgate:audit-key:3").is_err());
        let moved = rewrap(&old, &new, &sealed, "jgate:audit-key:2").unwrap();
        assert_eq!(*open_key(&new, &moved, "jgate:audit-key:2").unwrap(), *key);
        assert!(matches!(open_key(&old, &moved, "jgate:audit-key:2"), Err(SecretsError::WrongMasterKey { .. })));
        let text = seal(&old, &SecretString::from("short"), AAD).unwrap();
        assert!(matches!(open_key(&old, &text, AAD), Err(SecretsError::Malformed { .. })));
    }
}
