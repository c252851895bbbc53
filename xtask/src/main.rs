//! `cargo xtask`: project automation.
//!
//! `cargo xtask test` runs every test: the Rust suites (`cargo test --workspace`), then the real
//! Jenkins clients from PyPI (pinned in tests/clients/requirements.txt, installed into a venv
//! under target/) driving `jgate twin serve`. It installs what it needs and fails loudly when
//! something cannot be had.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench(),
        _ => {
            eprintln!("usage: cargo xtask test [--rust-only | --clients-only] | cargo xtask bench");
            eprintln!("  test   runs every test (Rust suites, then the real Jenkins clients against the twin)");
            eprintln!("  bench  runs the benchmarks (release build): speed and memory goals live here, not in tests");
            std::process::exit(2);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    eprintln!("xtask: {what}");
    let status = cmd.status().with_context(|| format!("cannot start: {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn test(args: &[String]) -> anyhow::Result<()> {
    let root = root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rust = !args.iter().any(|a| a == "--clients-only");
    let clients = !args.iter().any(|a| a == "--rust-only");
    if rust {
        run(
            Command::new(&cargo).current_dir(&root).args(["test", "--workspace", "--all-targets"]),
            "cargo test --workspace",
        )?;
    }
    if clients {
        let python = ensure_venv(&root)?;
        run(Command::new(&cargo).current_dir(&root).args(["build", "-p", "jgate"]), "cargo build -p jgate")?;
        let bin = root.join("target/debug/jgate");
        run(
            Command::new(&python).current_dir(&root).env("JGATE_BIN", &bin).args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/clients",
            ]),
            "pytest tests/clients (python-jenkins, jenkinsapi, api4jenkins against the twin)",
        )?;
    }
    eprintln!("xtask: all tests passed");
    Ok(())
}

/// Benchmarks: tailing a 1 GiB console from the twin with bounded memory.
fn bench() -> anyhow::Result<()> {
    let root = root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(
        Command::new(&cargo).current_dir(&root).args(["run", "--release", "-p", "jenkins", "--example", "tail_bench"]),
        "tail a 1 GiB console log streamed from the twin (crates/jenkins/examples/tail_bench.rs)",
    )
}

/// Creates target/xtask-venv with the pinned client packages, reinstalling when
/// requirements.txt changes. Returns the venv's python.
fn ensure_venv(root: &Path) -> anyhow::Result<PathBuf> {
    let req = root.join("tests/clients/requirements.txt");
    let wanted = std::fs::read_to_string(&req).with_context(|| format!("cannot read {}", req.display()))?;
    let venv = root.join("target/xtask-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.installed");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if Command::new(&system_python).arg("--version").output().is_err() {
        bail!(
            "python3 is needed for the client tests: install it (Debian: apt-get install python3 python3-venv) or set PYTHON"
        );
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new(&system_python).args(["-m", "venv"]).arg(&venv), "create the Python venv for the client tests")
        .context("python3 -m venv failed: on Debian install python3-venv")?;
    run(
        Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"]).arg(&req),
        "pip install the pinned Jenkins clients (tests/clients/requirements.txt)",
    )?;
    std::fs::write(&stamp, wanted).context("cannot write the venv stamp")?;
    Ok(python)
}
