//! Tokens for `jgate exec`: a short-lived credential made for one run of a command, so the command
//! (a Jenkins client, a community MCP server, curl) never holds the agent's long-lived key, let
//! alone a Jenkins token.
//!
//! A token is an agent key with scope `proxy`: it authenticates only at the Jenkins proxy (MCP
//! refuses it: [`Gate::authenticate`]), it expires after its time to live, `jgate exec` revokes it
//! when the command exits, and an administrator can revoke it like any key. Only a full agent key
//! can make one (a token cannot make more tokens). Starting and ending are audited.

use serde_json::json;

use crate::audit::Surface;
use crate::error::GateError;
use crate::gate::{Admin, Gate};
use crate::keys;
use crate::store::now_ms;

/// The longest a `jgate exec` token may live.
pub const MAX_EXEC_TTL_MS: i64 = 24 * 3_600_000;

/// A token made for one `jgate exec` run (the secret is shown to that run only).
#[derive(Debug)]
pub struct ExecToken {
    pub agent: String,
    pub key: keys::NewKey,
    pub expires_ms: i64,
}

impl Gate {
    /// Makes a proxy-only token for the agent whose full key is `presented`, valid `ttl_ms`.
    /// Audited as `admin.exec.start`, made by the agent itself.
    pub async fn start_exec(&self, presented: &str, ttl_ms: i64) -> Result<ExecToken, GateError> {
        if !(1_000..=MAX_EXEC_TTL_MS).contains(&ttl_ms) {
            return Err(GateError::Invalid(format!(
                "the token's time to live must be between 1 s and {} h",
                MAX_EXEC_TTL_MS / 3_600_000
            )));
        }
        // A full key only: `authenticate` refuses proxy-only tokens.
        let (agent, parent_key) = self.authenticate(presented).await?;
        let row = self.store().agent(&agent).await?.ok_or_else(|| GateError::BadKey("no agent has this key".into()))?;
        let key = keys::generate();
        let expires_ms = now_ms() + ttl_ms;
        let admin = Admin::new(agent.clone(), Surface::Proxy);
        let entry = Self::admin_entry(
            &admin,
            "admin.exec.start",
            Some(&agent),
            None,
            json!({"key_id": key.key_id, "parent_key_id": parent_key, "expires_ms": expires_ms}),
        );
        self.admin_intent(&entry).await?;
        let result =
            self.store().insert_proxy_key(row.id, &key.key_id, &key.hash, expires_ms).await.map_err(GateError::from);
        self.admin_outcome(entry, &result, json!({})).await;
        result?;
        Ok(ExecToken { agent, key, expires_ms })
    }

    /// Revokes a token made by [`Gate::start_exec`] when its run ends; `presented` is the agent's
    /// full key. Whether a live token was revoked. Audited as `admin.exec.end`.
    pub async fn end_exec(&self, presented: &str, key_id: &str) -> Result<bool, GateError> {
        let (agent, _) = self.authenticate(presented).await?;
        let row = self.store().agent(&agent).await?.ok_or_else(|| GateError::BadKey("no agent has this key".into()))?;
        let admin = Admin::new(agent.clone(), Surface::Proxy);
        let entry = Self::admin_entry(&admin, "admin.exec.end", Some(&agent), None, json!({"key_id": key_id}));
        self.admin_intent(&entry).await?;
        let result = self.store().revoke_proxy_key(row.id, key_id).await.map_err(GateError::from);
        self.admin_outcome(entry, &result, json!({"revoked": result.as_ref().ok()})).await;
        result
    }
}
