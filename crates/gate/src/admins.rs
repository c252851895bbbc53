//! Administrators of the web console and their sessions, in the store (so they work across
//! replicas): accounts with argon2id password hashes, sessions and one-time login links kept only
//! as SHA-256 hashes of their tokens, and failed logins counted per administrator name and per
//! client address (rate limiting that holds whichever replica a request reaches).
//!
//! Every change to an account, every login (refused ones included) and every logout is audited
//! through the same administrative path as the CLI's changes ([`Gate::admin_intent`] /
//! [`Gate::admin_outcome`]), with surface [`Surface::Web`] for the console.
//!
//! Agents' keys never open a console session: a password shaped like an agent key is refused when
//! it is set, and refused at login before anything is looked up.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::audit::{Phase, Surface};
use crate::gate::{Admin, Gate, GateError};
use crate::keys;
use crate::store::{StoreError, db, now_ms};

/// A session ends after this long without a request (30 minutes).
pub const SESSION_IDLE_MS: i64 = 30 * 60_000;
/// A session ends this long after login, however active (12 hours).
pub const SESSION_LIFETIME_MS: i64 = 12 * 3_600_000;
/// A one-time login link is valid for 10 minutes.
pub const LINK_TTL_MS: i64 = 10 * 60_000;
/// Failed logins are counted over this window (15 minutes).
pub const FAILURE_WINDOW_MS: i64 = 15 * 60_000;
/// Failed logins per administrator name within the window before logins by that name are refused.
pub const MAX_FAILURES_PER_NAME: i64 = 5;
/// Failed logins per client address within the window before logins from it are refused.
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// A session's last-seen time is written at most this often (each request would otherwise write).
const TOUCH_EVERY_MS: i64 = 15_000;

/// Prefix of console session tokens (the cookie's value).
pub const SESSION_PREFIX: &str = "jgs_";
/// Prefix of one-time login link tokens.
pub const LINK_PREFIX: &str = "jgl_";

/// An administrator as listed (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRow {
    pub name: String,
    pub created_ms: i64,
    pub password_ms: i64,
}

/// A session just opened: the token goes into the cookie once and is never stored.
pub struct NewSession {
    pub admin: String,
    pub token: SecretString,
    pub expires_ms: i64,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession").field("admin", &self.admin).field("expires_ms", &self.expires_ms).finish()
    }
}

/// A valid session, as a request finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub admin: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// Why a login was refused. The messages never say whether the name exists.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "wrong administrator name or password. Fix: check both and try again (`jgate admin passwd NAME` sets a new password)"
    )]
    BadCredentials,
    #[error(
        "too many failed logins for this administrator or from this address: try again in {retry_after_secs} seconds (or use a one-time link: `jgate console login`)"
    )]
    RateLimited { retry_after_secs: i64 },
    #[error(
        "this login link is not valid: it was already used, has expired (links last 10 minutes) or was mistyped. Fix: run `jgate console login` for a new one"
    )]
    BadLink,
    #[error(transparent)]
    Gate(#[from] GateError),
}

impl From<StoreError> for LoginError {
    fn from(e: StoreError) -> Self {
        LoginError::Gate(e.into())
    }
}

/// The one rule for administrator names (as for agents): 1 to 63 of `a-z 0-9 . _ -`, starting
/// with a letter or digit.
pub fn check_admin_name(name: &str) -> Result<(), GateError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        return Ok(());
    }
    let shown: String = name.chars().take(70).flat_map(char::escape_debug).collect();
    Err(GateError::Invalid(format!(
        "administrator name '{shown}' is not valid: 1 to 63 characters of lowercase letters a-z, digits 0-9, '.', '_' \
         and '-', starting with a letter or digit, e.g. alice or ops.admin"
    )))
}

/// A password an administrator may set: long enough, and never an agent key.
pub fn check_password(password: &str) -> Result<(), GateError> {
    if looks_like_agent_key(password) {
        return Err(GateError::Invalid(
            "an agent key cannot be an administrator's password (agents never log in to the console). Fix: choose a \
             password of your own"
                .into(),
        ));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(GateError::Invalid(format!(
            "the password is too short: use at least {MIN_PASSWORD_CHARS} characters (a passphrase of a few words is \
             easiest)"
        )));
    }
    Ok(())
}

fn looks_like_agent_key(s: &str) -> bool {
    s.trim().starts_with(keys::KEY_PREFIX) || keys::check_format(s.trim()).is_ok()
}

/// The argon2id PHC string of a password (OWASP's parameters: the crate's defaults).
fn hash_password(password: &str) -> Result<String, GateError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| GateError::Invalid(format!("the password could not be hashed: {e}")))
}

/// Whether `password` matches a stored PHC string (constant time in the crate). A stored string
/// that does not parse never matches.
fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash to verify against when the name is unknown, so that an unknown name costs as long as a
/// wrong password (the answer must not tell which it was).
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("jgate decoy password, never set").unwrap_or_default())
}

/// A random token with `prefix`: 256 bits, base64url.
fn new_token(prefix: &str) -> SecretString {
    use base64::Engine;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut());
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref());
    SecretString::from(format!("{prefix}{body}"))
}

/// The stored form of a session or link token: hex SHA-256.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Runs an argon2 computation off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, GateError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| GateError::Invalid(format!("password check failed: {e}")))
}

impl Gate {
    /// Creates an administrator of the console. Audited as `admin.administrator.create`.
    pub async fn create_admin(&self, by: &Admin, name: &str, password: &SecretString) -> Result<AdminRow, GateError> {
        check_admin_name(name)?;
        check_password(password.expose_secret())?;
        if self.admin_row(name).await?.is_some() {
            return Err(StoreError::Duplicate { what: "administrator", name: name.to_string() }.into());
        }
        let pw = password.clone();
        let hash = blocking(move || hash_password(pw.expose_secret())).await??;
        let entry = Self::admin_entry(by, "admin.administrator.create", Some(name), None, json!({}));
        self.admin_intent(&entry).await?;
        let now = now_ms();
        let result = sqlx::query(
            self.store()
                .sql("INSERT INTO admins (name, password_hash, created_ms, password_ms) VALUES ($1, $2, $3, $3)"),
        )
        .bind(name)
        .bind(&hash)
        .bind(now)
        .execute(self.store().pool())
        .await
        .map_err(db("adding an administrator"))
        .map_err(GateError::from)
        .map(|_| AdminRow { name: name.to_string(), created_ms: now, password_ms: now });
        self.admin_outcome(entry, &result, json!({})).await;
        result
    }

    /// The administrators, by name.
    pub async fn admins(&self) -> Result<Vec<AdminRow>, GateError> {
        let rows = sqlx::query("SELECT name, created_ms, password_ms FROM admins ORDER BY name")
            .fetch_all(self.store().pool())
            .await
            .map_err(db("listing administrators"))?;
        rows.iter().map(admin_row).collect::<Result<_, _>>().map_err(GateError::from)
    }

    async fn admin_row(&self, name: &str) -> Result<Option<AdminRow>, StoreError> {
        let row = sqlx::query(self.store().sql("SELECT name, created_ms, password_ms FROM admins WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.store().pool())
            .await
            .map_err(db("reading an administrator"))?;
        row.as_ref().map(admin_row).transpose()
    }

    /// Deletes an administrator with their sessions and login links; `false` if there is none by
    /// that name (nothing recorded). Audited as `admin.administrator.delete`.
    pub async fn delete_admin(&self, by: &Admin, name: &str) -> Result<bool, GateError> {
        if self.admin_row(name).await?.is_none() {
            return Ok(false);
        }
        let entry = Self::admin_entry(by, "admin.administrator.delete", Some(name), None, json!({}));
        self.admin_intent(&entry).await?;
        let result = async {
            let store = self.store();
            let mut tx = store.pool().begin().await.map_err(db("deleting an administrator"))?;
            for stmt in [
                "DELETE FROM console_sessions WHERE admin_name = $1",
                "DELETE FROM console_login_links WHERE admin_name = $1",
                "DELETE FROM admins WHERE name = $1",
            ] {
                sqlx::query(store.sql(stmt))
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("deleting an administrator"))?;
            }
            tx.commit().await.map_err(db("deleting an administrator"))?;
            Ok::<_, GateError>(true)
        }
        .await;
        self.admin_outcome(entry, &result, json!({})).await;
        result
    }

    /// Sets an administrator's password and ends their sessions (a password change locks out
    /// whoever held the old one). Audited as `admin.administrator.passwd`.
    pub async fn set_admin_password(&self, by: &Admin, name: &str, password: &SecretString) -> Result<(), GateError> {
        check_password(password.expose_secret())?;
        if self.admin_row(name).await?.is_none() {
            return Err(missing_admin(name).into());
        }
        let pw = password.clone();
        let hash = blocking(move || hash_password(pw.expose_secret())).await??;
        let entry = Self::admin_entry(by, "admin.administrator.passwd", Some(name), None, json!({}));
        self.admin_intent(&entry).await?;
        let result = async {
            let store = self.store();
            let mut tx = store.pool().begin().await.map_err(db("setting a password"))?;
            sqlx::query(store.sql("UPDATE admins SET password_hash = $1, password_ms = $2 WHERE name = $3"))
                .bind(&hash)
                .bind(now_ms())
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db("setting a password"))?;
            let ended = sqlx::query(store.sql("DELETE FROM console_sessions WHERE admin_name = $1"))
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db("ending sessions"))?
                .rows_affected();
            tx.commit().await.map_err(db("setting a password"))?;
            Ok::<_, GateError>(ended)
        }
        .await;
        let extra = json!({"sessions_ended": result.as_ref().ok()});
        self.admin_outcome(entry, &result, extra).await;
        result.map(|_| ())
    }

    /// Logs an administrator in with a password, from `client_addr`: a new session, or why not.
    ///
    /// Refused without checking the password while the name or the address has too many recent
    /// failures; a wrong password, an unknown name and an agent key all answer alike (and cost
    /// alike). Every attempt is audited as `admin.console.login` (refused ones as denied).
    pub async fn console_login(
        &self,
        name: &str,
        password: &SecretString,
        client_addr: &str,
    ) -> Result<NewSession, LoginError> {
        // A name longer than any valid one is cut: it is counted and audited, not stored whole.
        let name: String = name.trim().chars().take(64).collect();
        let name = name.as_str();
        if let Some(wait) = self.login_blocked(name, client_addr).await? {
            self.blocked_refused(name, client_addr).await?;
            return Err(LoginError::RateLimited { retry_after_secs: wait });
        }
        let stored: Option<String> = if check_admin_name(name).is_ok() {
            sqlx::query(self.store().sql("SELECT password_hash FROM admins WHERE name = $1"))
                .bind(name)
                .fetch_optional(self.store().pool())
                .await
                .map_err(db("reading an administrator"))?
                .map(|r| r.try_get::<String, _>("password_hash"))
                .transpose()
                .map_err(db("reading an administrator"))?
        } else {
            None
        };
        let agent_key = looks_like_agent_key(password.expose_secret());
        let pw = password.clone();
        let matched = blocking(move || {
            let against = stored.as_deref().unwrap_or_else(|| decoy_hash());
            let ok = verify_password(pw.expose_secret(), against);
            ok && stored.is_some() && !agent_key
        })
        .await?;
        if !matched {
            self.note_failure(name, client_addr).await?;
            let why = if agent_key { "an agent key is not a password" } else { "wrong name or password" };
            self.login_refused(name, client_addr, why).await?;
            return Err(LoginError::BadCredentials);
        }
        self.open_session(name, client_addr, "password").await
    }

    /// Makes a one-time login link for an administrator (valid [`LINK_TTL_MS`], used once);
    /// returns its token, which only the caller sees. Audited as `admin.console.link`.
    pub async fn console_login_link(&self, by: &Admin, name: &str) -> Result<SecretString, GateError> {
        if self.admin_row(name).await?.is_none() {
            return Err(missing_admin(name).into());
        }
        let token = new_token(LINK_PREFIX);
        let now = now_ms();
        let entry =
            Self::admin_entry(by, "admin.console.link", Some(name), None, json!({"expires_ms": now + LINK_TTL_MS}));
        self.admin_intent(&entry).await?;
        let result = sqlx::query(self.store().sql(
            "INSERT INTO console_login_links (token_hash, admin_name, created_ms, expires_ms) VALUES ($1, $2, $3, $4)",
        ))
        .bind(token_hash(token.expose_secret()))
        .bind(name)
        .bind(now)
        .bind(now + LINK_TTL_MS)
        .execute(self.store().pool())
        .await
        .map_err(db("storing a login link"))
        .map_err(GateError::from);
        self.admin_outcome(entry, &result, json!({})).await;
        result.map(|_| token)
    }

    /// Redeems a one-time login link: marks it used (one statement, so two replicas cannot both
    /// redeem it) and opens a session. Counted against the address's failures when invalid.
    pub async fn console_redeem_link(&self, token: &str, client_addr: &str) -> Result<NewSession, LoginError> {
        if let Some(wait) = self.login_blocked("", client_addr).await? {
            self.blocked_refused("", client_addr).await?;
            return Err(LoginError::RateLimited { retry_after_secs: wait });
        }
        let now = now_ms();
        let admin: Option<String> = if token.starts_with(LINK_PREFIX) {
            sqlx::query(self.store().sql(
                "UPDATE console_login_links SET used_ms = $1 WHERE token_hash = $2 AND used_ms IS NULL \
                 AND expires_ms > $1 RETURNING admin_name",
            ))
            .bind(now)
            .bind(token_hash(token))
            .fetch_optional(self.store().pool())
            .await
            .map_err(db("using a login link"))?
            .map(|r| r.try_get::<String, _>("admin_name"))
            .transpose()
            .map_err(db("using a login link"))?
        } else {
            None
        };
        let Some(admin) = admin else {
            self.note_failure("", client_addr).await?;
            self.login_refused("", client_addr, "invalid, used or expired login link").await?;
            return Err(LoginError::BadLink);
        };
        self.open_session(&admin, client_addr, "link").await
    }

    async fn open_session(&self, admin: &str, client_addr: &str, how: &str) -> Result<NewSession, LoginError> {
        let token = new_token(SESSION_PREFIX);
        let now = now_ms();
        let expires_ms = now + SESSION_LIFETIME_MS;
        let hash = token_hash(token.expose_secret());
        sqlx::query(self.store().sql(
            "INSERT INTO console_sessions (token_hash, admin_name, created_ms, last_seen_ms, expires_ms, client_addr) \
             VALUES ($1, $2, $3, $3, $4, $5)",
        ))
        .bind(&hash)
        .bind(admin)
        .bind(now)
        .bind(expires_ms)
        .bind(client_addr)
        .execute(self.store().pool())
        .await
        .map_err(db("opening a session"))?;
        sqlx::query(self.store().sql("DELETE FROM console_login_failures WHERE scope = 'name' AND subject = $1"))
            .bind(admin)
            .execute(self.store().pool())
            .await
            .map_err(db("clearing failed logins"))?;
        let mut entry = Self::admin_entry(
            &Admin::new(admin, Surface::Web),
            "admin.console.login",
            Some(admin),
            None,
            json!({"with": how}),
        );
        entry.client_addr = Some(client_addr.to_string());
        entry.phase = Phase::Outcome;
        entry.outcome = Some("ok".into());
        // No record, no session.
        if let Err(e) = self.record(entry).await {
            let _ = self.end_session_row(&hash).await;
            return Err(GateError::AuditUnavailable(e.to_string()).into());
        }
        Ok(NewSession { admin: admin.to_string(), token, expires_ms })
    }

    /// The session a token names, if it is valid now (neither idle past [`SESSION_IDLE_MS`] nor
    /// past its lifetime, and its administrator still exists); notes the request (last seen).
    /// An expired session's row is removed.
    pub async fn console_session(&self, token: &str) -> Result<Option<ConsoleSession>, GateError> {
        self.session_lookup(token, true).await
    }

    /// [`Gate::console_session`] without noting a request: for a page's own background requests
    /// (the audit's live updates), which must not keep a forgotten session alive.
    pub async fn console_session_peek(&self, token: &str) -> Result<Option<ConsoleSession>, GateError> {
        self.session_lookup(token, false).await
    }

    async fn session_lookup(&self, token: &str, touch: bool) -> Result<Option<ConsoleSession>, GateError> {
        if !token.starts_with(SESSION_PREFIX) {
            return Ok(None);
        }
        let hash = token_hash(token);
        let row = sqlx::query(self.store().sql(
            "SELECT s.admin_name, s.created_ms, s.last_seen_ms, s.expires_ms FROM console_sessions s \
             JOIN admins a ON a.name = s.admin_name WHERE s.token_hash = $1",
        ))
        .bind(&hash)
        .fetch_optional(self.store().pool())
        .await
        .map_err(db("reading a session"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let e = db("reading a session");
        let admin: String = row.try_get("admin_name").map_err(&e)?;
        let created_ms: i64 = row.try_get("created_ms").map_err(&e)?;
        let last_seen: i64 = row.try_get("last_seen_ms").map_err(&e)?;
        let expires_ms: i64 = row.try_get("expires_ms").map_err(&e)?;
        let now = now_ms();
        if now >= expires_ms || now - last_seen >= SESSION_IDLE_MS {
            self.end_session_row(&hash).await?;
            return Ok(None);
        }
        if touch && now - last_seen >= TOUCH_EVERY_MS {
            sqlx::query(self.store().sql("UPDATE console_sessions SET last_seen_ms = $1 WHERE token_hash = $2"))
                .bind(now)
                .bind(&hash)
                .execute(self.store().pool())
                .await
                .map_err(db("noting a session's request"))?;
        }
        Ok(Some(ConsoleSession { admin, created_ms, expires_ms }))
    }

    /// Ends a session (logout). Audited as `admin.console.logout` when there was one.
    pub async fn console_logout(&self, token: &str) -> Result<(), GateError> {
        let Some(session) = self.console_session(token).await? else {
            return Ok(());
        };
        self.end_session_row(&token_hash(token)).await?;
        let mut entry = Self::admin_entry(
            &Admin::new(&session.admin, Surface::Web),
            "admin.console.logout",
            Some(&session.admin),
            None,
            json!({}),
        );
        entry.phase = Phase::Outcome;
        entry.outcome = Some("ok".into());
        self.record(entry).await.map_err(|e| GateError::AuditUnavailable(e.to_string()))?;
        Ok(())
    }

    async fn end_session_row(&self, hash: &str) -> Result<(), StoreError> {
        sqlx::query(self.store().sql("DELETE FROM console_sessions WHERE token_hash = $1"))
            .bind(hash)
            .execute(self.store().pool())
            .await
            .map_err(db("ending a session"))?;
        Ok(())
    }

    /// For tests: moves a session's clock back by `ms` (last seen and creation), as if time passed.
    #[doc(hidden)]
    pub async fn age_console_session(&self, token: &str, ms: i64) -> Result<(), GateError> {
        sqlx::query(self.store().sql(
            "UPDATE console_sessions SET last_seen_ms = last_seen_ms - $1, created_ms = created_ms - $1 \
             WHERE token_hash = $2",
        ))
        .bind(ms)
        .bind(token_hash(token))
        .execute(self.store().pool())
        .await
        .map_err(db("ageing a session"))?;
        Ok(())
    }

    /// Seconds to wait if the name or the address has too many failures in the window.
    async fn login_blocked(&self, name: &str, client_addr: &str) -> Result<Option<i64>, StoreError> {
        let since = now_ms() - FAILURE_WINDOW_MS;
        let mut wait = None;
        for (scope, subject, max) in
            [("name", name, MAX_FAILURES_PER_NAME), ("addr", client_addr, MAX_FAILURES_PER_ADDRESS)]
        {
            if subject.is_empty() {
                continue;
            }
            let row = sqlx::query(self.store().sql(
                "SELECT COUNT(*) AS n, MIN(time_ms) AS first FROM console_login_failures \
                 WHERE scope = $1 AND subject = $2 AND time_ms > $3",
            ))
            .bind(scope)
            .bind(subject)
            .bind(since)
            .fetch_one(self.store().pool())
            .await
            .map_err(db("counting failed logins"))?;
            let n: i64 = row.try_get("n").map_err(db("counting failed logins"))?;
            if n >= max {
                let first: Option<i64> = row.try_get("first").map_err(db("counting failed logins"))?;
                let secs = (first.unwrap_or(since) + FAILURE_WINDOW_MS - now_ms()).max(1000) / 1000;
                wait = Some(wait.map_or(secs, |w: i64| w.max(secs)));
            }
        }
        Ok(wait)
    }

    async fn note_failure(&self, name: &str, client_addr: &str) -> Result<(), StoreError> {
        let now = now_ms();
        // Old failures go as new ones come: the table stays the size of the window.
        sqlx::query(self.store().sql("DELETE FROM console_login_failures WHERE time_ms <= $1"))
            .bind(now - FAILURE_WINDOW_MS)
            .execute(self.store().pool())
            .await
            .map_err(db("noting a failed login"))?;
        for (scope, subject) in [("name", name), ("addr", client_addr)] {
            if subject.is_empty() {
                continue;
            }
            sqlx::query(
                self.store().sql("INSERT INTO console_login_failures (scope, subject, time_ms) VALUES ($1, $2, $3)"),
            )
            .bind(scope)
            .bind(subject)
            .bind(now)
            .execute(self.store().pool())
            .await
            .map_err(db("noting a failed login"))?;
        }
        Ok(())
    }

    /// Audits a login refused by the rate limit — once per name and address within the window:
    /// attempts while locked out cost nothing, and must not flood the audit log either.
    async fn blocked_refused(&self, name: &str, client_addr: &str) -> Result<(), GateError> {
        let subject = format!("{name}\n{client_addr}");
        let since = now_ms() - FAILURE_WINDOW_MS;
        let seen = sqlx::query(self.store().sql(
            "SELECT 1 AS x FROM console_login_failures WHERE scope = 'blocked' AND subject = $1 AND time_ms > $2",
        ))
        .bind(&subject)
        .bind(since)
        .fetch_optional(self.store().pool())
        .await
        .map_err(db("counting refused logins"))?
        .is_some();
        if seen {
            return Ok(());
        }
        sqlx::query(
            self.store().sql("INSERT INTO console_login_failures (scope, subject, time_ms) VALUES ('blocked', $1, $2)"),
        )
        .bind(&subject)
        .bind(now_ms())
        .execute(self.store().pool())
        .await
        .map_err(db("noting a refused login"))?;
        self.login_refused(
            name,
            client_addr,
            "too many failed logins (further attempts in the next 15 minutes are refused unrecorded)",
        )
        .await
    }

    /// Audits a refused login. The name as typed is recorded (escaped by the audit sentence).
    async fn login_refused(&self, name: &str, client_addr: &str, why: &str) -> Result<(), GateError> {
        let shown = if name.is_empty() { "someone" } else { name };
        let mut entry =
            Self::admin_entry(&Admin::new(shown, Surface::Web), "admin.console.login", Some(shown), None, json!({}));
        entry.client_addr = Some(client_addr.to_string());
        entry.phase = Phase::Denied;
        entry.allowed = false;
        entry.reason = why.to_string();
        self.record(entry).await.map_err(|e| GateError::AuditUnavailable(e.to_string()))?;
        Ok(())
    }
}

fn missing_admin(name: &str) -> StoreError {
    StoreError::Missing {
        what: "administrator",
        name: name.to_string(),
        hint: "`jgate admin list` shows them; `jgate admin create NAME` adds one".into(),
    }
}

fn admin_row(r: &sqlx::any::AnyRow) -> Result<AdminRow, StoreError> {
    let e = db("reading an administrator");
    Ok(AdminRow {
        name: r.try_get("name").map_err(&e)?,
        created_ms: r.try_get("created_ms").map_err(&e)?,
        password_ms: r.try_get("password_ms").map_err(&e)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify_and_agent_keys_are_refused() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("correct horse battery", "not a hash"));
        let key = keys::generate();
        assert!(check_password(key.secret.expose_secret()).is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("a long enough passphrase").is_ok());
    }

    #[test]
    fn admin_names_follow_the_rule() {
        assert!(check_admin_name("alice").is_ok());
        for bad in ["", "Alice", "-x", "a b", "a\u{202e}b", &"a".repeat(64)] {
            assert!(check_admin_name(bad).is_err(), "{bad:?}");
        }
    }
}
