//! # gate: jgate's core
//!
//! The part every surface (MCP, proxy, CLI, web console) calls through one function, so that no
//! surface has its own policy or audit code:
//!
//! - [`catalog`]: every operation an agent can ask for, declared once as data.
//! - [`policy`]: grants (agent × controller × group × level × job scope × parameter rules), the
//!   deny-by-default decision, job-path normalisation.
//! - [`audit`]: records that read as plain English, HMAC-chained so edits, deletions, insertions
//!   and reorderings are detected; [`audit_device`]: the optional second copy in a file.
//! - [`secrets`], [`keys`]: envelope encryption of Jenkins tokens, agent keys (hashed).
//! - [`store`]: SQLite (embedded default) or PostgreSQL.
//! - [`limits`]: per-agent rate limits and per-grant quotas, shared by every process on a store.
//! - [`gate`]: [`Gate`](gate::Gate) — the admin operations and [`Gate::call`](gate::Gate::call),
//!   the one path every agent call takes.

pub mod admins;
pub mod approvals;
pub mod audit;
pub mod audit_device;
mod audit_sqlite;
pub mod audit_writer;
pub mod auth_cache;
pub mod budget;
pub mod call;
pub mod catalog;
pub mod controller_checks;
pub mod error;
pub mod events;
pub mod exec_tokens;
pub mod fields;
pub mod gate;
pub mod keys;
pub mod limits;
pub mod ops;
pub mod policy;
pub mod proxy;
pub mod reconcile;
pub mod route;
pub mod sanitize;
pub mod secrets;
pub mod shared_sessions;
pub mod store;
pub mod writes;

pub use call::{CallOptions, Limits};
pub use error::GateError;
pub use gate::{Admin, Caller, ControllerRemoval, ControllerSettings, ControllerUpdate, Gate, NewController};
pub use sanitize::Clean;
