//! The CLI as people meet it: errors (kinds, exit codes, `--json`), closed pipes, completions and
//! help, colour and progress on a terminal (a pseudo-terminal made by util-linux `script`), empty
//! results, `jgate call` defaults, the hidden token prompt, the store's files and the master key.
//! Each test spawns the real `jgate` binary in a temporary data directory.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const BIN: &str = env!("CARGO_BIN_EXE_jgate");

struct Env {
    dir: std::path::PathBuf,
}

impl Env {
    fn new(what: &str) -> Env {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "jgate-polish-{what}-{}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        Env { dir }
    }

    fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("JGATE_DATA_DIR", &self.dir)
            .env_remove("JGATE_MASTER_KEY")
            .env_remove("JGATE_MASTER_KEY_FILE")
            .env_remove("JGATE_DB")
            .env_remove("JGATE_AUDIT_FILE")
            .env_remove("JGATE_LOG")
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .env("USER", "ops-admin")
            .stdin(Stdio::null());
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        self.command(args, extra_env).output().expect("run jgate")
    }

    fn ok(&self, args: &[&str], extra_env: &[(&str, &str)]) -> String {
        let o = self.run(args, extra_env);
        assert!(o.status.success(), "jgate {args:?} failed:\n{}\n{}", text(&o.stdout), text(&o.stderr));
        text(&o.stdout)
    }

    /// Runs jgate on a pseudo-terminal (stdin, stdout and stderr all on it); `answer` waits for
    /// a prompt and then types a line. None when util-linux `script` is not installed.
    fn on_tty(&self, args: &[&str], extra_env: &[(&str, &str)], answer: Option<(&str, &str)>) -> Option<String> {
        if Command::new("script").arg("--version").output().is_err() {
            eprintln!("SKIPPING the terminal part: util-linux `script` is not installed");
            return None;
        }
        let quoted: Vec<String> = std::iter::once(BIN)
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let c = self.command(&[], extra_env);
        let mut script = Command::new("script");
        script.args(["-qec", &quoted.join(" "), "/dev/null"]);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => script.env(k, v),
                None => script.env_remove(k),
            };
        }
        if !extra_env.iter().any(|(k, _)| *k == "TERM") {
            script.env("TERM", "xterm-256color");
        }
        let mut child = script.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().ok()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut out = child.stdout.take().expect("stdout");
        let sink = seen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&buf[..n]);
            }
        });
        let stdin = child.stdin.take();
        if let (Some((prompt, line)), Some(mut stdin)) = (answer, stdin) {
            let start = Instant::now();
            while !text(&seen.lock().unwrap_or_else(|p| p.into_inner())).contains(prompt) {
                assert!(start.elapsed() < Duration::from_secs(30), "no prompt '{prompt}'");
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(100));
            stdin.write_all(format!("{line}\r").as_bytes()).expect("type");
            stdin.flush().expect("flush");
            wait(&mut child, Duration::from_secs(60));
        } else {
            wait(&mut child, Duration::from_secs(60));
        }
        let _ = reader.join();
        let all = text(&seen.lock().unwrap_or_else(|p| p.into_inner()));
        Some(all)
    }
}

fn wait(child: &mut std::process::Child, limit: Duration) {
    let start = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("jgate did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The one JSON error line on standard error.
fn json_error(o: &Output) -> Value {
    let err = text(&o.stderr);
    let line = err.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON error in: {err}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

async fn twin(jobs: &str) -> (Arc<jenkins_twin::Twin>, jenkins_twin::TwinServer) {
    let toml = format!("[controller]\nquiet_period = 0\n{jobs}");
    jenkins_twin::start(&toml, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin")
}

fn add_controller(env: &Env, name: &str, server: &jenkins_twin::TwinServer) {
    let allow = format!("127.0.0.1:{}", server.addr().port());
    env.ok(
        &[
            "controller",
            "add",
            name,
            "--url",
            &server.url(),
            "--username",
            "admin",
            "--token-env",
            "T",
            "--allow-private",
            &allow,
        ],
        &[("T", TOKEN)],
    );
}

fn create_agent(env: &Env, name: &str) -> String {
    let created: Value = serde_json::from_str(&env.ok(&["--json", "agent", "create", name], &[])).expect("json");
    created["key"].as_str().expect("key").to_string()
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let env = Env::new("pipe");
    for i in 0..3 {
        env.ok(&["agent", "create", &format!("bot{i}")], &[]);
    }
    let commands: [&[&str]; 8] = [
        &["--help"],
        &["audit", "--help"],
        &["operations"],
        &["audit"],
        &["audit", "--json"],
        &["audit", "--follow"],
        &["agent", "list"],
        &["completions", "bash"],
    ];
    for args in commands {
        // The reading end is closed before jgate starts: its first write meets a broken pipe.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let mut child = env.command(args, &[]).stdout(writer).stderr(Stdio::piped()).spawn().expect("spawn");
        wait(&mut child, Duration::from_secs(30));
        let o = child.wait_with_output().expect("output");
        let err = text(&o.stderr);
        assert!(!err.contains("panicked"), "jgate {args:?} panicked on a closed pipe: {err}");
        assert!(o.status.success(), "jgate {args:?}: {:?} {err}", o.status);
        assert!(err.trim().is_empty(), "jgate {args:?} said: {err}");
    }
}

#[test]
fn errors_have_a_kind_an_exit_code_and_a_json_form() {
    let env = Env::new("errors");
    env.ok(&["agent", "create", "bot"], &[]);

    // A missing agent: not_found, exit 3; JSON on stderr, nothing on stdout.
    let o = env.run(&["--json", "grants", "nobody"], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    let e = json_error(&o);
    assert_eq!(e["error"]["kind"], "not_found");
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("nobody")), "{e}");
    assert!(e["error"]["fix"].as_str().is_some_and(|f| f.contains("jgate agent list")), "{e}");

    // The same without --json: said once, with its fix, no chain of causes.
    let o = env.run(&["grants", "nobody"], &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert_eq!(err.matches("does not exist").count(), 1, "{err}");
    assert!(err.contains("\n  fix: check the name"), "{err}");
    assert!(!err.contains("Caused by") && !err.contains("{"), "{err}");

    // A usage error with --json is JSON too (invalid, exit 2).
    let o = env.run(&["--json", "grant", "bot"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json_error(&o)["error"]["kind"], "invalid");
    // Bad input: invalid, exit 2.
    let o = env.run(&["--json", "grant", "bot", "nosuchgroup", "read"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json_error(&o)["error"]["kind"], "invalid");
    // A bad agent key: auth, exit 5 (the key is not echoed).
    let o = env.run(&["--json", "call", "whoami"], &[("JGATE_AGENT_KEY", "jgate_not-a-real-key")]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    assert_eq!(json_error(&o)["error"]["kind"], "auth");
    assert!(!text(&o.stderr).contains("jgate_not-a-real-key"));
    // No key at all: auth, with the fix.
    let o = env.run(&["--json", "call", "whoami"], &[]);
    assert_eq!(o.status.code(), Some(5));
    assert!(json_error(&o)["error"]["fix"].as_str().is_some_and(|f| f.contains("JGATE_AGENT_KEY")));
    // `jgate mcp` without a key: auth too.
    let o = env.run(&["--json", "mcp"], &[]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    assert!(json_error(&o)["error"]["fix"].as_str().is_some_and(|f| f.contains("JGATE_AGENT_KEY")));
    // A duplicate: conflict, exit 8.
    let o = env.run(&["--json", "agent", "create", "bot"], &[]);
    assert_eq!(o.status.code(), Some(8), "{}", text(&o.stderr));
    assert_eq!(json_error(&o)["error"]["kind"], "conflict");

    // An audit trail that does not verify: audit_broken, exit 10 (the report on stdout).
    let file = env.dir.join("audit.jsonl").display().to_string();
    env.ok(&["--audit-file", &file, "agent", "create", "bot2"], &[]);
    for f in ["jgate.db", "jgate.db-wal", "jgate.db-shm"] {
        let _ = std::fs::remove_file(env.dir.join(f));
    }
    let o = env.run(&["audit", "verify", "--file", &file], &[]);
    assert_eq!(o.status.code(), Some(10), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("audit chain BROKEN"), "{}", text(&o.stdout));
}

#[test]
fn completions_help_and_examples() {
    let env = Env::new("help");
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let script = env.ok(&["completions", shell], &[]);
        assert!(script.contains("jgate") && script.contains("controller"), "{shell}: {script}");
    }
    let o = env.run(&["completions", "tcsh"], &[]);
    assert_eq!(o.status.code(), Some(2), "unknown shell is a usage error");

    // Every command's own example (all of them: main.rs's every_command_has_an_example_of_itself).
    let commands: [&[&str]; 12] = [
        &["controller"],
        &["controller", "add"],
        &["controller", "update"],
        &["agent", "key"],
        &["agent", "key", "rotate"],
        &["access"],
        &["exec"],
        &["key"],
        &["operations"],
        &["twin"],
        &["call"],
        &["serve"],
    ];
    for cmd in commands {
        let help = env.ok(&[cmd, &["--help"]].concat(), &[]);
        let path = format!("jgate {} ", cmd.join(" "));
        assert!(help.contains("Example") && help.contains(&path), "`{path}--help` has no example of itself:\n{help}");
    }
    assert!(env.ok(&["--help"], &[]).contains("jgate completions bash"));
    // Global options appear where they mean something, not elsewhere.
    let twin = env.ok(&["twin", "serve", "--help"], &[]);
    assert!(!twin.contains("--db") && !twin.contains("--max-calls-per-agent") && !twin.contains("--json"), "{twin}");
    let list = env.ok(&["controller", "list", "--help"], &[]);
    assert!(list.contains("--db") && list.contains("--json") && !list.contains("--max-calls-per-agent"), "{list}");
    assert!(env.ok(&["call", "--help"], &[]).contains("--max-calls-per-agent"));
}

#[test]
fn empty_results_say_so() {
    let env = Env::new("empty");
    assert_eq!(env.ok(&["controller", "list"], &[]).trim(), "no controllers (add one with `jgate controller add`)");
    assert_eq!(env.ok(&["agent", "list"], &[]).trim(), "no agents (create one with `jgate agent create`)");
    env.ok(&["agent", "create", "bot"], &[]);
    assert!(env.ok(&["grants", "bot"], &[]).starts_with("no grants"));
    assert_eq!(env.ok(&["audit", "--agent", "nobody"], &[]).trim(), "no audit records match");
    // JSON stays machine-readable: an empty list, no records.
    assert_eq!(env.ok(&["--json", "controller", "list"], &[]).trim(), "[]");
    assert_eq!(env.ok(&["--json", "audit", "--agent", "nobody"], &[]).trim(), "");
}

#[test]
fn the_store_files_are_private_and_a_wrong_path_is_an_error() {
    let env = Env::new("store");
    env.ok(&["agent", "list"], &[]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&env.dir), 0o700, "the data directory");
        assert_eq!(mode(&env.dir.join("jgate.db")), 0o600, "the database");
        assert_eq!(mode(&env.dir.join("master.key")), 0o600, "the key file");
        // A --db file of its own is 0600 too.
        let own = env.dir.join("own.db");
        env.ok(&["--db", &own.display().to_string(), "agent", "list"], &[]);
        assert_eq!(mode(&own), 0o600);
        for side in ["-wal", "-shm"] {
            let p = env.dir.join(format!("own.db{side}"));
            if p.exists() {
                assert_eq!(mode(&p), 0o600, "{side}");
            }
        }
    }

    // A directory that does not exist is named, and not created.
    let missing = env.dir.join("no-such-dir");
    let db = missing.join("jgate.db").display().to_string();
    let o = env.run(&["--json", "--db", &db, "agent", "list"], &[]);
    assert_eq!(o.status.code(), Some(3));
    let e = json_error(&o);
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains(&missing.display().to_string())), "{e}");
    assert!(!missing.exists(), "no empty store is created");

    // Not a jgate database: text, another program's SQLite database, a damaged one. Each fails
    // at once with one message and no log lines.
    let garbage = env.dir.join("notes.txt");
    std::fs::write(&garbage, "these are not the droids\n".repeat(100)).expect("write");
    let foreign = env.dir.join("foreign.db");
    let damaged = env.dir.join("damaged.db");
    {
        // A SQLite database of another program, made by jgate's own SQLite through sqlx.
        let url = format!("sqlite://{}?mode=rwc", foreign.display());
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        rt.block_on(async {
            use sqlx::Connection;
            sqlx::any::install_default_drivers();
            let mut c = sqlx::AnyConnection::connect(&url).await.expect("connect");
            sqlx::query("CREATE TABLE people (name TEXT)").execute(&mut c).await.expect("create");
            let _ = c.close().await;
        });
        let mut bytes = std::fs::read(&foreign).expect("read");
        for b in bytes.iter_mut().skip(100).take(3000) {
            *b = 0xff;
        }
        std::fs::write(&damaged, bytes).expect("write");
    }
    let before = std::fs::read(&foreign).expect("read");
    for file in [&garbage, &foreign, &damaged] {
        let start = Instant::now();
        let o = env.run(&["--db", &file.display().to_string(), "agent", "list"], &[]);
        let err = text(&o.stderr);
        assert!(start.elapsed() < Duration::from_secs(3), "{}: took {:?}", file.display(), start.elapsed());
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.starts_with(&format!("error: the file {} is not a jgate database (or is corrupt): ", file.display())),
            "{err}"
        );
        assert_eq!(err.lines().count(), 2, "one message and its fix, no log lines: {err}");
    }
    assert_eq!(std::fs::read(&foreign).expect("read"), before, "another program's database is left untouched");
}

#[test]
fn a_missing_master_key_file_is_not_replaced_by_a_new_key() {
    let env = Env::new("key");
    env.ok(&["agent", "create", "bot"], &[]);
    let key_file = env.dir.join("master.key");
    let kept = std::fs::read(&key_file).expect("key");
    std::fs::remove_file(&key_file).expect("remove");
    let o = env.run(&["--json", "agent", "list"], &[]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    let e = json_error(&o);
    assert_eq!(e["error"]["kind"], "auth");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("the master key file {} is missing", key_file.display())), "{e}");
    let fix = e["error"]["fix"].as_str().unwrap_or_default();
    assert!(fix.contains("restore the key file") && fix.contains("--master-key-file"), "{e}");
    assert!(!key_file.exists(), "no new key was generated");
    // Restored, it works again; --master-key-file names it explicitly.
    let elsewhere = env.dir.join("backup.key");
    std::fs::write(&elsewhere, &kept).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    assert!(env.ok(&["--master-key-file", &elsewhere.display().to_string(), "agent", "list"], &[]).contains("bot"));
}

#[test]
fn serve_warns_when_keys_would_cross_the_network_in_plain_http() {
    let env = Env::new("serve");
    for (addr, warns) in [("0.0.0.0:0", true), ("127.0.0.1:0", false)] {
        let mut child = env
            .command(&["serve", "--addr", addr], &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut out = child.stdout.take().expect("stdout");
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\n") && out.read(&mut byte).unwrap_or(0) == 1 {
            line.push(byte[0]);
        }
        assert!(text(&line).starts_with("jgate serving on"), "{}", text(&line));
        let _ = child.kill();
        let o = child.wait_with_output().expect("output");
        let err = text(&o.stderr);
        assert_eq!(err.contains("warning: jgate listens on") && err.contains("plain HTTP"), warns, "{addr}: {err}");
    }
}

#[test]
fn the_log_level_comes_from_jgate_log_or_rust_log() {
    let env = Env::new("log");
    env.ok(&["agent", "list"], &[]);
    let debug_lines =
        |extra: &[(&str, &str)]| text(&env.run(&["agent", "list"], extra).stderr).matches("DEBUG").count();
    assert_eq!(debug_lines(&[]), 0);
    assert!(debug_lines(&[("RUST_LOG", "debug")]) > 0, "RUST_LOG");
    assert!(debug_lines(&[("JGATE_LOG", "debug")]) > 0, "JGATE_LOG");
    assert_eq!(debug_lines(&[("JGATE_LOG", "error"), ("RUST_LOG", "debug")]), 0, "JGATE_LOG wins");
    // Not a terminal: no colour codes.
    assert!(!text(&env.run(&["agent", "list"], &[("JGATE_LOG", "debug")]).stderr).contains('\x1b'));
    // A terminal: colour, unless NO_COLOR or TERM=dumb.
    if let Some(tty) = env.on_tty(&["agent", "list"], &[("JGATE_LOG", "debug")], None) {
        assert!(tty.contains("\x1b["), "{tty}");
        for off in [("NO_COLOR", "1"), ("TERM", "dumb")] {
            let plain = env.on_tty(&["agent", "list"], &[("JGATE_LOG", "debug"), off], None).unwrap_or_default();
            assert!(plain.contains("DEBUG") && !plain.contains('\x1b'), "{off:?}: {plain}");
        }
    }
}

#[test]
fn the_token_prompt_does_not_echo() {
    let env = Env::new("prompt");
    // No controller needs to answer: the connection test fails afterwards (nothing stored).
    let out = env.on_tty(
        &[
            "controller",
            "add",
            "prod",
            "--url",
            "http://127.0.0.1:9/",
            "--username",
            "admin",
            "--allow-private",
            "127.0.0.1:9",
        ],
        &[],
        Some(("token (input hidden)", TOKEN)),
    );
    let Some(out) = out else { return };
    assert!(out.contains("Jenkins API token (input hidden): "), "{out}");
    assert!(!out.contains(TOKEN), "the token was echoed: {out}");
    assert!(out.contains("connection test"), "the token was read and the test ran: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jgate_call_finds_the_controller_answers_whoami_and_shows_progress() {
    let jobs = "[[jobs]]\npath = \"team/api\"\nscript = \"echo hi\"\n[[jobs]]\npath = \"team/slow\"\nscript = \"sleep 2\\necho done\"\n[[jobs]]\npath = \"team/slower\"\nscript = \"sleep 60\"\n";
    let (_twin, server) = twin(jobs).await;
    let env = Env::new("call");
    // No controller yet: said, with the fix (and nothing called).
    let key = create_agent(&env, "bot");
    let agent = [("JGATE_AGENT_KEY", key.as_str())];
    let o = env.run(&["--json", "call", "get_job", "--args", r#"{"job":"team/api"}"#], &agent);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(json_error(&o)["error"]["fix"].as_str().is_some_and(|f| f.contains("jgate controller add")));

    add_controller(&env, "prod", &server);
    // Denied: exit 4, kind denied.
    let o = env.run(&["--json", "call", "get_job", "--args", r#"{"job":"team/api"}"#], &agent);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert_eq!(json_error(&o)["error"]["kind"], "denied");
    env.ok(&["grant", "bot", "status", "read"], &[]);
    env.ok(&["grant", "bot", "build", "full"], &[]);
    // One controller: no --controller needed.
    let job: Value =
        serde_json::from_str(&env.ok(&["call", "get_job", "--args", r#"{"job":"team/api"}"#], &agent)).expect("json");
    assert_eq!(job["name"], "team/api");
    // whoami, as on MCP.
    let me: Value = serde_json::from_str(&env.ok(&["call", "whoami"], &agent)).expect("json");
    assert_eq!(me["agent"], "bot");
    assert_eq!(me["controllers"][0]["name"], "prod");

    // A trigger that waits: a spinner on a terminal, none in a pipe.
    let trigger = ["call", "build", "trigger", "--args", r#"{"job":"team/slow","wait":"finish"}"#];
    let piped = env.run(&trigger, &agent);
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    assert!(!text(&piped.stderr).chars().any(is_spinner), "{}", text(&piped.stderr));
    let key_env = [("JGATE_AGENT_KEY", key.as_str())];
    if let Some(tty) = env.on_tty(&trigger, &key_env, None) {
        assert!(tty.chars().any(is_spinner) && tty.contains("trigger_build"), "{tty}");
        assert!(tty.contains("SUCCESS"), "{tty}");
    }

    // Ctrl-C cancels a waiting call: it ends within seconds and the audit says cancelled.
    let mut child = env
        .command(&["call", "build", "trigger", "--args", r#"{"job":"team/slower","wait":"finish"}"#], &agent)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(sent.success());
    let start = Instant::now();
    wait(&mut child, Duration::from_secs(15));
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    let o = child.wait_with_output().expect("output");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("cancelled"), "{}", text(&o.stderr));
    let audit = env.ok(&["audit", "--operation", "trigger_build"], &[]);
    assert!(audit.lines().last().is_some_and(|l| l.contains("cancelled")), "{audit}");

    // Several controllers and none named: the error lists them.
    add_controller(&env, "staging", &server);
    let o = env.run(&["call", "get_job", "--args", r#"{"job":"team/api"}"#], &agent);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("prod, staging") && err.contains("--controller"), "{err}");

    // Colour on a terminal only (the denial above is in the audit log).
    let plain = env.ok(&["audit", "--denied"], &[]);
    assert!(plain.contains("DENIED") && !plain.contains('\x1b'), "{plain}");
    if let Some(tty) = env.on_tty(&["audit", "--denied"], &[], None) {
        assert!(tty.contains("\x1b[31mDENIED"), "{tty}");
        let no_color = env.on_tty(&["audit", "--denied"], &[("NO_COLOR", "1")], None).unwrap_or_default();
        assert!(no_color.contains("DENIED") && !no_color.contains('\x1b'), "{no_color}");
    }
}

/// indicatif's default spinner glyphs.
fn is_spinner(c: char) -> bool {
    "⠁⠂⠄⡀⢀⠠⠐⠈".contains(c)
}

/// The egress guard's refusals at `controller add`: kind `denied` (exit 4), said once, with the
/// allow-list entry as the fix only where an entry can open the address; nothing stored.
#[test]
fn egress_guard_refusals_are_denied_and_advise_the_allow_list_only_where_it_helps() {
    let env = Env::new("ssrf");
    let add = |url: &str, json: bool| {
        let mut args = vec!["controller", "add", "lab", "--url", url, "--username", "admin", "--token-env", "T"];
        if json {
            args.insert(0, "--json");
        }
        env.run(&args, &[("T", TOKEN)])
    };
    // Loopback: an allow-list entry opens it, and the fix names the exact entry.
    let o = add("http://127.0.0.1:9/", true);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    let e = json_error(&o);
    assert_eq!(e["error"]["kind"], "denied", "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("127.0.0.1 is a loopback address"), "{e}");
    assert_eq!(message.matches("refused http").count(), 1, "said once: {e}");
    assert!(!message.contains("--allow-private"), "the advice is in `fix`, not repeated in the message: {e}");
    assert!(e["error"]["fix"].as_str().is_some_and(|f| f.contains("--allow-private 127.0.0.1:9")), "{e}");
    // The same for a person: one error line, one fix line.
    let o = add("http://127.0.0.1:9/", false);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    assert_eq!(err.matches("--allow-private").count(), 1, "{err}");

    // Cloud metadata: no allow-list entry can open it, so none is suggested.
    let o = add("http://169.254.169.254/", true);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    let e = json_error(&o);
    assert_eq!(e["error"]["kind"], "denied", "{e}");
    assert_eq!(e["error"]["fix"], Value::Null, "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no allow-list entry can open it"), "{e}");
    assert!(!message.contains("--allow-private") && !message.contains("add it to"), "{e}");
    assert_eq!(message.matches("refused http").count(), 1, "said once: {e}");
    assert!(!text(&o.stderr).contains(TOKEN));

    assert_eq!(env.ok(&["--json", "controller", "list"], &[]).trim(), "[]", "nothing was stored");
}

/// The connection test against a socket that accepts and never answers: after a few seconds a
/// progress line says what it waits for and how long; the error states the time really waited.
#[test]
fn a_connection_test_that_waits_says_so_and_states_the_real_wait() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts, holds the connections open, never answers (the thread ends with the test process).
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let env = Env::new("wait");
    let url = format!("http://127.0.0.1:{port}/");
    let allow = format!("127.0.0.1:{port}");
    let start = Instant::now();
    let o = env.run(
        &[
            "controller",
            "add",
            "slow",
            "--url",
            &url,
            "--username",
            "admin",
            "--token-env",
            "T",
            "--allow-private",
            &allow,
            "--timeout",
            "6",
        ],
        &[("T", TOKEN)],
    );
    let took = start.elapsed();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(6), "unreachable: {err}");
    let progress = format!("waiting for {url} to answer (up to 6 s per request");
    let said = err.find(&progress).unwrap_or_else(|| panic!("no progress line: {err}"));
    let error = err.find("error:").unwrap_or_else(|| panic!("no error: {err}"));
    assert!(said < error, "the progress line comes while waiting, before the error: {err}");
    // The real wait, as measured by jgate, agrees with the clock.
    let waited: u64 = err
        .split("gave up after waiting ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the wait is not stated: {err}"));
    assert!((6..=7).contains(&waited), "stated {waited} s: {err}");
    assert!(took >= Duration::from_secs(6) && took < Duration::from_secs(20), "took {took:?}");
    assert!(err.contains("--timeout SECONDS"), "{err}");
    assert_eq!(env.ok(&["--json", "controller", "list"], &[]).trim(), "[]", "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jgate_call_prints_pretty_json_on_a_terminal_and_compact_json_in_a_pipe() {
    let (_twin, server) = twin("[[jobs]]\npath = \"team/api\"\nscript = \"echo hi\"\n").await;
    let env = Env::new("call-json");
    let key = create_agent(&env, "bot");
    add_controller(&env, "prod", &server);
    env.ok(&["grant", "bot", "status", "read"], &[]);
    let agent = [("JGATE_AGENT_KEY", key.as_str())];
    let args = ["call", "get_job", "--args", r#"{"job":"team/api"}"#];
    let piped = env.ok(&args, &agent);
    assert_eq!(piped.lines().count(), 1, "one compact line in a pipe: {piped}");
    assert!(piped.contains(r#""name":"team/api""#), "{piped}");
    let v: Value = serde_json::from_str(&piped).expect("json");
    assert_eq!(v["name"], "team/api");
    if let Some(tty) = env.on_tty(&args, &agent, None) {
        assert!(tty.contains("\n  \"") && tty.contains(r#""name": "team/api""#), "pretty on a terminal: {tty}");
    }
}
