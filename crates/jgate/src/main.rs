//! jgate: lets AI agents use Jenkins safely. This binary hosts the administrator's CLI,
//! `jgate serve` (MCP over HTTP), `jgate mcp` (stdio), `jgate call`, the Jenkins twin
//! (`jgate twin serve`) and a demo (`jgate demo`).
//!
//! How a command fails (kinds, exit codes, `--json` errors) is decided in `cli_error`; how it
//! prints (never a panic on a closed pipe, colour only on a terminal) in `term`.

// First: its `println!`-family macros replace std's in every module below.
#[macro_use]
mod term;

mod admin;
mod cli_error;
mod console;
mod demo;
mod exec;
mod hooks;
mod mcp;
mod mcp_direct;
mod mcp_resources;
mod mcp_sessions;
mod proxy;
mod serve;
mod session_store;
mod twin_cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

// Every call allocates many small, short-lived strings and JSON values; glibc's allocator spent a
// fifth of the gateway's CPU time on them (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MAIN_EXAMPLES: &str = "\
Examples:
  jgate controller add prod --url https://ci.example.com --username jgate-bot --token-file token.txt
  jgate agent create triage-bot
  jgate grant triage-bot status read
  jgate serve --addr 127.0.0.1:8765
  JGATE_AGENT_KEY=jgate_... jgate call whoami
  jgate audit --since 2h

Exit codes and --json errors: docs/cli.md. Shell completions: jgate completions bash|zsh|fish|powershell";

#[derive(Parser)]
#[command(name = "jgate", version, about = "Lets AI agents use Jenkins safely", after_help = MAIN_EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: admin::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The Jenkins twin: a simulated Jenkins controller, faithful on the wire.
    #[command(after_help = "Examples:
  jgate twin serve --addr 127.0.0.1:8080 --scenario demo --user admin:admin:11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  jgate twin serve --addr 127.0.0.1:0 --scenario jobs.toml --error-500-rate 0.1   (a twin that fails now and then)")]
    Twin {
        #[command(subcommand)]
        command: twin_cmd::TwinCommand,
    },
    /// Plays the whole story on embedded defaults: the twin, jgate on SQLite, two agents over MCP.
    #[command(after_help = "Examples:\n  jgate demo\n  jgate demo --serve --addr 127.0.0.1:8765")]
    Demo(demo::DemoArgs),
    /// Jenkins controllers jgate connects to.
    #[command(after_help = "Examples:
  jgate controller add prod --url https://ci.example.com --username jgate-bot --token-file token.txt
  jgate controller add lab --url http://10.0.0.5:8080 --username bot --token-env LAB_TOKEN --allow-private 10.0.0.5:8080
  jgate controller test prod
  jgate controller list --json")]
    Controller {
        #[command(subcommand)]
        command: admin::ControllerCmd,
    },
    /// Agents and their keys.
    #[command(after_help = "Examples:
  jgate agent create triage-bot --description 'reads failing builds'
  jgate agent key triage-bot --expires-days 30
  jgate agent list
  jgate agent revoke triage-bot")]
    Agent {
        #[command(subcommand)]
        command: admin::AgentCmd,
    },
    /// Administrators of the web console (served by `jgate serve` at /console/).
    #[command(after_help = "Examples:
  jgate admin create alice                      (password typed twice, not echoed)
  jgate admin create alice --password-file pw.txt
  jgate admin list
  jgate admin passwd alice
  jgate admin delete alice")]
    Admin {
        #[command(subcommand)]
        command: admin::AdminCmd,
    },
    /// The web console: a one-time login link.
    #[command(after_help = "Examples:
  jgate console login
  jgate console login --admin alice --url https://jgate.example.com")]
    Console {
        #[command(subcommand)]
        command: admin::ConsoleCmd,
    },
    /// Grants an agent a level (off/read/full) on a capability group.
    #[command(after_help = "Examples:
  jgate grant triage-bot status read
  jgate grant release-bot build full --controller prod --jobs 'release/**' --param ENV=staging
  jgate grant release-bot build off --jobs 'release/prod-*'
  jgate grant release-bot build full --jobs 'release/**' --approve")]
    Grant(admin::GrantArgs),
    /// Lists an agent's grants.
    #[command(after_help = "Example:\n  jgate grants release-bot")]
    Grants {
        /// The agent's name.
        agent: String,
    },
    /// Removes a grant by id.
    #[command(after_help = "Example:\n  jgate ungrant 7        (ids from `jgate grants AGENT`)")]
    Ungrant {
        /// The grant's id, as `jgate grants AGENT` lists it.
        id: i64,
    },
    /// Calls held for an administrator's approval (grants made with --approve): the pending
    /// ones, with exactly what would run; --all also the decided, used and expired ones.
    #[command(after_help = "Examples:\n  jgate approvals\n  jgate approvals --all --json")]
    Approvals {
        /// Also the approvals already decided, used or expired (the newest 500).
        #[arg(long)]
        all: bool,
    },
    /// Approves a held call: the call waiting on it goes on (on any replica).
    #[command(after_help = "Example:\n  jgate approve apr-3f2a9c1d0e4b5a6c --reason 'change 42'")]
    Approve {
        /// The approval's id, as `jgate approvals` lists it.
        id: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Denies a held call; the agent is told the reason.
    #[command(after_help = "Example:\n  jgate deny apr-3f2a9c1d0e4b5a6c --reason 'release freeze until Monday'")]
    Deny {
        /// The approval's id, as `jgate approvals` lists it.
        id: String,
        /// Why (the agent is told; kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// What an agent may do: groups × controllers (Off/Read/Full with job patterns); with --job,
    /// which grant decides for that job and why.
    #[command(after_help = "Examples:
  jgate access release-bot
  jgate access release-bot --controller prod --job release/deploy
  jgate access release-bot --json")]
    Access(admin::AccessArgs),
    /// The audit log: list (filters, --json for JSON lines, --follow), verify, checkpoint.
    #[command(after_help = "Examples:
  jgate audit --agent release-bot --since 2h
  jgate audit --denied --since 2026-11-22 --json
  jgate audit --follow
  jgate audit verify
  jgate audit checkpoint >> checkpoints.txt")]
    Audit(admin::AuditArgs),
    /// The master key.
    #[command(after_help = "Example:
  jgate key rotate        (stored tokens and audit keys re-wrapped; back up the new key file)")]
    Key {
        #[command(subcommand)]
        command: KeyCmd,
    },
    /// Lists the operations agents can call.
    #[command(after_help = "Examples:
  jgate operations
  jgate operations --json")]
    Operations,
    /// Calls an operation as an agent (key from JGATE_AGENT_KEY), through the policy and audit.
    #[command(after_help = "Examples:
  JGATE_AGENT_KEY=jgate_... jgate call whoami
  JGATE_AGENT_KEY=jgate_... jgate call get_job --args '{\"job\":\"team/api\"}'
  JGATE_AGENT_KEY=jgate_... jgate call build trigger --controller prod --args '{\"job\":\"release/deploy\",\"wait\":\"finish\"}'
  JGATE_AGENT_KEY=jgate_... jgate call pipeline replay --args '{\"job\":\"team/app\",\"build\":12}' --script-file Jenkinsfile.fix

--controller may be left out when exactly one controller is configured.")]
    Call(admin::CallArgs),
    /// Serves MCP over streamable HTTP at /mcp (agents authenticate with Authorization: Bearer).
    #[command(after_help = "Examples:
  jgate serve                                   (http://127.0.0.1:8765/mcp)
  jgate serve --addr 127.0.0.1:9000 --allowed-host jgate.internal:9000

Keys travel in plain HTTP: bind a non-loopback address only behind a TLS-terminating proxy.")]
    Serve(serve::ServeArgs),
    /// Serves MCP over stdio for one agent (key from JGATE_AGENT_KEY).
    #[command(
        after_help = "Examples:\n  JGATE_AGENT_KEY=jgate_... jgate mcp      (what an MCP client starts)\n  an MCP client's config: {\"command\": \"jgate\", \"args\": [\"mcp\"], \"env\": {\"JGATE_AGENT_KEY\": \"jgate_...\"}}"
    )]
    Mcp,
    /// Runs a command (a Jenkins client, an MCP server, curl) against jgate's Jenkins proxy with
    /// JENKINS_URL, JENKINS_USER and a short-lived JENKINS_TOKEN made for this run.
    #[command(after_help = "Examples:
  JGATE_AGENT_KEY=jgate_... jgate exec -- sh -c 'curl -sg -u \"$JENKINS_USER:$JENKINS_TOKEN\" \"${JENKINS_URL}api/json\"'
  jgate exec --controller prod --key-file bot.key --ttl 30m -- python3 release.py
  jgate exec --url https://jgate.example.com -- mcp-jenkins --jenkins-url \"$JENKINS_URL\"

The command reaches Jenkins through `jgate serve`'s proxy at --url; its token is revoked when it exits.")]
    Exec(exec::ExecArgs),
    /// Prints a shell completion script.
    #[command(after_help = "Examples:
  jgate completions bash > ~/.local/share/bash-completion/completions/jgate
  jgate completions zsh > ~/.zfunc/_jgate         (with fpath+=~/.zfunc before compinit)
  jgate completions fish > ~/.config/fish/completions/jgate.fish
  jgate completions powershell >> $PROFILE")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Generated documentation (`jgate docs tools > docs/tools.md`).
    #[command(hide = true)]
    Docs {
        /// What to generate: `tools`.
        what: String,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Generates a new master key and re-wraps every stored token with it.
    #[command(after_help = "Example:
  jgate key rotate        (stored tokens and audit keys re-wrapped; back up the new key file)")]
    Rotate,
}

/// Commands that open no store (--db, --key-file and --audit-file are hidden there).
const STORELESS: [&str; 5] = ["twin", "demo", "operations", "completions", "docs"];
/// Commands where --json changes nothing.
const NO_JSON: [&str; 6] = ["twin", "demo", "completions", "docs", "serve", "mcp"];
/// Commands where --max-calls-per-agent applies.
const CALLERS: [&str; 3] = ["serve", "mcp", "call"];

/// The command tree, with the global options hidden from the help of the commands where they
/// mean nothing (they are still accepted there).
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    // Built first: global options are copied into every subcommand only while building.
    cmd.build();
    let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
    for name in names {
        let hidden = |arg: &str| match arg {
            "db" | "key_file" | "audit_file" => STORELESS.contains(&name.as_str()),
            "json" => NO_JSON.contains(&name.as_str()),
            "max_calls_per_agent"
            | "approval_wait"
            | "approval_expiry"
            | "approval_webhook_file"
            | "approval_webhook_format"
            | "approval_webhook_allow_private" => !CALLERS.contains(&name.as_str()),
            _ => false,
        };
        cmd = cmd.mut_subcommand(&name, |sub| hide_args(sub, &hidden));
    }
    cmd
}

fn hide_args(cmd: clap::Command, hidden: &dyn Fn(&str) -> bool) -> clap::Command {
    let cmd = cmd.mut_args(|a| if hidden(a.get_id().as_str()) { a.hide(true) } else { a });
    let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
    names.into_iter().fold(cmd, |cmd, name| cmd.mut_subcommand(&name, |sub| hide_args(sub, hidden)))
}

/// The log level comes from JGATE_LOG, else RUST_LOG, else `warn`; colour only on a terminal.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("JGATE_LOG")
        .or_else(|_| EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(term::color(term::Stream::Stderr))
        .init();
}

/// Parses the command line. A usage error with --json is reported as an `invalid` JSON error.
fn parse() -> Result<Cli, std::process::ExitCode> {
    let parsed = command().try_get_matches().and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => Ok(cli),
        Err(e) => {
            let json = std::env::args_os().any(|a| a == "--json");
            if !json || !e.use_stderr() {
                // Help and version (exit 0), or a usage error in clap's own words (exit 2).
                let code = e.exit_code();
                let _ = e.print();
                return Err(std::process::ExitCode::from(u8::try_from(code).unwrap_or(2)));
            }
            let rendered = e.render().to_string();
            let message = rendered.lines().next().unwrap_or("").trim_start_matches("error: ").trim().to_string();
            let err = cli_error::CliError::new(cli_error::Kind::Invalid, message)
                .fix("see `jgate --help` (or `jgate COMMAND --help`) for the usage");
            Err(cli_error::report(&err.into(), true))
        }
    }
}

fn main() -> std::process::ExitCode {
    init_tracing();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            let err = anyhow::Error::new(e).context("cannot start the async runtime");
            return cli_error::report(&err, json);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Twin { command } => twin_cmd::run(command).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Controller { command } => admin::controller(&cli.global, command).await,
            Command::Agent { command } => admin::agent(&cli.global, command).await,
            Command::Admin { command } => admin::admins(&cli.global, command).await,
            Command::Console { command } => admin::console(&cli.global, command).await,
            Command::Grant(a) => admin::grant(&cli.global, a).await,
            Command::Grants { agent } => admin::grants(&cli.global, &agent).await,
            Command::Ungrant { id } => admin::ungrant(&cli.global, id).await,
            Command::Approvals { all } => admin::approvals(&cli.global, all).await,
            Command::Approve { id, reason } => admin::decide_approval(&cli.global, &id, true, reason.as_deref()).await,
            Command::Deny { id, reason } => admin::decide_approval(&cli.global, &id, false, Some(&reason)).await,
            Command::Access(a) => admin::access(&cli.global, a).await,
            Command::Audit(a) => admin::audit(&cli.global, a).await,
            Command::Key { command: KeyCmd::Rotate } => admin::rotate_key(&cli.global).await,
            Command::Operations => {
                admin::operations(&cli.global);
                Ok(())
            }
            Command::Call(a) => admin::call(&cli.global, a).await,
            Command::Serve(a) => serve::serve(&cli.global, a).await,
            Command::Mcp => serve::stdio(&cli.global).await,
            Command::Exec(a) => match exec::run(a).await {
                // The command's own exit status is jgate exec's.
                Ok(code) => std::process::exit(code),
                Err(e) => Err(e),
            },
            Command::Completions { shell } => {
                completions(shell);
                Ok(())
            }
            Command::Docs { what } if what == "tools" => {
                print!("{}", mcp::tools_markdown());
                Ok(())
            }
            Command::Docs { what } => Err(anyhow::anyhow!("unknown docs '{what}': use `jgate docs tools`")),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => cli_error::report(&e, json),
    }
}

/// `jgate completions SHELL`: the script on standard output.
fn completions(shell: clap_complete::Shell) {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command(), "jgate", &mut script);
    print!("{}", String::from_utf8_lossy(&script));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                missing.push(format!("{path} <{id}>"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none_or(|h| h.to_string().trim().is_empty()) && sub.get_name() != "help" {
                missing.push(format!("{path} {} (no about)", sub.get_name()));
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn every_argument_and_command_has_help() {
        let cmd = command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "jgate", &mut missing);
        assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
    }

    /// Every command (from the command tree, however it grows) shows an example of itself in its
    /// own `--help`: a line running `jgate PATH`.
    #[test]
    fn every_command_has_an_example_of_itself() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help" && !s.is_hide_set()) {
                let path = format!("{path} {}", sub.get_name());
                let help = sub.get_after_help().map(ToString::to_string).unwrap_or_default();
                let runs_itself =
                    help.lines().any(|l| l.contains(&format!("{path} ")) || l.trim_end().ends_with(path.as_str()));
                if !help.contains("Example") || !runs_itself {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&command(), "jgate", &mut missing);
        assert!(missing.is_empty(), "no example of the command in its --help:\n{}", missing.join("\n"));
    }

    #[test]
    fn global_options_are_hidden_where_they_mean_nothing() {
        let cmd = command();
        let sub = |name: &str| cmd.find_subcommand(name).cloned().unwrap_or_else(|| panic!("no {name}"));
        let hidden = |c: &clap::Command, id: &str| {
            c.get_arguments().find(|a| a.get_id() == id).is_none_or(clap::Arg::is_hide_set)
        };
        let twin_serve = sub("twin").find_subcommand("serve").cloned().unwrap_or_else(|| panic!("twin serve"));
        for id in ["db", "key_file", "audit_file", "json", "max_calls_per_agent"] {
            assert!(hidden(&twin_serve, id), "twin serve shows --{id}");
            assert!(hidden(&sub("completions"), id), "completions shows --{id}");
        }
        assert!(hidden(
            &sub("controller").find_subcommand("list").cloned().unwrap_or_else(|| panic!("list")),
            "max_calls_per_agent"
        ));
        assert!(!hidden(&sub("controller").find_subcommand("list").cloned().unwrap_or_else(|| panic!("list")), "db"));
        assert!(!hidden(&sub("call"), "max_calls_per_agent"));
        assert!(!hidden(&sub("operations"), "json"));
    }
}
