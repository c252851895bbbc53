//! Connection tests as the web console shows them: the outcome of a test — of settings not stored
//! yet (Test before Save) or of a stored controller — as a diagnosis a person reads (cause and
//! fix, or what was found), every text through the sanitizer (Jenkins' version, user name and
//! error pages are untrusted, and the token being tested is redacted in every encoding), and the
//! last result of each controller kept in the store (`controller_tests`, migration 0007) so every
//! replica's controller list shows it.

use jenkins::ConnectionReport;
use secrecy::ExposeSecret;
use sqlx::Row;

use crate::gate::{ControllerSettings, Gate, GateError, NewController};
use crate::sanitize::{KnownSecrets, Sanitizer};
use crate::store::{StoreError, db, now_ms};

/// A connection test's result, cleaned for display.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ControllerCheck {
    pub ok: bool,
    pub time_ms: i64,
    /// One line: "Jenkins 2.479 — connected as jgate-bot", or the failure's cause.
    pub summary: String,
    /// The fix of a failure (from the error's `Fix:`), if it names one.
    pub fix: Option<String>,
    /// Further lines: capabilities and warnings.
    pub details: Vec<String>,
    /// The Jenkins version found (cleaned).
    pub version: Option<String>,
}

impl ControllerCheck {
    /// A check from a test's result, every text cleaned by `s`.
    pub fn from_result(result: &Result<ConnectionReport, GateError>, s: &mut Sanitizer, name: &str) -> ControllerCheck {
        let time_ms = now_ms();
        match result {
            Ok(r) => {
                let version = r.version.as_deref().map(|v| s.clean(v));
                let plugins = if r.capabilities.plugins_visible {
                    format!("{} plugins detected", r.capabilities.plugins.len())
                } else {
                    "plugins not visible to this user".to_string()
                };
                let summary = format!(
                    "Jenkins {} — connected as {} — {plugins}",
                    version.as_deref().unwrap_or("?"),
                    s.clean(&r.who_am_i.name)
                );
                let mut details = Vec::new();
                if r.crumbs_required {
                    details.push("password authentication: CSRF crumbs will be used".to_string());
                }
                let named = |t: &str| t.replace("controller update NAME ", &format!("controller update {name} "));
                details.extend(r.warnings.iter().map(|w| format!("warning: {}", s.clean(&named(w)))));
                ControllerCheck { ok: true, time_ms, summary, fix: None, details, version }
            }
            Err(e) => {
                let text =
                    s.clean(&e.to_string().replace("controller update NAME ", &format!("controller update {name} ")));
                let (cause, fix) = match text.split_once(" Fix: ") {
                    Some((c, f)) => (c.trim().to_string(), Some(f.trim().to_string())),
                    None => (text.trim().to_string(), None),
                };
                ControllerCheck { ok: false, time_ms, summary: cause, fix, details: Vec::new(), version: None }
            }
        }
    }
}

impl Gate {
    /// Tests settings not stored yet; nothing is stored or recorded. The token being tested is
    /// redacted from every text of the answer.
    pub async fn check_new_controller(&self, c: &NewController, settings: &ControllerSettings) -> ControllerCheck {
        let result = self.test_new_controller(c, settings).await;
        let mut known = KnownSecrets::new();
        known.add(c.token.expose_secret());
        known.add_basic_auth(&c.username, c.token.expose_secret());
        ControllerCheck::from_result(&result, &mut Sanitizer::new(known), &c.name)
    }

    /// Tests a stored controller (as `jgate controller test`) and keeps the result as its last.
    pub async fn check_controller(&self, name: &str) -> Result<ControllerCheck, GateError> {
        let result = self.test_controller(name).await;
        if let Err(GateError::Store(e @ StoreError::Missing { .. })) = result {
            return Err(e.into());
        }
        self.keep_test_result(name, &result).await
    }

    /// Keeps the result of a stored controller's test, run elsewhere (`jgate controller test`),
    /// as its last, cleaned like the console's own tests; returns the check kept.
    pub async fn keep_test_result(
        &self,
        name: &str,
        result: &Result<ConnectionReport, GateError>,
    ) -> Result<ControllerCheck, GateError> {
        let mut s = match self.sanitizer(name).await {
            Ok(s) => s,
            Err(_) => Sanitizer::new(KnownSecrets::new()),
        };
        let check = ControllerCheck::from_result(result, &mut s, name);
        self.keep_check(name, &check).await?;
        Ok(check)
    }

    /// Keeps a check as the controller's last (the console's Save and Update run one).
    pub async fn keep_check(&self, name: &str, check: &ControllerCheck) -> Result<(), GateError> {
        let text = serde_json::to_string(check).map_err(|e| GateError::Invalid(e.to_string()))?;
        sqlx::query(self.store().sql(
            "INSERT INTO controller_tests (controller, time_ms, ok, summary) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (controller) DO UPDATE SET time_ms = excluded.time_ms, ok = excluded.ok, summary = excluded.summary",
        ))
        .bind(name)
        .bind(check.time_ms)
        .bind(i64::from(check.ok))
        .bind(text)
        .execute(self.store().pool())
        .await
        .map_err(db("keeping a connection test's result"))?;
        Ok(())
    }

    /// The last kept check of each controller, by controller name.
    pub async fn last_checks(&self) -> Result<std::collections::HashMap<String, ControllerCheck>, GateError> {
        let rows = sqlx::query("SELECT controller, summary FROM controller_tests")
            .fetch_all(self.store().pool())
            .await
            .map_err(db("reading connection tests"))?;
        let mut out = std::collections::HashMap::new();
        for r in rows {
            let name: String = r.try_get("controller").map_err(db("reading connection tests"))?;
            let text: String = r.try_get("summary").map_err(db("reading connection tests"))?;
            if let Ok(check) = serde_json::from_str::<StoredCheck>(&text) {
                out.insert(name, check.into());
            }
        }
        Ok(out)
    }
}

/// The stored form (the same fields; read back leniently).
#[derive(serde::Deserialize)]
struct StoredCheck {
    ok: bool,
    time_ms: i64,
    summary: String,
    fix: Option<String>,
    #[serde(default)]
    details: Vec<String>,
    version: Option<String>,
}

impl From<StoredCheck> for ControllerCheck {
    fn from(s: StoredCheck) -> Self {
        ControllerCheck {
            ok: s.ok,
            time_ms: s.time_ms,
            summary: s.summary,
            fix: s.fix,
            details: s.details,
            version: s.version,
        }
    }
}
