//! The administrator's CLI: controllers, agents, grants, the audit log, key rotation — and
//! `jgate call`, the CLI surface through which an agent calls an operation.
//!
//! Secrets never travel as arguments: tokens come from a file, an environment variable or stdin;
//! agent keys from `JGATE_AGENT_KEY`.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gate::audit::{Checkpoint, Phase, Surface};
use gate::audit_device::AuditDevice;
use gate::catalog::{self, Group};
use gate::policy::ParamConstraint;
use gate::secrets::{KeySource, MasterKey};
use gate::store::{AuditFilter, META_KEY_CHECK, Store};
use gate::{Admin, Caller, Gate, NewController};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::cli_error::{CliError, Kind};
use crate::term;

/// Options every admin command takes.
#[derive(Args, Clone)]
pub struct Global {
    /// Database: a SQLite file path or sqlite:///path (default: jgate.db in the data directory),
    /// or postgres://user@host:port/db.
    #[arg(long, global = true, env = "JGATE_DB")]
    pub db: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// The master key file (default: master.key in the data directory; JGATE_MASTER_KEY wins).
    #[arg(long, global = true, env = "JGATE_MASTER_KEY_FILE", visible_alias = "master-key-file", value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// A second audit device: append every audit record to this file as one JSON line, flushed
    /// to disk before the call goes on (`-` = standard output). A write whose record cannot be
    /// appended is refused, and a read is not returned.
    #[arg(long, global = true, env = "JGATE_AUDIT_FILE", value_name = "PATH")]
    pub audit_file: Option<String>,
    /// Calls one agent may have in flight at once (serve, mcp, call); further calls are refused
    /// until one finishes.
    #[arg(long, global = true, env = "JGATE_MAX_CALLS_PER_AGENT", value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_calls_per_agent: u32,
    /// Seconds a call held for approval waits for the decision before it answers `pending`
    /// with the approval id (serve, mcp, call).
    #[arg(long, global = true, env = "JGATE_APPROVAL_WAIT", value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub approval_wait: u64,
    /// Seconds an approval may wait for a decision (and an approved call to be sent again)
    /// before it expires (serve, mcp, call).
    #[arg(long, global = true, env = "JGATE_APPROVAL_EXPIRY", value_name = "SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=30 * 86_400))]
    pub approval_expiry: u64,
    /// A file holding the URL new approval requests are POSTed to (a chat tool's incoming
    /// webhook; its URL is a secret, so never an argument). JGATE_APPROVAL_WEBHOOK holds the URL
    /// itself. Failures are logged and never hold up a call (serve, mcp, call).
    #[arg(long, global = true, env = "JGATE_APPROVAL_WEBHOOK_FILE", value_name = "PATH")]
    pub approval_webhook_file: Option<PathBuf>,
    /// The webhook's payload: json (generic) or slack (Slack-compatible incoming webhook).
    #[arg(long, global = true, env = "JGATE_APPROVAL_WEBHOOK_FORMAT", value_name = "FORMAT", default_value = "json")]
    pub approval_webhook_format: String,
    /// A private address the webhook may reach (HOST:PORT, CIDR; repeatable), as for controllers.
    #[arg(long, global = true, value_name = "ENTRY")]
    pub approval_webhook_allow_private: Vec<String>,
}

#[derive(Subcommand)]
pub enum ControllerCmd {
    /// Adds a controller after testing the connection. The API token is read from --token-file,
    /// --token-env or standard input — never from an argument.
    #[command(after_help = "Examples:
  jgate controller add prod --url https://ci.example.com --username jgate-bot --token-file token.txt
  jgate controller add lab --url http://10.0.0.5:8080 --username bot --token-env LAB_TOKEN --allow-private 10.0.0.5:8080
  jgate controller add corp --url https://jenkins.corp:8443/jenkins --username bot --token-file t.txt --ca-file corp-ca.pem --timeout 60
  pass show jenkins/bot | jgate controller add prod --url https://ci.example.com --username jgate-bot   (token on stdin)")]
    Add {
        /// The controller's name in jgate (agents and grants refer to it), e.g. prod.
        name: String,
        /// The controller's root URL (with its context path, e.g. https://host:8443/jenkins).
        #[arg(long)]
        url: String,
        /// The Jenkins user whose API token jgate uses.
        #[arg(long)]
        username: String,
        /// Read the token from this file.
        #[arg(long, conflicts_with = "token_env")]
        token_file: Option<PathBuf>,
        /// Read the token from this environment variable.
        #[arg(long)]
        token_env: Option<String>,
        /// The secret is a password, not an API token (API tokens are preferred).
        #[arg(long)]
        password: bool,
        /// Private-access allow-list entry for a Jenkins on a private network: CIDR or HOST,
        /// optionally with :PORT (e.g. 10.0.0.0/8, 127.0.0.1:8080, jenkins.internal:8443).
        #[arg(long = "allow-private", value_name = "CIDR|HOST")]
        allow_private: Vec<String>,
        /// PEM file of the CA that signed the controller's certificate, or of its self-signed
        /// certificate (e.g. one made with `openssl req -x509`).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Also trust this machine's certificate store (corporate CAs installed in the OS).
        #[arg(long)]
        system_ca: bool,
        /// DANGEROUS: do not verify the controller's TLS certificate.
        #[arg(long)]
        insecure_skip_tls_verify: bool,
        /// Seconds to wait for each Jenkins request (default 30).
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: Option<u64>,
        /// Store the controller even if the connection test fails.
        #[arg(long)]
        force: bool,
    },
    /// Sets up build events from the Jenkins Notification plugin: makes the controller's hook
    /// secret (shown once, stored only as a hash) and prints what to configure in Jenkins.
    /// Waits on builds then wake on the controller's events instead of polling (docs/events.md).
    #[command(after_help = "Examples:
  jgate controller hook prod --public-url https://jgate.example.com
  jgate controller hook prod --rotate
  jgate controller hook prod --stats")]
    Hook {
        /// The controller's name.
        name: String,
        /// Replace the secret (the old one stops working at once).
        #[arg(long)]
        rotate: bool,
        /// Show whether a hook is set up and what the receiver answered, instead.
        #[arg(long, conflicts_with = "rotate")]
        stats: bool,
        /// jgate's address as the Jenkins controller reaches it.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8765")]
        public_url: String,
    },
    /// Changes a stored controller (only what is given changes). The new settings are tested
    /// first; if the test fails nothing is stored, unless --force. Running `jgate serve` and
    /// `jgate mcp` processes use the new settings within a second.
    #[command(after_help = "Examples:
  jgate controller update prod --token-file new-token.txt
  jgate controller update prod --url https://ci2.example.com --timeout 60
  jgate controller update lab --allow-private 10.0.0.0/8
  jgate controller update lab --no-allow-private
  jgate controller update prod --ca-file corp-ca.pem --verify-tls
  jgate controller update prod --url https://ci.example.com --force   (store although the test fails)")]
    Update {
        /// The controller's name.
        name: String,
        /// The controller's new root URL.
        #[arg(long)]
        url: Option<String>,
        /// The Jenkins user whose API token jgate uses from now on.
        #[arg(long)]
        username: Option<String>,
        /// Read a new token from this file.
        #[arg(long, conflicts_with_all = ["token_env", "token_stdin"])]
        token_file: Option<PathBuf>,
        /// Read a new token from this environment variable.
        #[arg(long, conflicts_with = "token_stdin")]
        token_env: Option<String>,
        /// Read a new token from standard input.
        #[arg(long)]
        token_stdin: bool,
        /// The secret is a password, not an API token.
        #[arg(long, conflicts_with = "api_token")]
        password: bool,
        /// The secret is an API token (undoes --password).
        #[arg(long)]
        api_token: bool,
        /// Replaces the private-access allow-list with these entries (repeat for several).
        #[arg(long = "allow-private", value_name = "CIDR|HOST", conflicts_with = "no_allow_private")]
        allow_private: Vec<String>,
        /// Empties the private-access allow-list.
        #[arg(long)]
        no_allow_private: bool,
        /// PEM file of the CA (or the self-signed certificate) to trust.
        #[arg(long, conflicts_with = "no_ca_file")]
        ca_file: Option<PathBuf>,
        /// Stops trusting the stored CA file.
        #[arg(long)]
        no_ca_file: bool,
        /// Also trust this machine's certificate store.
        #[arg(long, conflicts_with = "no_system_ca")]
        system_ca: bool,
        /// Stops trusting this machine's certificate store.
        #[arg(long)]
        no_system_ca: bool,
        /// DANGEROUS: do not verify the controller's TLS certificate.
        #[arg(long, conflicts_with = "verify_tls")]
        insecure_skip_tls_verify: bool,
        /// Verifies the controller's TLS certificate again (undoes --insecure-skip-tls-verify).
        #[arg(long)]
        verify_tls: bool,
        /// Seconds to wait for each Jenkins request (0 = back to the default, 30).
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=3600))]
        timeout: Option<u64>,
        /// Store the change even if the connection test fails.
        #[arg(long)]
        force: bool,
    },
    /// Tests the connection of a stored controller.
    #[command(after_help = "Examples:
  jgate controller test prod
  jgate controller test prod --timeout 90 --json")]
    Test {
        /// The controller's name.
        name: String,
        /// Seconds to wait for each Jenkins request, for this test only (default: the stored
        /// setting, else 30).
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: Option<u64>,
    },
    /// Lists controllers.
    #[command(after_help = "Examples:
  jgate controller list
  jgate controller list --json")]
    List,
    /// Removes a controller. Refuses while grants name it, unless --with-grants.
    #[command(after_help = "Examples:
  jgate controller remove staging
  jgate controller remove staging --with-grants")]
    Remove {
        /// The controller's name.
        name: String,
        /// Also remove the grants that name this controller (each is audited).
        #[arg(long)]
        with_grants: bool,
    },
}

#[derive(Subcommand)]
pub enum AgentCmd {
    /// Creates an agent and prints its key once. Names: 1-63 characters of a-z, 0-9, '.', '_'
    /// and '-', starting with a letter or digit (e.g. triage-bot).
    #[command(after_help = "Examples:
  jgate agent create triage-bot --description 'reads failing builds'
  jgate agent create release-bot --expires 90d
  jgate agent create ci-bot --json          (the key in a JSON document, for scripts)")]
    Create {
        /// The agent's name, e.g. triage-bot.
        name: String,
        /// What the agent is for (shown in `jgate agent list`).
        #[arg(long, default_value = "")]
        description: String,
        /// The key expires after this long: 90d, 12h, 30m, 2w (default: never).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// The key expires after this many days (same as --expires Nd).
        #[arg(long, hide = true, conflicts_with = "expires")]
        expires_days: Option<u32>,
    },
    /// Lists agents, whether they are enabled, and their keys (ids, expiry, last use).
    #[command(after_help = "Examples:
  jgate agent list
  jgate agent list --json")]
    List,
    /// Revokes all keys of an agent, or one key.
    #[command(after_help = "Examples:
  jgate agent revoke triage-bot
  jgate agent revoke triage-bot --key 3f2a9c1d0e4b      (one key, by id from `jgate agent list --json`)")]
    Revoke {
        /// The agent's name.
        name: String,
        /// Only this key (its id, as `jgate agent list --json` shows it).
        #[arg(long)]
        key: Option<String>,
    },
    /// Issues an additional key for an agent (printed once); `agent key rotate NAME` replaces them.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    #[command(after_help = "Examples:
  jgate agent key triage-bot                  (an additional key, printed once)
  jgate agent key triage-bot --expires 30d
  jgate agent key rotate triage-bot --overlap 1h")]
    Key {
        #[command(subcommand)]
        action: Option<KeyAction>,
        /// The agent's name.
        #[arg(required = true)]
        name: Option<String>,
        /// The key expires after this long: 90d, 12h, 30m, 2w (default: never).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// The key expires after this many days (older form of --expires).
        #[arg(long, hide = true, conflicts_with = "expires")]
        expires_days: Option<u32>,
    },
    /// Refuses the agent's keys and calls until it is enabled again (its grants are kept).
    #[command(after_help = "Example:
  jgate agent disable triage-bot")]
    Disable {
        /// The agent's name.
        name: String,
    },
    /// Enables a disabled agent again.
    #[command(after_help = "Example:
  jgate agent enable triage-bot")]
    Enable {
        /// The agent's name.
        name: String,
    },
    /// Shows or sets an agent's rate limits, shared by every jgate process on the database
    /// (docs/limits.md). Without a flag: shows them and what is used now.
    #[command(after_help = "Examples:
  jgate agent limits release-bot
  jgate agent limits release-bot --calls-per-minute 120 --triggers-per-hour 10
  jgate agent limits release-bot --clear")]
    Limits {
        /// The agent's name.
        name: String,
        /// At most N calls per minute, reads included (each minute of the clock).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        calls_per_minute: Option<u32>,
        /// At most N calls per hour that start a build (trigger_build), each hour of the clock.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        triggers_per_hour: Option<u32>,
        /// Remove the agent's limits (with a flag above: remove the others, set that one).
        #[arg(long)]
        clear: bool,
    },
    /// Deletes an agent and its keys. Refused while it has grants, unless --with-grants.
    #[command(after_help = "Examples:
  jgate agent delete triage-bot
  jgate agent delete triage-bot --with-grants")]
    Delete {
        /// The agent's name.
        name: String,
        /// Remove its grants too (each is named in the audit record).
        #[arg(long)]
        with_grants: bool,
    },
}

#[derive(Subcommand)]
pub enum KeyAction {
    /// Issues a new key (printed once) and retires the agent's keys: at once, or after --overlap.
    #[command(after_help = "Examples:
  jgate agent key rotate triage-bot                     (the old keys stop working now)
  jgate agent key rotate triage-bot --overlap 1h        (the old keys work one more hour)
  jgate agent key rotate triage-bot --key 3f2a9c1d0e4b --expires 90d")]
    Rotate {
        /// The agent's name.
        name: String,
        /// Keep the old key(s) valid this long (e.g. 1h, 30m, up to 30d) so clients can switch;
        /// default: revoked now.
        #[arg(long, value_name = "DURATION")]
        overlap: Option<String>,
        /// Rotate only this key (by id); default: every valid key of the agent.
        #[arg(long, value_name = "KEY_ID")]
        key: Option<String>,
        /// The new key expires after this long: 90d, 12h, 30m, 2w (default: never).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
}

#[derive(Args)]
pub struct AccessArgs {
    /// The agent's name.
    pub agent: String,
    /// Only this controller (default: every configured controller).
    #[arg(long)]
    pub controller: Option<String>,
    /// Explain, for this job, which grant decides in each group and why.
    #[arg(long)]
    pub job: Option<String>,
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Verifies the hash chain, every column, the sealed head and checkpoints (and an audit file).
    #[command(after_help = "Examples:
  jgate audit verify
  jgate audit verify --checkpoints checkpoints.txt --file audit.jsonl")]
    Verify {
        /// A file of checkpoints exported earlier (one `seq hash` per line).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// An audit file written with --audit-file: its records must be in the database, unchanged.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Report writes whose intent is older than this many seconds and still has no outcome
        /// (a running `jgate serve` closes those of stopped processes within seconds).
        #[arg(long, value_name = "SECONDS", default_value_t = 600)]
        open_after: u64,
    },
    /// Prints the current head of the chain as a checkpoint (`seq hash`) to keep elsewhere.
    #[command(after_help = "Example:
  jgate audit checkpoint >> checkpoints.txt     (keep the file outside jgate's host)")]
    Checkpoint,
    /// After `verify` reported a problem with the sealed head (appends stop until then): accepts
    /// the log as it now stands, and records that you did.
    #[command(after_help = "Example:
  jgate audit reseal       (only after `jgate audit verify` reported the sealed head, and you checked why)")]
    Reseal,
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub cmd: Option<AuditCmd>,
    /// Only records of this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only records of this controller.
    #[arg(long)]
    pub controller: Option<String>,
    /// Only records of this operation (its tool name, e.g. trigger_build).
    #[arg(long)]
    pub operation: Option<String>,
    /// Only denied calls.
    #[arg(long, conflicts_with = "allowed")]
    pub denied: bool,
    /// Only allowed calls.
    #[arg(long)]
    pub allowed: bool,
    /// From this time: 2026-11-22, 2026-11-22T10:00:00Z, epoch milliseconds, or a duration ago (30m, 2h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Until this time (same forms).
    #[arg(long)]
    pub until: Option<String>,
    /// Only the newest N matching records (read from the end of the log, however long it is).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub last: Option<i64>,
    /// Keep printing new records as they are written.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Args)]
pub struct GrantArgs {
    /// The agent's name.
    pub agent: String,
    /// status, build, config, jobs, nodes or system.
    pub group: String,
    /// off, read or full.
    pub level: String,
    /// Only on this controller (default: all).
    #[arg(long)]
    pub controller: Option<String>,
    /// Only on jobs matching this glob over full names (e.g. release/**, api-*; not /release,
    /// job/release/job/x or a//b).
    #[arg(long)]
    pub jobs: Option<String>,
    /// A trigger parameter constraint: NAME=VALUE, NAME=A|B|C, or NAME=GLOB (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE|GLOB")]
    pub params: Vec<String>,
    /// Hold every change this grant allows until an administrator approves it (`jgate approve`);
    /// reads are never held. Level full only.
    #[arg(long)]
    pub approve: bool,
    /// At most N calls per hour may be allowed by this grant (e.g. 5 deploys an hour), counted
    /// across every jgate process on the database (docs/limits.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_per_hour: Option<u32>,
}

#[derive(Args)]
pub struct CallArgs {
    /// The operation: its tool name (get_job) or its CLI verb (job show); `jgate operations`
    /// lists them.
    #[arg(required = true, num_args = 1..=3)]
    pub operation: Vec<String>,
    /// The controller (as named in jgate); needed only when several are configured.
    #[arg(long)]
    pub controller: Option<String>,
    /// Arguments as JSON, e.g. '{"job":"team/api","build":"lastFailedBuild"}'.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// `pipeline replay` only: read the replacement Pipeline script from this file (`-`:
    /// standard input). A script is never taken as a command-line value.
    #[arg(long, value_name = "PATH")]
    pub script_file: Option<PathBuf>,
}

pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("JGATE_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("jgate");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/jgate"),
        None => PathBuf::from(".jgate"),
    }
}

/// The database URL `open` uses (for connections of its own, such as the event listener).
pub fn database_url(g: &Global) -> String {
    g.db.clone().unwrap_or_else(|| data_dir().join("jgate.db").display().to_string())
}

pub async fn open(g: &Global) -> anyhow::Result<Gate> {
    let db = match &g.db {
        Some(db) => {
            // A path the user typed: a missing directory is a mistake to report, not to create.
            Store::check_location(db)?;
            db.clone()
        }
        None => {
            let dir = data_dir();
            create_private_dir(&dir)?;
            dir.join("jgate.db").display().to_string()
        }
    };
    let store = Store::open(&db).await?;
    let key_file = g.key_file.clone().unwrap_or_else(|| data_dir().join("master.key"));
    refuse_missing_key_file(&store, &db, &key_file).await?;
    let (master, source) = MasterKey::load_or_create("JGATE_MASTER_KEY", &key_file)?;
    if let KeySource::Created(p) = source {
        eprintln!(
            "created a new master key at {} (back it up: without it stored tokens cannot be decrypted)",
            p.display()
        );
    }
    let device = g.audit_file.as_deref().map(AuditDevice::open).transpose()?;
    let limits = gate::Limits {
        max_in_flight_per_agent: g.max_calls_per_agent as usize,
        approval_wait: std::time::Duration::from_secs(g.approval_wait),
        approval_lifetime: std::time::Duration::from_secs(g.approval_expiry),
        approval_webhook: approval_webhook(g)?,
        ..gate::Limits::default()
    };
    Ok(Gate::open(store, master, device).await?.with_limits(limits))
}

/// The approval webhook, from JGATE_APPROVAL_WEBHOOK or --approval-webhook-file, checked by the
/// egress guard; none when neither is set.
fn approval_webhook(g: &Global) -> anyhow::Result<Option<gate::approvals::ApprovalWebhook>> {
    let url = match (&g.approval_webhook_file, std::env::var("JGATE_APPROVAL_WEBHOOK").ok()) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the approval webhook URL from {}", path.display()))?
            .trim()
            .to_string(),
        (None, Some(url)) => url.trim().to_string(),
        (None, None) => return Ok(None),
    };
    if url.is_empty() {
        return Ok(None);
    }
    let format: gate::approvals::WebhookFormat =
        g.approval_webhook_format.parse().map_err(|e: String| anyhow::anyhow!("--approval-webhook-format: {e}"))?;
    let allow = g
        .approval_webhook_allow_private
        .iter()
        .map(|e| e.parse().map_err(|err| anyhow::anyhow!("--approval-webhook-allow-private {e}: {err}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(gate::approvals::ApprovalWebhook::new(&url, format, allow)?))
}

/// Creates the data directory (mode 0700) if it does not exist; an existing one is left as it is.
fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// A store set up with a master key whose key file is gone (and no JGATE_MASTER_KEY) must not
/// get a new key: its tokens and audit keys are sealed under the old one. Say how to restore it.
async fn refuse_missing_key_file(store: &Store, db: &str, key_file: &std::path::Path) -> anyhow::Result<()> {
    if std::env::var_os("JGATE_MASTER_KEY").is_some() || std::fs::symlink_metadata(key_file).is_ok() {
        return Ok(());
    }
    let controllers = store.controllers().await?.len();
    if controllers == 0 && store.meta(META_KEY_CHECK).await?.is_none() {
        return Ok(()); // a new store: the key is created with it
    }
    let tokens = match controllers {
        0 => String::new(),
        n => format!(" and holds {n} controller token(s) encrypted with it"),
    };
    Err(CliError::new(
        Kind::Auth,
        format!(
            "the master key file {} is missing, but the database {} was set up with a master key{tokens}; jgate did not create a new key (it could not open what the old one sealed)",
            key_file.display(),
            gate::store::redact_url(db)
        ),
    )
    .fix(format!(
        "restore the key file from your backup to {} (mode 0600), or point --master-key-file (JGATE_MASTER_KEY_FILE) at it, or set JGATE_MASTER_KEY to the key",
        key_file.display()
    ))
    .into())
}

/// [`open`] for `jgate mcp`, whose standard output carries the MCP protocol: audit lines there
/// would corrupt it.
pub async fn open_stdio(g: &Global) -> anyhow::Result<Gate> {
    if g.audit_file.as_deref() == Some("-") {
        bail!("`jgate mcp` speaks MCP on standard output, so --audit-file - cannot be used with it: give a file path");
    }
    open(g).await
}

fn read_token(file: Option<&PathBuf>, env: Option<&str>) -> anyhow::Result<SecretString> {
    let raw = if let Some(f) = file {
        std::fs::read_to_string(f).with_context(|| format!("cannot read the token file {}", f.display()))?
    } else if let Some(var) = env {
        std::env::var(var)
            .with_context(|| format!("the environment variable {var} is not set (it should hold the API token)"))?
    } else if std::io::stdin().is_terminal() {
        // Typed or pasted at a terminal: not echoed.
        rpassword::prompt_password("Jenkins API token (input hidden): ")
            .context("cannot read the token from the terminal")?
    } else {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read the token from standard input")?;
        s
    };
    let t = raw.trim().to_string();
    if t.is_empty() {
        bail!("the token is empty: give it with --token-file FILE, --token-env VAR, or on standard input");
    }
    Ok(SecretString::from(t))
}

fn out(g: &Global, v: &Value, human: impl FnOnce()) {
    if g.json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        human();
    }
}

/// Prints rows as an aligned table.
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// Prints the table, or `empty` when there are no rows.
fn table_or(empty: &str, headers: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        println!("{empty}");
    } else {
        table(headers, rows);
    }
}

fn color_enabled() -> bool {
    term::color(term::Stream::Stdout)
}

pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z", rem / 3600, (rem / 60) % 60, rem % 60)
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `--since`/`--until`: a date, a UTC timestamp, epoch ms, or a duration ago.
pub fn parse_time(s: &str, now_ms: i64) -> anyhow::Result<i64> {
    let s = s.trim();
    let bad = || {
        anyhow::anyhow!(
            "cannot read the time '{s}': use 2026-11-22, 2026-11-22T10:00:00Z, epoch milliseconds, or a duration ago like 30m, 2h, 7d"
        )
    };
    if let Some(num) = s.strip_suffix(['s', 'm', 'h', 'd']) {
        let n: i64 = num.parse().map_err(|_| bad())?;
        let unit = match s.chars().last() {
            Some('s') => 1000,
            Some('m') => 60_000,
            Some('h') => 3_600_000,
            _ => 86_400_000,
        };
        return Ok(now_ms - n * unit);
    }
    if s.chars().all(|c| c.is_ascii_digit()) && s.len() > 8 {
        return s.parse().map_err(|_| bad());
    }
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00"));
    let dp: Vec<i64> = date.split('-').map(|p| p.parse::<i64>()).collect::<Result<_, _>>().map_err(|_| bad())?;
    let time = time.trim_end_matches('Z');
    let tp: Vec<i64> = time.split(':').map(|p| p.parse::<i64>()).collect::<Result<_, _>>().map_err(|_| bad())?;
    let (&[y, mo, d], [h, mi, rest @ ..]) = (dp.as_slice(), tp.as_slice()) else { return Err(bad()) };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || !(0..24).contains(h) || !(0..60).contains(mi) {
        return Err(bad());
    }
    let sec = rest.first().copied().unwrap_or(0);
    Ok((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec) * 1000)
}

pub async fn controller(g: &Global, cmd: ControllerCmd) -> anyhow::Result<()> {
    let gate = open(g).await?;
    let read_ca =
        |f: PathBuf| std::fs::read_to_string(&f).with_context(|| format!("cannot read the CA file {}", f.display()));
    match cmd {
        ControllerCmd::Add {
            name,
            url,
            username,
            token_file,
            token_env,
            password,
            allow_private,
            ca_file,
            system_ca,
            insecure_skip_tls_verify,
            timeout,
            force,
        } => {
            let token = read_token(token_file.as_ref(), token_env.as_deref())?;
            let ca_pem = ca_file.map(read_ca).transpose()?;
            if insecure_skip_tls_verify {
                eprintln!("warning: TLS verification is OFF for {name}: anyone on the network path can read its token");
            }
            let nc = NewController {
                name: name.clone(),
                url: url.clone(),
                username,
                token,
                password,
                allow_private,
                ca_pem,
                insecure: insecure_skip_tls_verify,
            };
            let settings = gate::ControllerSettings { timeout_secs: timeout, system_ca };
            let (row, report) =
                waiting(&url, timeout, gate.add_controller_with(&Admin::local_cli(), nc, settings, force))
                    .await
                    .map_err(|e| fix_names(e, &name, true))?;
            if let Some(r) = &report {
                keep_test(&gate, &name, &Ok(r.clone())).await;
            }
            let v = json!({"name": row.name, "url": row.base_url, "version": row.jenkins_version,
                "user": report.as_ref().map(|r| r.who_am_i.name.clone()), "plugins": row.plugins.len(),
                "quieting_down": report.as_ref().map(|r| r.quieting_down),
                "warnings": report.as_ref().map(|r| named(&r.warnings, &name)).unwrap_or_default()});
            out(g, &v, || {
                println!("added controller {} ({})", row.name, row.base_url);
                match &report {
                    Some(r) => print_report(r, &name),
                    None => println!("  stored without a passing connection test (--force)"),
                }
            });
        }
        ControllerCmd::Update {
            name,
            url,
            username,
            token_file,
            token_env,
            token_stdin,
            password,
            api_token,
            allow_private,
            no_allow_private,
            ca_file,
            no_ca_file,
            system_ca,
            no_system_ca,
            insecure_skip_tls_verify,
            verify_tls,
            timeout,
            force,
        } => {
            let token = if token_file.is_some() || token_env.is_some() || token_stdin {
                Some(read_token(token_file.as_ref(), token_env.as_deref())?)
            } else {
                None
            };
            let flag = |on: bool, off: bool| {
                if on {
                    Some(true)
                } else if off {
                    Some(false)
                } else {
                    None
                }
            };
            let change = gate::ControllerUpdate {
                url: url.clone(),
                username,
                token,
                password: flag(password, api_token),
                ca_pem: if no_ca_file { Some(None) } else { ca_file.map(read_ca).transpose()?.map(Some) },
                system_ca: flag(system_ca, no_system_ca),
                insecure: flag(insecure_skip_tls_verify, verify_tls),
                allow_private: if no_allow_private {
                    Some(Vec::new())
                } else if allow_private.is_empty() {
                    None
                } else {
                    Some(allow_private)
                },
                timeout_secs: timeout.map(|t| (t > 0).then_some(t)),
            };
            if insecure_skip_tls_verify {
                eprintln!("warning: TLS verification is OFF for {name}: anyone on the network path can read its token");
            }
            let stored = gate.store().controller(&name).await?;
            let shown = url.clone().or_else(|| stored.as_ref().map(|r| r.base_url.clone())).unwrap_or_default();
            let wait = match timeout {
                Some(0) => None,
                Some(t) => Some(t),
                None => stored.as_ref().and_then(|r| r.timeout_secs).and_then(|t| u64::try_from(t).ok()),
            };
            let (row, report) =
                waiting(&shown, wait, gate.update_controller(&Admin::local_cli(), &name, change, force))
                    .await
                    .map_err(|e| fix_names(e, &name, false))?;
            if let Some(r) = &report {
                keep_test(&gate, &name, &Ok(r.clone())).await;
            }
            let v = json!({"name": row.name, "url": row.base_url, "version": row.jenkins_version,
                "user": report.as_ref().map(|r| r.who_am_i.name.clone()),
                "warnings": report.as_ref().map(|r| named(&r.warnings, &name)).unwrap_or_default()});
            out(g, &v, || {
                println!("updated controller {} ({})", row.name, row.base_url);
                match &report {
                    Some(r) => print_report(r, &name),
                    None => println!("  stored without a passing connection test (--force)"),
                }
            });
        }
        ControllerCmd::Test { name, timeout } => {
            let stored = gate.store().controller(&name).await?;
            let stored_exists = stored.is_some();
            let shown = stored.as_ref().map(|r| r.base_url.clone()).unwrap_or_default();
            let wait = timeout.or_else(|| stored.and_then(|r| r.timeout_secs).and_then(|t| u64::try_from(t).ok()));
            let result = waiting(&shown, wait, gate.test_controller_with(&name, timeout)).await;
            if stored_exists {
                keep_test(&gate, &name, &result).await;
            }
            let r = result.map_err(|e| fix_names(e, &name, false))?;
            let v = json!({"name": name, "version": r.version, "user": r.who_am_i.name, "crumbs_required": r.crumbs_required,
                "pipeline_rest_api": r.capabilities.pipeline_rest_api, "plugins": r.capabilities.plugins.len(),
                "quieting_down": r.quieting_down, "warnings": named(&r.warnings, &name)});
            out(g, &v, || {
                println!("controller {name}: OK");
                print_report(&r, &name);
            });
        }
        ControllerCmd::Hook { name, rotate, stats, public_url } => {
            hook(g, &gate, &name, rotate, stats, &public_url).await?
        }
        ControllerCmd::List => {
            let rows = gate.store().controllers().await?;
            // Each controller's last connection test, wherever it ran (CLI or console).
            let checks = gate.last_checks().await?;
            let last =
                |name: &str| checks.get(name).map(|c| json!({"ok": c.ok, "time_ms": c.time_ms, "summary": c.summary}));
            let v = Value::Array(rows.iter().map(|c| json!({"name": c.name, "url": c.base_url, "username": c.username, "version": c.jenkins_version, "allow_private": c.allow_private, "timeout_secs": c.timeout_secs, "system_ca": c.system_ca, "ca_file": c.tls_ca_pem.is_some(), "tls_insecure": c.tls_insecure, "last_test": last(&c.name)})).collect());
            out(g, &v, || {
                table_or(
                    "no controllers (add one with `jgate controller add`)",
                    &["name", "url", "user", "version", "private access", "last test"],
                    &rows
                        .iter()
                        .map(|c| {
                            let tested = checks.get(&c.name).map_or_else(
                                || "never".to_string(),
                                |t| format!("{} {}", if t.ok { "OK" } else { "FAILED" }, format_time(t.time_ms)),
                            );
                            vec![
                                c.name.clone(),
                                c.base_url.clone(),
                                c.username.clone(),
                                c.jenkins_version.clone().unwrap_or_default(),
                                c.allow_private.join(","),
                                tested,
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            });
        }
        ControllerCmd::Remove { name, with_grants } => {
            let removal = gate.remove_controller_with(&Admin::local_cli(), &name, with_grants).await.map_err(|e| {
                match e {
                    // Grants still name the controller: it conflicts with what exists (exit 8), the
                    // gate's one refusal that points at --with-grants.
                    gate::GateError::Invalid(m) if !with_grants && m.contains("--with-grants") => {
                        anyhow::Error::new(CliError::new(Kind::Conflict, m))
                    }
                    e => e.into(),
                }
            })?;
            match removal {
                gate::ControllerRemoval::Missing => {
                    bail!("there is no controller '{name}' (`jgate controller list` shows them)")
                }
                gate::ControllerRemoval::Removed { grants } => {
                    out(g, &json!({"removed": name, "grants_removed": grants}), || {
                        if grants > 0 {
                            println!("removed controller {name} and its {grants} grant(s)");
                        } else {
                            println!("removed controller {name}");
                        }
                    })
                }
            }
        }
    }
    Ok(())
}

/// `jgate controller hook`: the secret and the Jenkins side's settings, or the counters.
async fn hook(g: &Global, gate: &Gate, name: &str, rotate: bool, stats: bool, public_url: &str) -> anyhow::Result<()> {
    if stats {
        let s = gate.hook_stats(name).await?;
        let counts = |c: &[gate::store::HookCount]| -> Value {
            c.iter().map(|h| (h.kind.clone(), json!({"count": h.count, "last_ms": h.last_ms}))).collect()
        };
        let v = json!({"controller": name, "configured_ms": s.configured_ms, "counts": counts(&s.counts),
            "unknown_or_unconfigured": counts(&s.unknown)});
        out(g, &v, || {
            match s.configured_ms {
                Some(_) => println!("controller {name}: hook set up"),
                None => println!("controller {name}: no hook (make one with `jgate controller hook {name}`)"),
            }
            for h in &s.counts {
                println!("  {:<16} {}", h.kind, h.count);
            }
            let unknown: i64 = s.unknown.iter().map(|h| h.count).sum();
            println!("  requests naming no controller with a hook (all controllers): {unknown}");
        });
        return Ok(());
    }
    let secret = gate.create_hook(&Admin::local_cli(), name, rotate).await?;
    let url = format!("{}/hooks/jenkins/{name}/{secret}", public_url.trim_end_matches('/'));
    out(
        g,
        &json!({"controller": name, "endpoint_url": url, "format": "JSON", "protocol": "HTTP", "event": "all"}),
        || {
            println!("hook secret for controller {name} made; it is shown only this once (rotate with --rotate).");
            println!("In Jenkins (Notification plugin), in each job to watch: Job Notifications → Add Endpoint, with");
            println!("  Format:   JSON");
            println!("  Protocol: HTTP");
            println!("  Event:    All Events");
            println!("  URL:      {url}");
            println!("(--public-url sets jgate's address as Jenkins reaches it; use HTTPS in front of jgate when");
            println!("the path with its secret crosses a network.)");
        },
    );
    Ok(())
}

/// The wire client's request timeout when none is configured (`jenkins::Limits::default`).
const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// Awaits a connection test, telling the operator on standard error what it waits for once it
/// takes longer than a few seconds (standard output stays machine-readable).
/// Keeps a connection test's result as the controller's last (`controller list` and the console
/// show it); failing to keep it only warns: the test itself has been reported.
async fn keep_test(gate: &Gate, name: &str, result: &Result<jenkins::ConnectionReport, gate::GateError>) {
    if let Err(e) = gate.keep_test_result(name, result).await {
        tracing::warn!(error = %e, "could not keep the connection test's result");
    }
}

async fn waiting<T>(url: &str, timeout: Option<u64>, fut: impl std::future::Future<Output = T>) -> T {
    const AFTER: std::time::Duration = std::time::Duration::from_secs(3);
    tokio::pin!(fut);
    tokio::select! {
        r = &mut fut => return r,
        _ = tokio::time::sleep(AFTER) => {}
    }
    let t = timeout.unwrap_or(DEFAULT_TIMEOUT_SECS);
    eprintln!("waiting for {url} to answer (up to {t} s per request; --timeout SECONDS changes it)...");
    fut.await
}

/// The connection test's report, for people.
fn print_report(r: &jenkins::ConnectionReport, name: &str) {
    let plugins = if r.capabilities.plugins_visible {
        format!("{} plugins detected", r.capabilities.plugins.len())
    } else {
        "plugins not visible to this user".to_string()
    };
    println!(
        "  Jenkins {} — connected as {} — {plugins}{}",
        r.version.as_deref().unwrap_or("?"),
        r.who_am_i.name,
        if r.crumbs_required { " — password auth: CSRF crumbs will be used" } else { "" }
    );
    if r.capabilities.plugins_visible {
        let cap = |b: Option<bool>| if b == Some(true) { "yes" } else { "no" };
        println!(
            "  Pipeline REST API: {}; Notification plugin: {}",
            cap(r.capabilities.pipeline_rest_api),
            cap(r.capabilities.notification)
        );
    }
    for w in named(&r.warnings, name) {
        println!("  warning: {w}");
    }
}

/// Texts with the `NAME` placeholder of the wire client's fixes replaced by the controller's name.
fn named(texts: &[String], name: &str) -> Vec<String> {
    texts.iter().map(|t| t.replace("controller update NAME ", &format!("controller update {name} "))).collect()
}

/// An error whose fix names `jgate controller update NAME ...`: with this controller's name, and
/// for a controller not stored yet (`adding`) as the `add` command to run again.
pub(crate) fn fix_names(e: gate::GateError, name: &str, adding: bool) -> anyhow::Error {
    let text = e.to_string();
    let fixed = if adding {
        text.replace("jgate controller update NAME ", &format!("jgate controller add {name} ... "))
    } else {
        named(std::slice::from_ref(&text), name).pop().unwrap_or_default()
    };
    if fixed == text {
        return e.into();
    }
    // The rewritten text keeps the error's kind (and so its exit code).
    let kind = crate::cli_error::classify(&anyhow::Error::new(e)).kind;
    CliError::new(kind, fixed).into()
}

pub async fn agent(g: &Global, cmd: AgentCmd) -> anyhow::Result<()> {
    let gate = open(g).await?;
    let admin = Admin::local_cli();
    match cmd {
        AgentCmd::Create { name, description, expires, expires_days } => {
            let expires_ms = key_expiry(expires.as_deref(), expires_days)?;
            let (agent, key) = gate.create_agent(&admin, &name, &description, expires_ms).await?;
            let secret = gate::gate::expose(&key.secret).to_string();
            out(
                g,
                &json!({"agent": agent.name, "key_id": key.key_id, "key": secret, "expires_ms": expires_ms}),
                || {
                    println!("created agent {}", agent.name);
                    println!("key (shown once, store it now): {secret}");
                    println!("key id: {}{}", key.key_id, expiry_note(expires_ms));
                    println!(
                        "It has no grants yet: everything is denied until you run `jgate grant {} ...`.",
                        agent.name
                    );
                },
            );
        }
        AgentCmd::Key { action: Some(KeyAction::Rotate { name, overlap, key, expires }), .. } => {
            let overlap_ms = overlap.as_deref().map(|o| parse_duration_ms(o, "--overlap")).transpose()?.unwrap_or(0);
            let expires_ms = key_expiry(expires.as_deref(), None)?;
            let r = gate.rotate_agent_key(&admin, &name, key.as_deref(), overlap_ms, expires_ms).await?;
            let secret = gate::gate::expose(&r.key.secret).to_string();
            let v = json!({"agent": name, "key_id": r.key.key_id, "key": secret, "expires_ms": expires_ms,
                "retired": r.retired, "retired_at_ms": r.revoke_at_ms});
            out(g, &v, || {
                println!("new key for {name} (shown once, store it now): {secret}");
                println!("key id: {}{}", r.key.key_id, expiry_note(expires_ms));
                match (r.retired.is_empty(), overlap_ms) {
                    (true, _) => println!("{name} had no valid key to retire"),
                    (false, 0) => println!("revoked: {}", r.retired.join(", ")),
                    (false, _) => println!(
                        "still valid until {} (then revoked): {}",
                        format_time(r.revoke_at_ms),
                        r.retired.join(", ")
                    ),
                }
            });
        }
        AgentCmd::Key { action: None, name, expires, expires_days } => {
            let name = name.context("name the agent: `jgate agent key NAME`")?;
            let expires_ms = key_expiry(expires.as_deref(), expires_days)?;
            let key = gate.new_key(&admin, &name, expires_ms).await?;
            let secret = gate::gate::expose(&key.secret).to_string();
            out(g, &json!({"agent": name, "key_id": key.key_id, "key": secret, "expires_ms": expires_ms}), || {
                println!("new key for {name} (shown once): {secret}");
                println!("key id: {}{}", key.key_id, expiry_note(expires_ms));
            });
        }
        AgentCmd::List => {
            let agents = gate.agents().await?;
            let limits = gate.all_agent_limits().await?;
            let limits_of = |name: &str| limits.get(name).copied().unwrap_or_default();
            let now = gate::store::now_ms();
            let v = Value::Array(
                agents
                    .iter()
                    .map(|(a, ks)| {
                        json!({"name": a.name, "description": a.description, "disabled": a.disabled_ms.is_some(),
                        "disabled_ms": a.disabled_ms, "limits": limits_of(&a.name),
                        "keys": ks.iter().map(|k| json!({"key_id": k.key_id, "state": key_state(k, now), "active": k.active_at(now),
                            "revoked": k.revoked_ms.is_some_and(|r| r <= now), "revoked_ms": k.revoked_ms,
                            "expires_ms": k.expires_ms, "last_used_ms": k.last_used_ms})).collect::<Vec<_>>()})
                    })
                    .collect(),
            );
            out(g, &v, || {
                let mut rows: Vec<Vec<String>> = Vec::new();
                for (a, ks) in &agents {
                    let status = if a.disabled_ms.is_some() { "DISABLED" } else { "enabled" };
                    let l = limits_of(&a.name);
                    let shown = if l.is_none() { "-".to_string() } else { short_limits(&l) };
                    let mut first = vec![a.name.clone(), status.to_string(), shown];
                    if ks.is_empty() {
                        first.extend(["-".into(), "no key".into(), String::new(), a.description.clone()]);
                        rows.push(first);
                        continue;
                    }
                    for (i, k) in ks.iter().enumerate() {
                        let used = k.last_used_ms.map(format_time).unwrap_or_else(|| "never".into());
                        let desc = if i == 0 { a.description.clone() } else { String::new() };
                        let lead =
                            if i == 0 { first.clone() } else { vec![String::new(), String::new(), String::new()] };
                        let mut row = lead;
                        row.extend([k.key_id.clone(), key_state(k, now), used, desc]);
                        rows.push(row);
                    }
                }
                table_or(
                    "no agents (create one with `jgate agent create`)",
                    &["agent", "status", "limits", "key", "key state", "last used", "description"],
                    &rows,
                );
            });
        }
        AgentCmd::Revoke { name, key } => {
            let n = gate.revoke(&admin, &name, key.as_deref()).await?;
            if n == 0 {
                bail!(
                    "nothing to revoke: {name} has no active key{}",
                    key.map(|k| format!(" with id {k}")).unwrap_or_default()
                );
            }
            out(g, &json!({"agent": name, "revoked": n}), || println!("revoked {n} key(s) of {name}"));
        }
        AgentCmd::Disable { name } => {
            let changed = gate.disable_agent(&admin, &name).await?;
            out(g, &json!({"agent": name, "disabled": true, "changed": changed}), || {
                if changed {
                    println!(
                        "disabled {name}: its keys and calls are refused (within a second everywhere); its grants are kept"
                    );
                } else {
                    println!("{name} was already disabled");
                }
            });
        }
        AgentCmd::Enable { name } => {
            let changed = gate.enable_agent(&admin, &name).await?;
            out(g, &json!({"agent": name, "disabled": false, "changed": changed}), || {
                if changed {
                    println!("enabled {name}");
                } else {
                    println!("{name} was not disabled");
                }
            });
        }
        AgentCmd::Limits { name, calls_per_minute, triggers_per_hour, clear } => {
            let before = gate.agent_limits(&name).await?;
            let setting = clear || calls_per_minute.is_some() || triggers_per_hour.is_some();
            let limits = if setting {
                let base = if clear { gate::limits::AgentLimits::default() } else { before };
                gate::limits::AgentLimits {
                    calls_per_minute: calls_per_minute.or(base.calls_per_minute),
                    triggers_per_hour: triggers_per_hour.or(base.triggers_per_hour),
                }
            } else {
                before
            };
            let changed = setting && gate.set_agent_limits(&admin, &name, limits).await?;
            let (calls_used, triggers_used) = gate.limits_used(&name).await?;
            let v = json!({"agent": name, "limits": limits, "changed": changed,
                "used": {"calls_this_minute": calls_used, "triggers_this_hour": triggers_used}});
            out(g, &v, || {
                match (setting, changed) {
                    (true, true) => println!(
                        "{name}'s limits are now: {} (every jgate process applies them within a second)",
                        limits.describe()
                    ),
                    (true, false) => println!("{name}'s limits were already: {}", limits.describe()),
                    (false, _) => println!("{name}'s limits: {}", limits.describe()),
                }
                if let Some(n) = limits.calls_per_minute {
                    println!(
                        "  calls this minute: {calls_used} of {n} counted (processes count calls in small leases)"
                    );
                }
                if let Some(n) = limits.triggers_per_hour {
                    println!("  triggers this hour: {triggers_used} of {n}");
                }
                if limits.is_none() {
                    println!(
                        "  (recommended for an automated agent: --calls-per-minute 120 --triggers-per-hour 20; docs/limits.md)"
                    );
                }
            });
        }
        AgentCmd::Delete { name, with_grants } => {
            let gone = gate.delete_agent(&admin, &name, with_grants).await?;
            let (keys, grants) = match &gone {
                gate::store::AgentDeletion::Deleted { keys_revoked, grants_removed } => {
                    (keys_revoked.clone(), grants_removed.iter().map(|g| g.id).collect::<Vec<_>>())
                }
                _ => (Vec::new(), Vec::new()),
            };
            out(g, &json!({"deleted": name, "keys_revoked": keys, "grants_removed": grants}), || {
                println!("deleted agent {name}: {} key(s) revoked, {} grant(s) removed", keys.len(), grants.len());
            });
        }
    }
    Ok(())
}

pub async fn grant(g: &Global, a: GrantArgs) -> anyhow::Result<()> {
    let gate = open(g).await?;
    let group = Group::parse(&a.group).with_context(|| {
        format!(
            "unknown group '{}': use one of {}",
            a.group,
            Group::ALL.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")
        )
    })?;
    let level: gate::policy::Level = a.level.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let params = a
        .params
        .iter()
        .map(|p| p.parse::<ParamConstraint>().map_err(|e| anyhow::anyhow!("--param {p}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let gr = gate
        .grant_limited(
            &Admin::local_cli(),
            &a.agent,
            group,
            level,
            a.controller.as_deref(),
            a.jobs.as_deref(),
            params,
            a.approve,
            a.max_per_hour,
        )
        .await?;
    out(g, &serde_json::to_value(&gr).unwrap_or(Value::Null), || {
        println!("grant {}: {} — {}", gr.id, gr.agent, gr.describe())
    });
    Ok(())
}

pub async fn grants(g: &Global, agent: &str) -> anyhow::Result<()> {
    let gate = open(g).await?;
    let list = gate.grants(agent).await?;
    out(g, &serde_json::to_value(&list).unwrap_or(Value::Null), || {
        table_or(
            &format!("no grants: every call of {agent} is denied (add one with `jgate grant`)"),
            &["id", "controller", "grant"],
            &list
                .iter()
                .map(|gr| vec![gr.id.to_string(), gr.controller.clone().unwrap_or_else(|| "all".into()), gr.describe()])
                .collect::<Vec<_>>(),
        );
    });
    Ok(())
}

/// "120/min, 10 triggers/h": an agent's limits in a table cell.
fn short_limits(l: &gate::limits::AgentLimits) -> String {
    let mut parts = Vec::new();
    if let Some(n) = l.calls_per_minute {
        parts.push(format!("{n}/min"));
    }
    if let Some(n) = l.triggers_per_hour {
        parts.push(format!("{n} triggers/h"));
    }
    parts.join(", ")
}

/// `jgate approvals [--all]`: what waits for a decision, with exactly what would run.
pub async fn approvals(g: &Global, all: bool) -> anyhow::Result<()> {
    let gate = open(g).await?;
    let list = gate.approvals(all).await?;
    out(g, &serde_json::to_value(&list).unwrap_or(Value::Null), || {
        let empty = if all { "no approvals yet" } else { "nothing waits for approval (`--all` shows decided ones)" };
        table_or(
            empty,
            &["id", "status", "asked", "expires", "what would run", "decision"],
            &list
                .iter()
                .map(|a| {
                    let decision = match (&a.decided_by, &a.reason) {
                        (Some(by), Some(r)) => format!("{by}: {r}"),
                        (Some(by), None) => by.clone(),
                        _ => String::new(),
                    };
                    vec![
                        a.id.clone(),
                        a.status.as_str().to_string(),
                        format_time(a.created_ms),
                        format_time(a.expires_ms),
                        a.summary.clone(),
                        decision,
                    ]
                })
                .collect::<Vec<_>>(),
        );
    });
    Ok(())
}

/// `jgate approve ID [--reason]` / `jgate deny ID --reason`.
pub async fn decide_approval(g: &Global, id: &str, approve: bool, reason: Option<&str>) -> anyhow::Result<()> {
    let gate = open(g).await?;
    let a = if approve {
        gate.approve(&Admin::local_cli(), id, reason).await?
    } else {
        gate.deny(&Admin::local_cli(), id, reason.unwrap_or_default()).await?
    };
    out(g, &serde_json::to_value(&a).unwrap_or(Value::Null), || {
        if approve {
            println!(
                "approved {}: {} (the call goes on; if it stopped waiting, it runs when the agent sends it again)",
                a.id, a.summary
            );
        } else {
            println!("denied {}: {} (the agent is told the reason)", a.id, a.summary);
        }
    });
    Ok(())
}

pub async fn ungrant(g: &Global, id: i64) -> anyhow::Result<()> {
    let gate = open(g).await?;
    if !gate.remove_grant(&Admin::local_cli(), id).await? {
        bail!("there is no grant {id} (`jgate grants AGENT` lists them with their ids)");
    }
    out(g, &json!({"removed": id}), || println!("removed grant {id}"));
    Ok(())
}

/// A duration as the CLI takes it: `90d`, `12h`, `30m`, `45s`, `2w` — in milliseconds.
pub fn parse_duration_ms(s: &str, flag: &str) -> anyhow::Result<i64> {
    let t = s.trim();
    let bad = || anyhow::anyhow!("{flag} {s}: write a number and a unit, e.g. 90d, 12h, 30m, 45s or 2w");
    let unit = t.chars().last().ok_or_else(bad)?;
    let ms: i64 = match unit {
        's' => 1000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    let n: i64 = t[..t.len() - 1].parse().map_err(|_| bad())?;
    // Up to 100 years: anything longer is a typo, and the product must not overflow.
    if !(0..=100 * 366 * 86_400_000 / ms).contains(&n) {
        return Err(bad());
    }
    Ok(n * ms)
}

/// When a new key expires, from `--expires DURATION` (or the older `--expires-days N`).
fn key_expiry(expires: Option<&str>, days: Option<u32>) -> anyhow::Result<Option<i64>> {
    let now = gate::store::now_ms();
    let after = match (expires, days) {
        (Some(e), _) => Some(parse_duration_ms(e, "--expires")?),
        (None, Some(d)) => Some(i64::from(d) * 86_400_000),
        (None, None) => None,
    };
    match after {
        Some(0) => bail!("--expires must be longer than 0"),
        Some(ms) => Ok(Some(now + ms)),
        None => Ok(None),
    }
}

fn expiry_note(expires_ms: Option<i64>) -> String {
    expires_ms.map(|e| format!(" (expires {})", format_time(e))).unwrap_or_default()
}

/// How a key stands at `now`, for `agent list`.
fn key_state(k: &gate::store::KeyRow, now: i64) -> String {
    match (k.revoked_ms, k.expires_ms) {
        (Some(r), _) if r <= now => format!("revoked {}", format_time(r)),
        (_, Some(e)) if e <= now => format!("EXPIRED {}", format_time(e)),
        (Some(r), Some(e)) if e < r => format!("valid, expires {}", format_time(e)),
        (Some(r), _) => format!("valid until {} (rotated)", format_time(r)),
        (None, Some(e)) => format!("valid, expires {}", format_time(e)),
        (None, None) => "valid, no expiry".into(),
    }
}

/// `jgate access AGENT`: what the agent may do, as a matrix of groups × controllers (Off, Read,
/// Full, with job patterns), and with `--job`, which grant decides for that job in each group and
/// why — all from `gate::policy` (`access_matrix`, `explain_job`), so it agrees with the policy.
pub async fn access(g: &Global, a: AccessArgs) -> anyhow::Result<()> {
    use gate::policy::{self, Level};
    let gate = open(g).await?;
    let row = gate
        .store()
        .agent(&a.agent)
        .await?
        .with_context(|| format!("there is no agent '{}' (`jgate agent list` shows the agents)", a.agent))?;
    let grants = gate.grants(&a.agent).await?;
    let now = gate::store::now_ms();
    let valid_keys = gate.store().keys_of(row.id).await?.iter().filter(|k| k.active_at(now)).count();
    let mut controllers: Vec<String> = gate.store().controllers().await?.into_iter().map(|c| c.name).collect();
    for gr in &grants {
        if let Some(c) = &gr.controller
            && !controllers.contains(c)
        {
            // A grant for a controller since removed still exists: show it.
            controllers.push(c.clone());
        }
    }
    if let Some(c) = &a.controller {
        controllers = vec![c.clone()];
    }
    if controllers.is_empty() {
        bail!("no controller is configured: add one with `jgate controller add`, or name one with --controller");
    }
    let cells = policy::access_matrix(&grants, &a.agent, &controllers);
    let job = match a.job.as_deref() {
        Some(j) => Some(policy::normalize_job_path(j).map_err(|e| anyhow::anyhow!("--job {j}: {e}"))?),
        None => None,
    };
    let per_job: Vec<policy::JobAccess> = job
        .iter()
        .flat_map(|j| controllers.iter().flat_map(|c| policy::explain_job(&grants, &a.agent, c, j)))
        .collect();
    let limits = gate.agent_limits(&a.agent).await?;
    let capped: Vec<Value> =
        grants.iter().filter_map(|gr| gr.max_per_hour.map(|n| json!({"grant": gr.id, "max_per_hour": n}))).collect();
    let v = json!({"agent": a.agent, "disabled": row.disabled_ms.is_some(), "valid_keys": valid_keys,
        "limits": limits, "grant_limits": capped,
        "controllers": controllers, "matrix": cells, "job": job, "explanations": per_job});
    out(g, &v, || {
        let state = if row.disabled_ms.is_some() {
            "DISABLED: every call is refused whatever the grants".to_string()
        } else {
            format!("enabled, {valid_keys} valid key(s)")
        };
        println!("agent {} ({state})", a.agent);
        println!("rate limits: {}", limits.describe());
        for (id, n) in grants.iter().filter_map(|gr| gr.max_per_hour.map(|n| (gr.id, n))) {
            println!("  grant {id} allows at most {} per hour", gate::limits::count(n, "call"));
        }
        let mut headers: Vec<&str> = vec!["group"];
        headers.extend(controllers.iter().map(String::as_str));
        let rows: Vec<Vec<String>> = Group::ALL
            .iter()
            .map(|grp| {
                let mut r = vec![grp.as_str().to_string()];
                r.extend(controllers.iter().map(|c| {
                    cells
                        .iter()
                        .find(|x| x.group == *grp && &x.controller == c)
                        .map(|x| x.summary())
                        .unwrap_or_default()
                }));
                r
            })
            .collect();
        table(&headers, &rows);
        println!(
            "(queue, views, nodes and system information cover the whole controller: they follow \"other jobs\", the grants on all jobs)"
        );
        if let Some(j) = &job {
            for c in &controllers {
                println!("\njob {j} on {c}:");
                for ja in per_job.iter().filter(|x| &x.controller == c) {
                    let verdict = |e: &Option<policy::Explanation>| match e {
                        None => "n/a".to_string(),
                        Some(e) if e.decision.allowed && e.decision.approval => "allowed with approval".to_string(),
                        Some(e) if e.decision.allowed => "allowed".to_string(),
                        Some(_) => "denied".to_string(),
                    };
                    println!("  {:<7} reads {}, changes {}", ja.group.as_str(), verdict(&ja.read), verdict(&ja.write));
                    let Some(e) = ja.read.as_ref().or(ja.write.as_ref()) else { continue };
                    if e.considered.is_empty() {
                        println!("          no grant of this group applies on {c}: denied");
                    }
                    for k in &e.considered {
                        let mark = if k.decides { "→" } else { " " };
                        println!("        {mark} grant {} ({}) {}", k.grant.id, k.grant.describe(), k.why);
                    }
                    if let Some(w) = ja.write.as_ref().and_then(|w| w.decision.grant)
                        && let Some(gr) =
                            grants.iter().find(|x| x.id == w && !x.params.is_empty() && x.level == Level::Full)
                    {
                        println!(
                            "          trigger_build also needs: {}",
                            gr.params.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
                        );
                    }
                }
            }
        }
    });
    Ok(())
}

/// The mark column: how the call ended, so a failure never shows as "ok".
pub(crate) fn mark(r: &gate::audit::Record) -> &'static str {
    if !r.entry.allowed {
        return "DENIED";
    }
    if r.entry.phase == Phase::Intent {
        return "intent";
    }
    let outcome = r.entry.outcome.as_deref().unwrap_or("ok").trim().to_ascii_lowercase();
    let word = outcome.split(':').next().unwrap_or("").trim();
    match word {
        "" | "ok" | "replayed" => "ok",
        "cancelled" | "canceled" => "cancelled",
        _ => "FAILED",
    }
}

fn print_record(r: &gate::audit::Record, color: bool) {
    let mark = match (mark(r), color) {
        ("DENIED", true) => "\x1b[31mDENIED\x1b[0m",
        ("FAILED", true) => "\x1b[31mFAILED\x1b[0m",
        (m, _) => m,
    };
    println!("#{:<6} {} {:<9} {}", r.seq, format_time(r.entry.time_ms), mark, r.sentence);
}

pub async fn audit(g: &Global, a: AuditArgs) -> anyhow::Result<()> {
    let gate = open(g).await?;
    let now = gate::store::now_ms();
    match a.cmd {
        Some(AuditCmd::Verify { checkpoints, file, open_after }) => {
            let cps = match checkpoints {
                Some(f) => parse_checkpoints(
                    &std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?,
                )?,
                None => Vec::new(),
            };
            let against = if cps.is_empty() { "" } else { " against the checkpoints" };
            let result = match &file {
                Some(path) => gate.verify_audit_file(&cps, path).await?.map(|(n, report)| (n, Some(report))),
                None => gate.verify_audit(&cps).await?.map(|n| (n, None)),
            };
            match result {
                Ok((n, None)) => out(g, &json!({"ok": true, "records": n}), || {
                    println!("audit chain OK: {n} records verified{against}")
                }),
                Ok((n, Some(report))) => {
                    let v = json!({"ok": true, "records": n, "file_records": report.file_records,
                        "missing_from_file": report.missing_from_file});
                    out(g, &v, || {
                        println!(
                            "audit chain OK: {n} records verified{against}; the audit file's {} records match the database{}",
                            report.file_records,
                            if report.missing_from_file > 0 {
                                format!(
                                    " ({} database records are not in the file: written while the file was not in use)",
                                    report.missing_from_file
                                )
                            } else {
                                String::new()
                            }
                        )
                    })
                }
                Err(e) => {
                    out(g, &json!({"ok": false, "error": e.to_string()}), || println!("audit chain BROKEN: {e}"));
                    std::process::exit(i32::from(Kind::AuditBroken.exit_code()));
                }
            }
            // Intents without outcomes: the chain is intact, but a write's result is not on record.
            let open = gate.open_writes(std::time::Duration::from_secs(open_after)).await?;
            if !open.is_empty() {
                let list: Vec<Value> = open
                    .iter()
                    .map(|w| {
                        json!({"request_id": w.request_id, "operation": w.operation, "controller": w.controller,
                        "target": w.target, "queue_id": w.queue_id, "started_ms": w.started_ms})
                    })
                    .collect();
                out(g, &json!({"ok": false, "open_writes": list}), || {
                    println!(
                        "{} write(s) have had an intent without an outcome for more than {open_after} s (run `jgate serve`, which reconciles them with Jenkins):",
                        open.len()
                    );
                    for w in &open {
                        println!(
                            "  {} {} {} on {}{}",
                            w.request_id,
                            w.operation,
                            w.target.as_deref().unwrap_or(""),
                            w.controller,
                            w.queue_id.map(|q| format!(" (queue item {q})")).unwrap_or_default()
                        );
                    }
                });
                std::process::exit(1);
            }
            return Ok(());
        }
        Some(AuditCmd::Reseal) => {
            let head = gate.reseal_audit_head(&Admin::local_cli()).await?;
            out(g, &json!({"seq": head.seq, "hash": head.hash}), || {
                println!("sealed the audit head at record {} (recorded in the log)", head.seq)
            });
            return Ok(());
        }
        Some(AuditCmd::Checkpoint) => {
            match gate.checkpoint().await? {
                Some(c) => out(g, &json!({"seq": c.seq, "hash": c.hash}), || println!("{} {}", c.seq, c.hash)),
                None => bail!("the audit log is empty: there is nothing to checkpoint yet"),
            }
            return Ok(());
        }
        None => {}
    }
    let mut filter = AuditFilter {
        agent: a.agent,
        controller: a.controller,
        operation: a.operation,
        allowed: if a.denied {
            Some(false)
        } else if a.allowed {
            Some(true)
        } else {
            None
        },
        since_ms: a.since.as_deref().map(|s| parse_time(s, now)).transpose()?,
        until_ms: a.until.as_deref().map(|s| parse_time(s, now)).transpose()?,
        ..AuditFilter::default()
    };
    let color = color_enabled() && !g.json;
    let mut first = true;
    loop {
        let records = match a.last.filter(|_| first) {
            // The newest N, printed oldest first like the rest.
            Some(n) => {
                let mut newest = gate.audit_newest(&AuditFilter { limit: Some(n), ..filter.clone() }, None).await?;
                newest.reverse();
                newest
            }
            None => gate.audit(&filter).await?,
        };
        if first && records.is_empty() && !g.json {
            if a.follow {
                eprintln!("no audit records match yet; waiting for new ones (Ctrl-C stops)");
            } else {
                println!("no audit records match");
            }
        }
        first = false;
        for r in &records {
            if g.json {
                println!("{}", gate::audit::to_json_line(r));
            } else {
                print_record(r, color);
            }
        }
        term::flush_stdout();
        if !a.follow {
            return Ok(());
        }
        if let Some(last) = records.last() {
            filter.after_seq = Some(last.seq);
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn parse_checkpoints(text: &str) -> anyhow::Result<Vec<Checkpoint>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut parts = line.split_whitespace();
        let (Some(seq), Some(hash)) = (parts.next(), parts.next()) else {
            bail!("checkpoint line {}: expected `SEQ HASH` as printed by `jgate audit checkpoint`", i + 1);
        };
        out.push(Checkpoint {
            seq: seq.parse().with_context(|| format!("checkpoint line {}: '{seq}' is not a number", i + 1))?,
            hash: hash.to_string(),
        });
    }
    Ok(out)
}

/// `jgate key rotate`: re-wraps every stored token and audit key with a new master key, starts a
/// new audit key version, and replaces the key file.
///
/// The new key is written (and flushed) beside the key file before the store changes, and moved
/// over it only after the store committed: a failure at any point leaves a key that opens the store.
pub async fn rotate_key(g: &Global) -> anyhow::Result<()> {
    if std::env::var_os("JGATE_MASTER_KEY").is_some() {
        bail!(
            "the master key comes from JGATE_MASTER_KEY, which jgate cannot replace: keep the key in a file instead (write it to the key file, unset JGATE_MASTER_KEY) and run `jgate key rotate` again"
        );
    }
    let gate = open(g).await?;
    let key_file = g.key_file.clone().unwrap_or_else(|| data_dir().join("master.key"));
    let new = MasterKey::generate();
    let tmp = key_file.with_extension("new");
    write_key_file(&tmp, &new).with_context(|| format!("cannot write the new key to {}", tmp.display()))?;
    let n = match gate.rotate_master_key(&Admin::local_cli(), &new).await {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    };
    std::fs::rename(&tmp, &key_file).with_context(|| {
        format!(
            "the store now uses the new key, but {} could not replace {}: move it there by hand (it holds the new key)",
            tmp.display(),
            key_file.display()
        )
    })?;
    out(g, &json!({"rewrapped": n, "key_id": new.id()}), || {
        println!(
            "rotated the master key (new id {}): re-wrapped {n} controller token(s) and the audit keys; new audit records use a new audit key",
            new.id()
        )
    });
    Ok(())
}

/// Writes a key file created with mode 0600 and flushed to disk.
fn write_key_file(path: &std::path::Path, key: &MasterKey) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    #[cfg(unix)]
    {
        // A leftover file from an interrupted rotation may have other permissions.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(gate::gate::expose(&key.to_base64()).as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// `jgate operations`: the catalog as a table.
pub fn operations(g: &Global) {
    let v = Value::Array(catalog::OPERATIONS.iter().map(|o| json!({"name": o.name, "cli": o.cli, "group": o.group.as_str(), "access": format!("{:?}", o.access).to_lowercase(), "target": format!("{:?}", o.target).to_lowercase(), "grouped": o.grouped, "description": o.description})).collect());
    out(g, &v, || {
        table(
            &["operation", "cli verb", "group", "access", "description"],
            &catalog::OPERATIONS
                .iter()
                .map(|o| {
                    vec![
                        o.name.to_string(),
                        o.cli.to_string(),
                        o.group.as_str().to_string(),
                        format!("{:?}", o.access).to_lowercase(),
                        o.description.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        );
    });
}

/// `jgate call`: the CLI surface. The agent key comes from JGATE_AGENT_KEY. `whoami` is callable
/// as on MCP; the controller may be left out when exactly one is configured. A call that runs
/// longer than a moment shows a spinner (with the operation's progress) on a terminal; Ctrl-C
/// cancels the call (audited as cancelled).
pub async fn call(g: &Global, a: CallArgs) -> anyhow::Result<()> {
    let key = std::env::var("JGATE_AGENT_KEY").map_err(|_| {
        CliError::new(Kind::Auth, "JGATE_AGENT_KEY is not set")
            .fix("set JGATE_AGENT_KEY to the agent's key (keys are never passed as arguments)")
    })?;
    let words = a.operation.join(" ");
    let whoami = words.trim() == "whoami";
    let op = if whoami { None } else { Some(operation_named(&words)?) };
    let mut args: Value =
        serde_json::from_str(&a.args).with_context(|| format!("--args is not valid JSON: {}", a.args))?;
    if let Some(op) = op {
        replay_script(op.name, &mut args, a.script_file.as_deref())?;
    }
    let gate = open(g).await?;
    let (agent, key_id) = gate.authenticate(&key).await?;
    let caller = Caller {
        agent,
        key_id: Some(key_id),
        surface: Surface::Cli,
        client_addr: None,
        request_id: format!("cli-{}", std::process::id()),
    };
    let Some(op) = op else {
        let me = gate.whoami(&caller).await?;
        println!("{}", serde_json::to_string_pretty(&me).unwrap_or_default());
        return Ok(());
    };
    let controller = match (&a.controller, args.get("controller")) {
        (None, None | Some(Value::Null)) => Some(only_controller(&gate).await?),
        (c, _) => c.clone(),
    };
    let (tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let cancel = tokio_util::sync::CancellationToken::new();
    let opts = gate::CallOptions { progress: Some(tx), cancel: Some(cancel.clone()), also_cancel: None };
    let running = gate.call_with(&caller, controller.as_deref(), op.name, args, opts);
    tokio::pin!(running);
    let mut spinner = term::Spinner::new(format!("{} …", op.name));
    let delay = tokio::time::sleep(term::SPINNER_DELAY);
    tokio::pin!(delay);
    let (mut shown, mut interrupted) = (false, false);
    let result = loop {
        tokio::select! {
            r = &mut running => break r,
            () = &mut delay, if !shown => {
                shown = true;
                spinner.show();
            }
            Some((_, _, text)) = progress.recv() => {
                spinner.message(format!("{}: {}", op.name, text.replace(['\n', '\r'], " ")));
            }
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                cancel.cancel();
                spinner.message(format!("{}: cancelling …", op.name));
            }
        }
    };
    spinner.finish();
    // The answer passed the sanitizer in the gate; pretty-printed for a person at a terminal,
    // compact (one line) for a pipe or a file.
    let answer = result?.into_inner();
    let shown = if std::io::stdout().is_terminal() {
        serde_json::to_string_pretty(&answer)
    } else {
        serde_json::to_string(&answer)
    };
    println!("{}", shown.unwrap_or_default());
    Ok(())
}

/// `pipeline replay`'s script: from `--script-file` (a path, or `-` for standard input), never
/// from `--args`, where it would sit in the process list and the shell's history.
fn replay_script(op: &str, args: &mut Value, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let usage = "give the script with --script-file PATH (or --script-file - to read standard input)";
    match (op == "replay", file) {
        (false, None) => Ok(()),
        (false, Some(_)) => Err(CliError::new(Kind::Invalid, "--script-file is taken only by `pipeline replay`")
            .fix("leave --script-file out")
            .into()),
        (true, _) if args.get("script").is_some() => {
            Err(CliError::new(Kind::Invalid, "`pipeline replay` does not take the script in --args").fix(usage).into())
        }
        (true, None) => {
            Err(CliError::new(Kind::Invalid, "`pipeline replay` needs the replacement script").fix(usage).into())
        }
        (true, Some(path)) => {
            let script = if path.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).context("cannot read the script from standard input")?;
                s
            } else {
                std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the script file {} (it must be UTF-8 text)", path.display())
                })?
            };
            match args {
                Value::Object(m) => {
                    m.insert("script".into(), Value::String(script));
                    Ok(())
                }
                _ => Err(CliError::new(Kind::Invalid, "--args must be a JSON object")
                    .fix(r#"e.g. --args '{"job":"team/app","build":12}'"#)
                    .into()),
            }
        }
    }
}

/// The controller a call without `--controller` goes to: the only one configured.
async fn only_controller(gate: &Gate) -> anyhow::Result<String> {
    let mut names: Vec<String> = gate.store().controllers().await?.into_iter().map(|c| c.name).collect();
    match names.len() {
        1 => Ok(names.remove(0)),
        0 => Err(CliError::new(Kind::NotFound, "no Jenkins controller is configured")
            .fix("add one with `jgate controller add NAME --url URL --username USER --token-file FILE`")
            .into()),
        _ => Err(CliError::new(Kind::Invalid, format!("several controllers are configured: {}", names.join(", ")))
            .fix(format!("choose one with --controller NAME, e.g. --controller {}", names[0]))
            .into()),
    }
}

/// An operation by its tool name or its CLI verb.
pub fn operation_named(words: &str) -> anyhow::Result<&'static catalog::Operation> {
    let wanted = words.trim();
    catalog::OPERATIONS
        .iter()
        .copied()
        .find(|o| o.name == wanted || o.cli == wanted || o.cli.replace(' ', "-") == wanted)
        .with_context(|| {
            format!("no operation is called '{wanted}': `jgate operations` lists them (by tool name and CLI verb)")
        })
}

// ---------------------------------------------------------------------------------------------
// console administrators (`jgate admin`) and login links (`jgate console login`)

#[derive(Subcommand)]
pub enum AdminCmd {
    /// Creates an administrator of the web console. The password is read from --password-file,
    /// else typed twice at a prompt (not echoed), else from standard input — never an argument.
    #[command(after_help = "Examples:
  jgate admin create alice                      (password typed twice, not echoed)
  jgate admin create alice --password-file pw.txt")]
    Create {
        /// The administrator's name: 1-63 characters of a-z, 0-9, '.', '_' and '-' (e.g. alice).
        name: String,
        /// Read the password from this file (its first line).
        #[arg(long, value_name = "PATH")]
        password_file: Option<PathBuf>,
    },
    /// Lists the console's administrators.
    #[command(after_help = "Examples:
  jgate admin list
  jgate admin list --json")]
    List,
    /// Deletes an administrator and ends their sessions.
    #[command(after_help = "Example:
  jgate admin delete alice")]
    Delete {
        /// The administrator's name.
        name: String,
    },
    /// Sets an administrator's password and ends their sessions.
    #[command(after_help = "Examples:
  jgate admin passwd alice
  jgate admin passwd alice --password-file pw.txt")]
    Passwd {
        /// The administrator's name.
        name: String,
        /// Read the password from this file (its first line).
        #[arg(long, value_name = "PATH")]
        password_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum ConsoleCmd {
    /// Prints a one-time login link for the web console (valid 10 minutes, usable once).
    #[command(after_help = "Examples:
  jgate console login
  jgate console login --admin alice --url https://jgate.example.com")]
    Login {
        /// The administrator to log in as (default: the only one).
        #[arg(long)]
        admin: Option<String>,
        /// jgate's base URL as a browser reaches it (`jgate serve`).
        #[arg(long, env = "JGATE_URL", default_value = "http://127.0.0.1:8765")]
        url: String,
    },
}

/// A new password: from the file, or typed twice at a terminal, or standard input's first line.
fn read_password(file: Option<&PathBuf>) -> anyhow::Result<SecretString> {
    let raw = if let Some(f) = file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read the password file {}", f.display()))?;
        text.lines().next().unwrap_or_default().to_string()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New password (input hidden): ")
            .context("cannot read the password from the terminal")?;
        let second = rpassword::prompt_password("Same password again: ")
            .context("cannot read the password from the terminal")?;
        if first != second {
            bail!("the two passwords differ: nothing was changed; run the command again");
        }
        first
    } else {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read the password from standard input")?;
        s.lines().next().unwrap_or_default().to_string()
    };
    if raw.is_empty() {
        bail!("the password is empty: give it with --password-file FILE, at the prompt, or on standard input");
    }
    Ok(SecretString::from(raw))
}

pub async fn admins(g: &Global, cmd: AdminCmd) -> anyhow::Result<()> {
    let gate = open(g).await?;
    let by = Admin::local_cli();
    match cmd {
        AdminCmd::Create { name, password_file } => {
            gate::admins::check_admin_name(&name)?;
            let password = read_password(password_file.as_ref())?;
            let row = gate.create_admin(&by, &name, &password).await?;
            out(g, &json!({"admin": row.name, "created_ms": row.created_ms}), || {
                println!("created administrator {}", row.name);
                println!(
                    "Log in at /console/ of `jgate serve`, or get a one-time link: jgate console login --admin {}",
                    row.name
                );
            });
        }
        AdminCmd::List => {
            let rows = gate.admins().await?;
            let v: Vec<Value> = rows
                .iter()
                .map(|a| json!({"admin": a.name, "created_ms": a.created_ms, "password_ms": a.password_ms}))
                .collect();
            out(g, &Value::Array(v), || {
                let rows: Vec<Vec<String>> = rows
                    .iter()
                    .map(|a| vec![a.name.clone(), format_time(a.created_ms), format_time(a.password_ms)])
                    .collect();
                table_or(
                    "no administrators yet: `jgate admin create NAME` adds one",
                    &["name", "created", "password set"],
                    &rows,
                );
            });
        }
        AdminCmd::Delete { name } => {
            if !gate.delete_admin(&by, &name).await? {
                return Err(CliError::new(Kind::NotFound, format!("there is no administrator '{name}'"))
                    .fix("`jgate admin list` shows them")
                    .into());
            }
            out(g, &json!({"deleted": name}), || println!("deleted administrator {name} (their sessions ended)"));
        }
        AdminCmd::Passwd { name, password_file } => {
            let password = read_password(password_file.as_ref())?;
            gate.set_admin_password(&by, &name, &password).await?;
            out(g, &json!({"admin": name, "password": "changed"}), || {
                println!("password of {name} changed (their sessions ended)")
            });
        }
    }
    Ok(())
}

pub async fn console(g: &Global, cmd: ConsoleCmd) -> anyhow::Result<()> {
    let ConsoleCmd::Login { admin, url } = cmd;
    let gate = open(g).await?;
    let name = match admin {
        Some(a) => a,
        None => {
            let all = gate.admins().await?;
            match all.as_slice() {
                [one] => one.name.clone(),
                [] => {
                    return Err(CliError::new(Kind::NotFound, "there is no console administrator yet")
                        .fix("create one: jgate admin create NAME")
                        .into());
                }
                many => {
                    let names: Vec<&str> = many.iter().map(|a| a.name.as_str()).collect();
                    return Err(CliError::new(Kind::Invalid, "there are several administrators")
                        .fix(format!("choose one with --admin, one of {}", names.join(", ")))
                        .into());
                }
            }
        }
    };
    let token = gate.console_login_link(&Admin::local_cli(), &name).await?;
    let link = format!("{}/console/link?token={}", url.trim_end_matches('/'), gate::gate::expose(&token));
    out(g, &json!({"admin": name, "url": link, "expires_in_secs": gate::admins::LINK_TTL_MS / 1000}), || {
        println!("{link}");
        println!("Open it within 10 minutes to log in as {name}; it works once.");
    });
    Ok(())
}
