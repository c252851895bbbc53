//! jgate: lets AI agents use Jenkins safely. This binary hosts the CLI; today it serves the
//! Jenkins twin (`jgate twin serve`) and a demo of it (`jgate demo`).

mod admin;
mod demo;
mod exec;
mod mcp;
mod proxy;
mod serve;
mod twin_cmd;

use clap::{Parser, Subcommand};

// Every call allocates many small, short-lived strings and JSON values; glibc's allocator spent a
// fifth of the gateway's CPU time on them (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "jgate", version, about = "Lets AI agents use Jenkins safely")]
struct Cli {
    #[command(flatten)]
    global: admin::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The Jenkins twin: a simulated Jenkins controller, faithful on the wire.
    Twin {
        #[command(subcommand)]
        command: twin_cmd::TwinCommand,
    },
    /// Plays the whole story on embedded defaults: the twin, jgate on SQLite, two agents over MCP.
    Demo(demo::DemoArgs),
    /// Jenkins controllers jgate connects to.
    Controller {
        #[command(subcommand)]
        command: admin::ControllerCmd,
    },
    /// Agents and their keys.
    Agent {
        #[command(subcommand)]
        command: admin::AgentCmd,
    },
    /// Grants an agent a level (off/read/full) on a capability group.
    Grant(admin::GrantArgs),
    /// Lists an agent's grants.
    Grants { agent: String },
    /// Removes a grant by id.
    Ungrant { id: i64 },
    /// What an agent may do: groups × controllers (Off/Read/Full with job patterns); with --job,
    /// which grant decides for that job and why.
    Access(admin::AccessArgs),
    /// The audit log: list (filters, --json for JSON lines, --follow), verify, checkpoint.
    Audit(admin::AuditArgs),
    /// The master key.
    Key {
        #[command(subcommand)]
        command: KeyCmd,
    },
    /// Lists the operations agents can call.
    Operations,
    /// Calls an operation as an agent (key from JGATE_AGENT_KEY), through the policy and audit.
    Call(admin::CallArgs),
    /// Serves MCP over streamable HTTP at /mcp (agents authenticate with Authorization: Bearer).
    Serve(serve::ServeArgs),
    /// Serves MCP over stdio for one agent (key from JGATE_AGENT_KEY).
    Mcp,
    /// Runs a command (a Jenkins client, an MCP server, curl) against jgate's Jenkins proxy with
    /// JENKINS_URL, JENKINS_USER and a short-lived JENKINS_TOKEN made for this run.
    Exec(exec::ExecArgs),
    /// Generated documentation (`jgate docs tools > docs/tools.md`).
    #[command(hide = true)]
    Docs { what: String },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Generates a new master key and re-wraps every stored token with it.
    Rotate,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("JGATE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Twin { command } => twin_cmd::run(command).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Controller { command } => admin::controller(&cli.global, command).await,
            Command::Agent { command } => admin::agent(&cli.global, command).await,
            Command::Grant(a) => admin::grant(&cli.global, a).await,
            Command::Grants { agent } => admin::grants(&cli.global, &agent).await,
            Command::Ungrant { id } => admin::ungrant(&cli.global, id).await,
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
            Command::Docs { what } if what == "tools" => {
                print!("{}", mcp::tools_markdown());
                Ok(())
            }
            Command::Docs { what } => Err(anyhow::anyhow!("unknown docs '{what}': use `jgate docs tools`")),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
