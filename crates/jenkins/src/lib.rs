//! # jenkins: a client for the Jenkins remote access API
//!
//! An async, typed client that knows Jenkins and nothing of agents or policy. Everything jgate
//! does to a controller goes through it, so it is built to survive the real protocol and real
//! networks, and to explain every failure.
//!
//! ## Connecting
//!
//! ```no_run
//! use jenkins::{Credentials, JenkinsClient, JobPath, ssrf::AllowEntry};
//! use secrecy::SecretString;
//! # async fn demo() -> Result<(), jenkins::Error> {
//! let client = JenkinsClient::builder("https://ci.example.com:8443/jenkins")
//!     .credentials(Credentials::api_token("alice", SecretString::from("11abc…".to_string())))
//!     // A controller on a private network must be allow-listed explicitly:
//!     // .allow_private("10.0.0.0/8".parse()?)
//!     .build()?;
//! let report = client.test_connection().await?;   // version, identity, crumbs, plugins
//! let job = JobPath::parse("team/api-server")?;
//! let queue_id = client.trigger(&job, &[("ENV".into(), "staging".into())]).await?;
//! let build = client.wait_for_build(&job, queue_id, std::time::Duration::from_secs(60), std::time::Duration::from_secs(1)).await?;
//! println!("{} started build #{}", report.who_am_i.name, build.number);
//! # Ok(()) }
//! ```
//!
//! ## What is where
//!
//! - [`client`]: [`JenkinsClient`] — root info, jobs (folders `a/b` ↔ `/job/a/job/b/`), builds and
//!   permalinks, triggers with the **exact queue-item → build mapping** from the `Location`
//!   header (never "lastBuild"), queue, stop, config.xml, create/copy/delete/enable/disable,
//!   nodes, views, plugins and capability detection, junit reports, Pipeline stages (wfapi),
//!   consoles as streams, `test_connection`.
//! - [`logs`]: head, tail, line ranges and regex grep over a console stream with bounded memory.
//! - [`ssrf`]: the transport guard: every URL and every resolved address is classified; only
//!   public addresses and the explicit private-access allow-list are reachable, and connections
//!   go only to addresses that were checked (no DNS rebinding).
//! - [`path`]: base URLs (port, context path, `/api/json` suffix) and job paths (encoding,
//!   multibranch branch names).
//! - [`tree`]: a typed `tree=` builder with ranges.
//! - [`model`]: typed views of Jenkins' JSON objects.
//! - [`error`]: [`Error`], whose every variant says what happened and what to do.
//!
//! ## Load on the controller
//!
//! - Identical buffered GETs in flight at the same moment (same client or clone, same URL and
//!   query) are made once; every caller gets the answer or a clone of the error, and a caller that
//!   gives up does not cancel the read for the others.
//! - What Jenkins can no longer change is cached per client for a short while ([`CacheOptions`],
//!   60 s by default): a finished build's JSON (asked by number), its test report, and complete
//!   progressiveText chunks. Jobs, the queue, running builds and permalinks always go upstream.
//! - [`JenkinsClient::tail_from_end`] reads only the end of a console whose size is known.
//!
//! ## Safety properties
//!
//! - Credentials live in `secrecy` types; they never appear in `Debug`, errors or logs.
//! - API tokens are preferred (no CSRF crumb needed). With a password, the client fetches a
//!   crumb once per session, keeps the session cookie, and refetches it (retrying the write once)
//!   only when Jenkins rejects it.
//! - Only idempotent reads are retried (503, connection errors, timeouts), with backoff and
//!   jitter; writes are never retried automatically.
//! - Redirects are never followed, proxies from the environment are ignored, response bodies are
//!   capped (compression is not negotiated, so there is no decompression bomb to defuse).

pub mod cache;
pub mod client;
pub mod error;
pub mod logs;
pub mod model;
pub mod path;
pub mod ssrf;
pub mod tls;
pub mod tree;

pub use cache::CacheOptions;
pub use client::{
    BuildSelector, Capabilities, ClientBuilder, ConnectionReport, Credentials, EndTail, FilePart, JenkinsClient,
    Limits, LogChunk, Pause, Poll, SecretKind, Sleep, TailLine, TlsOptions,
};
pub use error::Error;
pub use path::{BaseUrl, JobPath};
