//! The console's administrators from the CLI, as an operator scripts them: `jgate admin create`
//! (password from a file or standard input, never an argument), `list`, `passwd`, `delete`, and
//! `jgate console login` printing a one-time link.

use std::io::Write;
use std::process::{Command, Output, Stdio};

struct Env {
    dir: std::path::PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = std::env::temp_dir().join(format!(
            "jgate-console-cli-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        Env { dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_jgate"));
        c.args(args)
            .env("JGATE_DATA_DIR", &self.dir)
            .env_remove("JGATE_MASTER_KEY")
            .env_remove("JGATE_DB")
            .env_remove("JGATE_AUDIT_FILE")
            .env_remove("JGATE_URL")
            .env("USER", "ops-admin")
            .env("NO_COLOR", "1");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().expect("run jgate")
    }

    /// Runs with `input` on standard input (not a terminal).
    fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
        child.wait_with_output().expect("wait")
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn administrators_from_the_cli() {
    let env = Env::new();
    let pw = env.dir.join("pw.txt");
    std::fs::write(&pw, "a long console passphrase\nignored second line\n").expect("write");

    // No administrator yet: the login link says how to make one.
    let o = env.run(&["console", "login"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("jgate admin create NAME"), "{}", text(&o));

    // A password is never an argument.
    let o = env.run(&["admin", "create", "alice", "--password", "a long console passphrase"]);
    assert!(!o.status.success(), "{}", text(&o));

    let o = env.run(&["admin", "create", "alice", "--password-file", pw.to_str().expect("path")]);
    assert!(o.status.success(), "{}", text(&o));
    // From standard input; too short and agent-key-shaped passwords are refused.
    let o = env.run_with_stdin(&["admin", "create", "bob"], "short\n");
    assert!(!o.status.success() && text(&o).contains("at least 12"), "{}", text(&o));
    let o = env.run_with_stdin(&["admin", "create", "bob"], "another long passphrase\n");
    assert!(o.status.success(), "{}", text(&o));

    let o = env.run(&["--json", "admin", "list"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let names: Vec<&str> = list.as_array().expect("array").iter().filter_map(|a| a["admin"].as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("argon2"));

    // Several administrators: the link needs --admin.
    let o = env.run(&["console", "login"]);
    assert!(!o.status.success() && text(&o).contains("--admin"), "{}", text(&o));
    let o = env.run(&["console", "login", "--admin", "alice", "--url", "https://jgate.example.com/"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("https://jgate.example.com/console/link?token=jgl_"), "{out}");
    let o = env.run(&["console", "login", "--admin", "nobody"]);
    assert!(!o.status.success());

    let o = env.run_with_stdin(&["admin", "passwd", "bob"], "a third long passphrase\n");
    assert!(o.status.success(), "{}", text(&o));
    let o = env.run(&["admin", "delete", "bob"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = env.run(&["admin", "delete", "bob"]);
    assert_eq!(o.status.code(), Some(3), "not found: {}", text(&o));

    // All of it in the audit, by the operator at the CLI; the password nowhere.
    let o = env.run(&["audit"]);
    let audit = String::from_utf8_lossy(&o.stdout);
    for expected in [
        "ops-admin (local CLI) created console administrator alice",
        "ops-admin (local CLI) made a one-time console login link for alice",
        "ops-admin (local CLI) set a new password for console administrator bob",
        "ops-admin (local CLI) deleted console administrator bob",
    ] {
        assert!(audit.contains(expected), "no '{expected}' in:\n{audit}");
    }
    assert!(!audit.contains("passphrase"));
    let _ = std::fs::remove_dir_all(&env.dir);
}
