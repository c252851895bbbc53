//! `jgate twin serve`: runs the Jenkins twin until killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use jenkins_twin::scenario::{self, FaultSpec};

#[derive(Subcommand)]
pub enum TwinCommand {
    /// Serves a simulated Jenkins controller.
    #[command(after_help = "Examples:
  jgate twin serve --scenario demo --user admin:admin:11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  jgate twin serve --addr 127.0.0.1:0 --scenario jobs.toml --latency-ms 50")]
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the ready line shows it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// A scenario file (TOML, see docs/twin.md), or `demo` for the built-in demo controller.
    /// Without it: a freshly set-up controller with the suggested plugins and no jobs.
    #[arg(long)]
    scenario: Option<String>,
    /// Adds a user with Overall/Administer: NAME:PASSWORD:APITOKEN (repeatable).
    #[arg(long = "user", value_name = "NAME:PASSWORD:APITOKEN")]
    users: Vec<String>,
    /// Adds this many milliseconds of latency to every response.
    #[arg(long, value_name = "MS")]
    latency_ms: Option<u64>,
    /// Fraction (0..1) of requests answered with a 500 stack-trace page.
    #[arg(long, value_name = "RATE")]
    error_500_rate: Option<f64>,
    /// Fraction (0..1) of requests answered with 503 (Jenkins starting).
    #[arg(long, value_name = "RATE")]
    error_503_rate: Option<f64>,
    /// Fraction (0..1) of connections reset right after being accepted.
    #[arg(long, value_name = "RATE")]
    reset_rate: Option<f64>,
    /// Console streams are sent in pieces of this many bytes (slow-drip fault).
    #[arg(long, value_name = "BYTES")]
    drip_bytes: Option<usize>,
    /// Pause between slow-drip pieces.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    drip_interval_ms: u64,
    /// Answer 503 "getting ready to work" for this long after start.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    starting_ms: u64,
    /// Seed of the fault generator.
    #[arg(long)]
    seed: Option<u64>,
}

/// Parses `NAME:PASSWORD:APITOKEN`; the token may itself contain no `:`.
pub fn parse_user(spec: &str) -> anyhow::Result<(String, String, String)> {
    let mut parts = spec.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(p), Some(t)) if !n.is_empty() && !p.is_empty() && !t.is_empty() => {
            Ok((n.to_string(), p.to_string(), t.to_string()))
        }
        _ => bail!("--user expects NAME:PASSWORD:APITOKEN (three non-empty parts), e.g. --user admin:admin:11aa..."),
    }
}

pub fn load_scenario(spec: Option<&str>) -> anyhow::Result<scenario::Scenario> {
    match spec {
        None => Ok(scenario::Scenario::default()),
        Some("demo") => scenario::parse(scenario::DEMO).context("the built-in demo scenario is invalid"),
        Some(path) => {
            let path = PathBuf::from(path);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("cannot read scenario file {} (use --scenario demo for the built-in one)", path.display())
            })?;
            scenario::parse(&text).with_context(|| format!("scenario file {}", path.display()))
        }
    }
}

pub async fn run(cmd: TwinCommand) -> anyhow::Result<()> {
    match cmd {
        TwinCommand::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut sc = load_scenario(args.scenario.as_deref())?;
    let users = args.users.iter().map(|u| parse_user(u)).collect::<anyhow::Result<Vec<_>>>()?;
    let f: &mut FaultSpec = &mut sc.faults;
    if let Some(v) = args.latency_ms {
        f.latency_ms = v;
    }
    for (rate, name, slot) in [
        (args.error_500_rate, "--error-500-rate", &mut f.error_500_rate),
        (args.error_503_rate, "--error-503-rate", &mut f.error_503_rate),
        (args.reset_rate, "--reset-rate", &mut f.reset_rate),
    ] {
        if let Some(r) = rate {
            if !(0.0..=1.0).contains(&r) {
                bail!("{name} must be between 0 and 1, got {r}");
            }
            *slot = r;
        }
    }
    if args.drip_bytes.is_some() {
        f.drip_bytes = args.drip_bytes;
        f.drip_interval_ms = args.drip_interval_ms;
    }
    if args.seed.is_some() {
        f.seed = args.seed;
    }
    let faults = sc.faults.clone();
    let twin = jenkins_twin::Twin::new(&sc, &users)?;
    twin.set_faults(faults, Duration::from_millis(args.starting_ms));
    let server = twin.serve(args.addr).await.with_context(|| format!("cannot listen on {}", args.addr))?;
    println!("twin listening on {}", server.url());
    tokio::select! {
        _ = server.wait() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
