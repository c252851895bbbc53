//! rmcp's session store backed by jgate's store (`gate::shared_sessions`), so that an MCP session
//! opened on one `jgate serve` replica can be used on any other (and after a restart). Whether the
//! agent presenting a session may use it is decided before rmcp gets here (`serve::bearer`):
//! rmcp asks this store only for sessions already bound to that agent.

use std::sync::Arc;

use gate::Gate;
use rmcp::transport::streamable_http_server::session::store::{SessionState, SessionStore, SessionStoreError};

pub struct StoreSessions {
    pub gate: Arc<Gate>,
}

#[async_trait::async_trait]
impl SessionStore for StoreSessions {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        match self.gate.shared_session(session_id).await? {
            // An unbound session restores for nobody.
            Some(s) if !s.agent.is_empty() => Ok(Some(serde_json::from_str(&s.state)?)),
            _ => Ok(None),
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        self.gate.store_session_state(session_id, &serde_json::to_string(state)?).await?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        self.gate.delete_session(session_id).await?;
        Ok(())
    }
}
