//! jgate: lets AI agents use Jenkins safely. This binary hosts the CLI; today it serves the
//! Jenkins twin (`jgate twin serve`) and a demo of it (`jgate demo`).

mod demo;
mod twin_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "jgate", version, about = "Lets AI agents use Jenkins safely")]
struct Cli {
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
    /// Runs a short tour on the built-in demo controller.
    Demo(demo::DemoArgs),
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
