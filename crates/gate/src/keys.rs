//! Agent keys: the bearer secrets AI agents present to jgate (security.md §3.3).
//!
//! # Format
//!
//! ```text
//! jgate_<43 base62 characters>_<6 base62 characters>
//!       └─ body: 256 random bits ┘ └─ checksum ┘
//! ```
//!
//! * The `jgate_` prefix lets secret scanners (and jgate's own log redaction) recognise a leaked key.
//! * The checksum is derived from SHA-256 of the body, so [`check_format`] catches typos and truncated copies
//!   without touching the database.
//! * A key is shown once, when [`generate`]d. jgate stores only its [`hash`] (hex SHA-256) and its public
//!   [`key_id`]; a presented key is checked with [`verify`] (constant time) or looked up by its hash.
//!
//! Fast hashing is right here: the key has 256 bits of entropy, so nobody can brute-force a leaked hash, and a
//! slow password hash (Argon2) would only hand attackers a CPU-exhaustion lever. Argon2 is for human passwords.
//!
//! ```ignore
//! let new = keys::generate();
//! store.insert_agent_key(&new.key_id, &new.hash)?;   // persist only the hash and the id
//! show_once(new.secret.expose_secret());
//!
//! // On each request:
//! keys::check_format(presented)?;                     // cheap, explains typos
//! let row = store.agent_key_by_hash(&keys::hash(presented))?;
//! ```

use std::fmt;

use rand::RngCore;
use rand::rngs::OsRng;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Every agent key starts with this prefix (add it to redaction and secret-scanning rules).
pub const KEY_PREFIX: &str = "jgate_";
/// Number of random base62 characters in the body (43 × log2(62) ≈ 256 bits).
pub const BODY_LEN: usize = 43;
/// Number of base62 characters in the checksum.
pub const CHECKSUM_LEN: usize = 6;
/// Total length of an agent key: prefix + body + `_` + checksum = 56 characters.
pub const KEY_LEN: usize = KEY_PREFIX.len() + BODY_LEN + 1 + CHECKSUM_LEN;
/// Length of a [`key_id`] in hex characters.
pub const KEY_ID_LEN: usize = 12;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly generated agent key. Show [`secret`](Self::secret) to the user once; store only `key_id` and `hash`.
///
/// `Debug` shows the id and hash but never the secret.
pub struct NewKey {
    /// The full key, e.g. `jgate_4fT…_a1B2c3`. Never stored, never logged.
    pub secret: SecretString,
    /// The public id ([`key_id`]): safe to log and show, identifies the key in lists and audit entries.
    pub key_id: String,
    /// The stored form ([`hash`]): hex SHA-256 of the whole key.
    pub hash: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("secret", &"[REDACTED]")
            .field("key_id", &self.key_id)
            .field("hash", &self.hash)
            .finish()
    }
}

/// Why a presented string is not a well-formed agent key. Messages never contain the key itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// The string is empty.
    #[error("no agent key was given; send the key that starts with `jgate_`")]
    Empty,
    /// The string has leading or trailing whitespace.
    #[error("the agent key has leading or trailing whitespace; remove it (check how the key was copied)")]
    Whitespace,
    /// The string does not start with `jgate_`.
    #[error("this is not a jgate agent key: agent keys start with `jgate_`{hint}")]
    WrongPrefix {
        /// Extra advice when the value looks like something else (e.g. a Jenkins API token).
        hint: &'static str,
    },
    /// The string is too short or too long.
    #[error(
        "the agent key has {found} characters but must have {expected}; it was probably {} when copied",
        length_damage(.found, .expected)
    )]
    WrongLength {
        /// The length found.
        found: usize,
        /// The required length.
        expected: usize,
    },
    /// A character outside `[0-9A-Za-z]`, or a missing `_` before the checksum.
    #[error("the agent key has an invalid character at position {position}; it was mistyped or mangled when copied")]
    InvalidCharacter {
        /// 1-based character position.
        position: usize,
    },
    /// The checksum does not match the body.
    #[error(
        "the agent key's checksum does not match: it was mistyped or truncated; copy it again from where it was saved"
    )]
    BadChecksum,
}

/// Generates a new agent key from the operating system's CSPRNG.
///
/// The body is 43 characters drawn uniformly from the base62 alphabet by rejection sampling (no modulo bias),
/// which carries slightly more than 256 bits of entropy.
pub fn generate() -> NewKey {
    let mut key = Zeroizing::new(String::with_capacity(KEY_LEN));
    key.push_str(KEY_PREFIX);
    let mut random = Zeroizing::new([0u8; 64]);
    let mut produced = 0;
    while produced < BODY_LEN {
        OsRng.fill_bytes(random.as_mut());
        for &byte in random.iter() {
            // 248 = 4 × 62: bytes below it map uniformly onto the alphabet.
            if byte < 248 && produced < BODY_LEN {
                key.push(char::from(BASE62[usize::from(byte % 62)]));
                produced += 1;
            }
        }
    }
    let sum = checksum(&key[KEY_PREFIX.len()..]);
    key.push('_');
    key.push_str(&sum);
    let key_id = key_id(&key);
    let hash = hash(&key);
    // Exact capacity: the conversion to `Box<str>` does not reallocate, so no unzeroized copy is left behind.
    let mut owned = String::with_capacity(KEY_LEN);
    owned.push_str(&key);
    NewKey { secret: SecretString::from(owned), key_id, hash }
}

/// The public id of a key: the first 12 hex characters of its SHA-256. Safe to log and display; use it to tell
/// which key made a request. (It is not part of the key, so it reveals nothing about the secret.)
pub fn key_id(key: &str) -> String {
    let mut id = hash(key);
    id.truncate(KEY_ID_LEN);
    id
}

/// The stored form of a key: lowercase hex SHA-256 of the whole key string (64 characters).
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Checks that `key` is a well-formed agent key, without any lookup: prefix, length, alphabet and checksum.
///
/// Run this before looking a key up: the error tells the agent (or its operator) whether the key is not a jgate
/// key at all, was truncated, or was mistyped. Passing does not mean the key is valid — only [`verify`] or a
/// lookup by [`hash`] says that.
pub fn check_format(key: &str) -> Result<(), KeyFormatError> {
    if key.is_empty() {
        return Err(KeyFormatError::Empty);
    }
    if key.trim() != key {
        return Err(KeyFormatError::Whitespace);
    }
    if !key.starts_with(KEY_PREFIX) {
        return Err(KeyFormatError::WrongPrefix { hint: prefix_hint(key) });
    }
    let found = key.chars().count();
    if found != KEY_LEN {
        return Err(KeyFormatError::WrongLength { found, expected: KEY_LEN });
    }
    // Length in characters is right; any non-ASCII character is reported below as invalid.
    let separator = KEY_PREFIX.len() + BODY_LEN;
    for (index, c) in key.chars().enumerate().skip(KEY_PREFIX.len()) {
        let ok = if index == separator { c == '_' } else { c.is_ascii_alphanumeric() };
        if !ok {
            return Err(KeyFormatError::InvalidCharacter { position: index + 1 });
        }
    }
    let body = &key[KEY_PREFIX.len()..separator];
    let given = &key[separator + 1..];
    if checksum(body).as_bytes().ct_eq(given.as_bytes()).into() { Ok(()) } else { Err(KeyFormatError::BadChecksum) }
}

/// Whether `key` hashes to `stored_hash` (a [`hash`] output; upper- or lowercase hex). The digests are compared
/// in constant time. A malformed `stored_hash` never matches.
pub fn verify(key: &str, stored_hash: &str) -> bool {
    let mut stored = [0u8; 32];
    if hex::decode_to_slice(stored_hash, &mut stored).is_err() {
        return false;
    }
    let presented = Sha256::digest(key.as_bytes());
    presented.as_slice().ct_eq(&stored).into()
}

/// The 6-character base62 checksum of a key body: the first 8 bytes of SHA-256(body), as a number, in base62.
fn checksum(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let mut n = u64::from_be_bytes(first);
    let mut out = [0u8; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// How a key of the wrong length was most likely damaged.
fn length_damage(found: &usize, expected: &usize) -> &'static str {
    if found < expected { "truncated" } else { "joined with other text" }
}

/// Advice for strings that are clearly some other kind of credential.
fn prefix_hint(key: &str) -> &'static str {
    let lower = key.to_ascii_lowercase();
    if lower.starts_with("bearer ") || lower.starts_with("basic ") {
        "; send only the key, without the `Bearer`/`Basic` scheme word"
    } else if lower.starts_with("jgate") {
        " (with an underscore); the start of this key was mistyped"
    } else if (key.len() == 32 || key.len() == 34) && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        "; this looks like a Jenkins API token, which agents never use: ask your jgate operator for an agent key"
    } else {
        ""
    }
}

/// The one rule for agent names, as a pattern: `[a-z0-9][a-z0-9._-]{0,62}`.
pub const AGENT_NAME_PATTERN: &str = "[a-z0-9][a-z0-9._-]{0,62}";
/// The longest agent name.
pub const AGENT_NAME_MAX: usize = 63;

/// Checks an agent name against [`AGENT_NAME_PATTERN`]: 1 to 63 characters of `a-z`, `0-9`, `.`,
/// `_` and `-`, the first a letter or digit. Names appear in audit sentences, logs and URLs, so
/// they are plain and lowercase. The error states the rule and an example (and shows the refused
/// name escaped and shortened).
pub fn check_agent_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= AGENT_NAME_MAX
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        return Ok(());
    }
    let mut shown: String = name.chars().take(70).flat_map(char::escape_debug).collect();
    if name.chars().count() > 70 {
        shown.push('…');
    }
    Err(format!(
        "agent name '{shown}' is not valid: an agent name is 1 to {AGENT_NAME_MAX} characters of lowercase letters a-z, \
         digits 0-9, '.', '_' and '-', starting with a letter or digit ({AGENT_NAME_PATTERN}), e.g. triage-bot or release.bot_2"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashSet;

    #[test]
    fn generated_keys_are_well_formed() {
        for _ in 0..200 {
            let new = generate();
            let key = new.secret.expose_secret();
            assert_eq!(key.len(), KEY_LEN);
            assert_eq!(KEY_LEN, 56);
            assert!(key.starts_with("jgate_"));
            assert_eq!(key.as_bytes()[KEY_PREFIX.len() + BODY_LEN], b'_');
            assert_eq!(check_format(key), Ok(()));
            assert_eq!(new.key_id, key_id(key));
            assert_eq!(new.hash, hash(key));
            assert_eq!(new.hash.len(), 64);
            assert!(verify(key, &new.hash));
        }
    }

    #[test]
    fn generated_keys_are_unique() {
        let keys: HashSet<String> = (0..1000).map(|_| generate().secret.expose_secret().to_owned()).collect();
        assert_eq!(keys.len(), 1000);
    }

    #[test]
    fn body_uses_whole_alphabet() {
        // A cheap sanity check of the sampler: over many keys every base62 character shows up.
        let mut seen = HashSet::new();
        for _ in 0..100 {
            let new = generate();
            seen.extend(new.secret.expose_secret()[KEY_PREFIX.len()..KEY_PREFIX.len() + BODY_LEN].chars());
        }
        assert_eq!(seen.len(), 62);
    }

    #[test]
    fn every_single_character_change_fails() {
        let new = generate();
        let key = new.secret.expose_secret();
        for i in KEY_PREFIX.len()..KEY_LEN {
            if i == KEY_PREFIX.len() + BODY_LEN {
                continue;
            }
            let mut bytes = key.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let mutated = String::from_utf8(bytes).unwrap();
            assert_eq!(check_format(&mutated), Err(KeyFormatError::BadChecksum), "position {i}");
        }
    }

    #[test]
    fn swapped_neighbours_fail() {
        let key = generate().secret.expose_secret().to_owned();
        let mut bytes = key.into_bytes();
        let (i, j) = (10, 11);
        if bytes[i] != bytes[j] {
            bytes.swap(i, j);
            assert_eq!(check_format(std::str::from_utf8(&bytes).unwrap()), Err(KeyFormatError::BadChecksum));
        }
    }

    #[test]
    fn truncated_and_extended_keys_fail() {
        let key = generate().secret.expose_secret().to_owned();
        let err = check_format(&key[..KEY_LEN - 1]).unwrap_err();
        assert_eq!(err, KeyFormatError::WrongLength { found: KEY_LEN - 1, expected: KEY_LEN });
        assert!(err.to_string().contains("truncated"), "{err}");
        let err = check_format(&format!("{key}x")).unwrap_err();
        assert!(err.to_string().contains("joined"), "{err}");
        assert_eq!(check_format(&key[..20]), Err(KeyFormatError::WrongLength { found: 20, expected: KEY_LEN }));
    }

    #[test]
    fn prefix_errors() {
        let key = generate().secret.expose_secret().to_owned();
        let body = &key[KEY_PREFIX.len()..];
        assert!(matches!(check_format(body), Err(KeyFormatError::WrongPrefix { .. })));
        let err = check_format(&format!("jgate-{body}")).unwrap_err();
        assert!(err.to_string().contains("mistyped"), "{err}");
        let err = check_format(&format!("Bearer {key}")).unwrap_err();
        assert!(err.to_string().contains("Bearer"), "{err}");
        let err = check_format("11aabbccddeeff00112233445566778899").unwrap_err();
        assert!(err.to_string().contains("Jenkins API token"), "{err}");
        assert_eq!(check_format(""), Err(KeyFormatError::Empty));
        assert_eq!(check_format(&format!("{key}\n")), Err(KeyFormatError::Whitespace));
    }

    #[test]
    fn invalid_characters_fail() {
        let key = generate().secret.expose_secret().to_owned();
        let mut bytes = key.clone().into_bytes();
        bytes[20] = b'-';
        let err = check_format(std::str::from_utf8(&bytes).unwrap()).unwrap_err();
        assert_eq!(err, KeyFormatError::InvalidCharacter { position: 21 });
        // Missing separator.
        let mut bytes = key.clone().into_bytes();
        bytes[KEY_PREFIX.len() + BODY_LEN] = b'x';
        assert!(matches!(
            check_format(std::str::from_utf8(&bytes).unwrap()),
            Err(KeyFormatError::InvalidCharacter { .. })
        ));
        // Non-ASCII of the right character count does not panic.
        let mut chars: Vec<char> = key.chars().collect();
        chars[30] = 'é';
        let mutated: String = chars.into_iter().collect();
        assert_eq!(check_format(&mutated), Err(KeyFormatError::InvalidCharacter { position: 31 }));
    }

    #[test]
    fn verify_matches_only_the_right_key() {
        let a = generate();
        let b = generate();
        assert!(verify(a.secret.expose_secret(), &a.hash));
        assert!(verify(a.secret.expose_secret(), &a.hash.to_uppercase()));
        assert!(!verify(b.secret.expose_secret(), &a.hash));
        assert!(!verify(a.secret.expose_secret(), &b.hash));
        assert!(!verify(a.secret.expose_secret(), ""));
        assert!(!verify(a.secret.expose_secret(), &a.hash[..63]));
        assert!(!verify(a.secret.expose_secret(), &a.key_id));
        assert!(!verify(a.secret.expose_secret(), "not hex at all"));
    }

    #[test]
    fn known_answers() {
        // SHA-256("abc"), pinned so the stored form cannot change silently.
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(key_id("abc"), "ba7816bf8f01");
    }

    #[test]
    fn key_id_is_stable_and_not_part_of_the_secret() {
        let new = generate();
        let key = new.secret.expose_secret();
        assert_eq!(key_id(key), key_id(key));
        assert_eq!(new.key_id.len(), KEY_ID_LEN);
        assert!(new.key_id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!key.contains(&new.key_id));
        assert!(!key.starts_with(&new.key_id));
        assert_ne!(key_id(key), key_id(generate().secret.expose_secret()));
    }

    #[test]
    fn debug_redacts_the_secret() {
        let new = generate();
        let key = new.secret.expose_secret();
        for text in [format!("{new:?}"), format!("{new:#?}")] {
            assert!(!text.contains(key), "{text}");
            assert!(!text.contains(&key[KEY_PREFIX.len()..KEY_PREFIX.len() + BODY_LEN]), "{text}");
            assert!(text.contains("REDACTED") && text.contains(&new.key_id), "{text}");
        }
        let err = check_format(&key[..KEY_LEN - 3]).unwrap_err();
        assert!(!err.to_string().contains(&key[KEY_PREFIX.len()..KEY_LEN - 3]));
    }

    #[test]
    fn agent_names_follow_one_rule() {
        for ok in ["a", "0", "triage-bot", "release.bot_2", "9lives", &"a".repeat(63)] {
            assert_eq!(check_agent_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-bot",
            ".bot",
            "_bot",
            "Triage",
            "triage bot",
            "bot/x",
            "bot\n",
            "bøt",
            "bot\u{202e}",
            &"a".repeat(64),
        ] {
            let err = check_agent_name(bad).expect_err(bad);
            assert!(err.contains("[a-z0-9][a-z0-9._-]{0,62}") && err.contains("e.g. triage-bot"), "{err}");
            assert!(!err.contains('\n') && !err.contains('\u{202e}'), "escaped: {err}");
        }
    }
}
