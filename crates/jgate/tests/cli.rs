//! The admin CLI end to end, as an administrator scripts it: the real `jgate` binary against the
//! twin, on a SQLite file in a temporary data directory.

use std::process::{Command, Output};

const TOKEN: &str = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

struct Env {
    dir: std::path::PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = std::env::temp_dir().join(format!(
            "jgate-cli-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        Env { dir }
    }
    fn run(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_jgate"));
        c.args(args)
            .env("JGATE_DATA_DIR", &self.dir)
            .env_remove("JGATE_MASTER_KEY")
            .env_remove("JGATE_DB")
            .env_remove("JGATE_AUDIT_FILE")
            .env("USER", "ops-admin")
            .env("NO_COLOR", "1");
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c.output().expect("run jgate")
    }
    fn ok(&self, args: &[&str], extra_env: &[(&str, &str)]) -> String {
        let o = self.run(args, extra_env);
        assert!(
            o.status.success(),
            "jgate {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrator_workflow() {
    let toml = "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"team/api\"\nscript = \"echo hi\"\n";
    let (_twin, server) =
        jenkins_twin::start(toml, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let url = server.url();
    let allow = format!("127.0.0.1:{}", server.addr().port());
    let env = Env::new();
    let tok = [("JENKINS_TOKEN_FOR_TEST", TOKEN)];

    // Refused without the allow-list: the error names the flag, and nothing is stored.
    let o = env.run(
        &["controller", "add", "prod", "--url", &url, "--username", "admin", "--token-env", "JENKINS_TOKEN_FOR_TEST"],
        &tok,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--allow-private"), "{err}");
    assert!(!err.contains(TOKEN), "the token never appears in errors");

    let added = env.ok(
        &[
            "controller",
            "add",
            "prod",
            "--url",
            &url,
            "--username",
            "admin",
            "--token-env",
            "JENKINS_TOKEN_FOR_TEST",
            "--allow-private",
            &allow,
        ],
        &tok,
    );
    assert!(added.contains("Jenkins 2.541.2") && added.contains("connected as admin"), "{added}");
    assert!(env.dir.join("master.key").exists(), "the master key file was created");
    let list: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "controller", "list"], &[])).expect("json");
    assert_eq!(list[0]["name"], "prod");
    assert_eq!(list[0]["last_test"]["ok"], true, "the test `controller add` ran is kept: {list}");
    assert!(
        !std::fs::read(env.dir.join("jgate.db"))
            .unwrap_or_default()
            .windows(TOKEN.len())
            .any(|w| w == TOKEN.as_bytes()),
        "no plaintext token in the database file"
    );

    let created: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "agent", "create", "triage-bot"], &[])).expect("json");
    let key = created["key"].as_str().expect("key").to_string();
    let denied = env.run(
        &["call", "get_job", "--controller", "prod", "--args", r#"{"job":"team/api"}"#],
        &[("JGATE_AGENT_KEY", &key)],
    );
    assert!(!denied.status.success(), "no grant yet: denied");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("denied"));
    let granted = env.ok(&["grant", "triage-bot", "status", "read", "--jobs", "team/**"], &[]);
    assert!(granted.contains("Read job and build status: read on team/**"), "{granted}");
    let job: serde_json::Value = serde_json::from_str(&env.ok(
        &["call", "get_job", "--controller", "prod", "--args", r#"{"job":"team/api"}"#],
        &[("JGATE_AGENT_KEY", &key)],
    ))
    .expect("json");
    assert_eq!(job["name"], "team/api");

    let audit = env.ok(&["audit"], &[]);
    assert!(
        audit.contains("triage-bot was denied reading job team/api on prod: no grant gives Read job and build status"),
        "{audit}"
    );
    assert!(audit.contains("triage-bot read job team/api on prod"), "{audit}");
    // Administrative changes are in the same chain, in plain English.
    assert!(audit.contains("ops-admin (local CLI) added controller prod at "), "{audit}");
    assert!(audit.contains("ops-admin (local CLI) created agent triage-bot with key "), "{audit}");
    assert!(
        audit.contains("ops-admin (local CLI) granted triage-bot Read job and build status: read on team/** (grant 1)"),
        "{audit}"
    );
    let lines = env.ok(&["audit", "--json", "--agent", "triage-bot", "--denied"], &[]);
    assert_eq!(lines.lines().count(), 1, "{lines}");
    // The newest records, printed oldest first like the full listing's end.
    let last = env.ok(&["audit", "--json", "--last", "3"], &[]);
    let all = env.ok(&["audit", "--json"], &[]);
    let tail: Vec<&str> = all.lines().skip(all.lines().count() - 3).collect();
    assert_eq!(last.lines().collect::<Vec<_>>(), tail, "{last}");
    let refused = env.run(&["audit", "--last", "0"], &[]);
    assert!(!refused.status.success(), "--last 0 is refused");
    // Two calls and the intent and outcome of three changes (the refused add stored nothing).
    assert!(env.ok(&["audit", "verify"], &[]).contains("audit chain OK: 8 records"));
    let cp = env.ok(&["audit", "checkpoint"], &[]);
    assert!(cp.starts_with("8 "), "{cp}");

    let revoked = env.ok(&["agent", "revoke", "triage-bot"], &[]);
    assert!(revoked.contains("revoked 1 key"));
    let o = env.run(
        &["call", "get_job", "--controller", "prod", "--args", r#"{"job":"team/api"}"#],
        &[("JGATE_AGENT_KEY", &key)],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("revoked"));

    let old_key = std::fs::read_to_string(env.dir.join("master.key")).expect("key file");
    let tested_at = |env: &Env| -> i64 {
        let list: serde_json::Value =
            serde_json::from_str(&env.ok(&["--json", "controller", "list"], &[])).expect("json");
        list[0]["last_test"]["time_ms"].as_i64().unwrap_or(0)
    };
    let before = tested_at(&env);
    for _ in 0..2 {
        let rotated = env.ok(&["key", "rotate"], &[]);
        assert!(rotated.contains("re-wrapped 1"), "{rotated}");
        assert!(env.ok(&["controller", "test", "prod"], &[]).contains("OK"), "the rotated key opens the token");
    }
    assert!(tested_at(&env) > before, "`controller test` keeps its result as the last test");
    // Rotation is routine: every earlier record still verifies, and the rotations are recorded.
    let verified = env.ok(&["audit", "verify"], &[]);
    assert!(verified.contains("audit chain OK: 14 records"), "{verified}");
    assert!(
        env.ok(&["audit", "--operation", "admin.key.rotate"], &[])
            .contains("ops-admin (local CLI) rotated the master key")
    );
    // The old key is refused before anything is written, with the fix named.
    let o = env.run(&["audit", "verify"], &[("JGATE_MASTER_KEY", old_key.trim())]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("not this installation's master key"), "{err}");
    assert!(err.contains("JGATE_MASTER_KEY") && err.contains("--key-file"), "{err}");
    assert!(!err.contains(old_key.trim()), "no key material in errors");
    assert!(env.ok(&["audit", "verify"], &[]).contains("audit chain OK: 14 records"), "nothing was written");
    let ops = env.ok(&["operations"], &[]);
    assert!(ops.contains("trigger_build"));
}

/// Two jgate processes appending to one SQLite file at once never fork the audit chain.
#[test]
fn two_processes_append_to_one_chain() {
    let env = Env::new();
    let created: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "agent", "create", "bot"], &[])).expect("json");
    let key = created["key"].as_str().expect("key").to_string();
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let dir = env.dir.clone();
            let key = key.clone();
            std::thread::spawn(move || {
                let env = Env { dir };
                for i in 0..12 {
                    // Denied (no grant): each call appends one record without touching Jenkins.
                    let o = env.run(
                        &["call", "get_job", "--controller", "prod", "--args", &format!(r#"{{"job":"w{w}/j{i}"}}"#)],
                        &[("JGATE_AGENT_KEY", &key)],
                    );
                    assert!(
                        String::from_utf8_lossy(&o.stderr).contains("denied"),
                        "{}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let verified = env.ok(&["audit", "verify"], &[]);
    assert!(verified.contains("audit chain OK: 26 records"), "{verified}");
}

/// `--audit-file`: every record also as a JSON line in a file that `audit verify --file` checks;
/// records deleted from the database are found there.
#[test]
fn the_audit_file_is_a_second_copy() {
    let env = Env::new();
    let file = env.dir.join("trail").join("audit.jsonl");
    let file_arg = file.display().to_string();
    let created: serde_json::Value =
        serde_json::from_str(&env.ok(&["--audit-file", &file_arg, "--json", "agent", "create", "bot"], &[]))
            .expect("json");
    let key = created["key"].as_str().expect("key").to_string();
    for i in 0..3 {
        let o = env.run(
            &["call", "get_job", "--controller", "prod", "--args", &format!(r#"{{"job":"j{i}"}}"#)],
            &[("JGATE_AGENT_KEY", &key), ("JGATE_AUDIT_FILE", &file_arg)],
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("denied"));
    }
    let text = std::fs::read_to_string(&file).expect("audit file");
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["hash"].is_string())));
    let verified = env.ok(&["audit", "verify", "--file", &file_arg], &[]);
    assert!(
        verified.contains("audit chain OK: 5 records") && verified.contains("file's 5 records match"),
        "{verified}"
    );

    // Records deleted from the database (here: the database file replaced) are still in the file.
    std::fs::remove_file(env.dir.join("jgate.db")).expect("wipe");
    let _ = std::fs::remove_file(env.dir.join("jgate.db-wal"));
    let _ = std::fs::remove_file(env.dir.join("jgate.db-shm"));
    let o = env.run(&["audit", "verify", "--file", &file_arg], &[]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("record 1 is in the audit file but missing from the database"), "{out}");
    // `jgate mcp` speaks MCP on standard output: the stdout device is refused there.
    let o = env.run(&["--audit-file", "-", "mcp"], &[("JGATE_AGENT_KEY", &key)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be used with it"));
}

/// Every catalog operation is reachable from the CLI (by tool name and by CLI verb, through the
/// gate: each attempt is audited) and from MCP (a tool with a schema). By construction an operation
/// cannot exist without an implementation; this keeps it so for the surfaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_reachable_from_the_cli_and_mcp() {
    let toml = "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"team/api\"\nscript = \"echo hi\"\n";
    let (_twin, server) =
        jenkins_twin::start(toml, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let env = Env::new();
    let allow = format!("127.0.0.1:{}", server.addr().port());
    env.ok(
        &[
            "controller",
            "add",
            "prod",
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
    let created: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "agent", "create", "nobody"], &[])).expect("json");
    let key = created["key"].as_str().expect("key").to_string();
    let ops: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "operations"], &[])).expect("json");
    let ops = ops.as_array().expect("operations");
    assert!(ops.len() >= 20, "{ops:?}");
    let tools = env.ok(&["docs", "tools"], &[]);
    for (i, op) in ops.iter().enumerate() {
        let name = op["name"].as_str().expect("name");
        let verb = op["cli"].as_str().expect("cli verb");
        assert!(tools.contains(&format!("### `{name}`")), "{name} is not an MCP tool");
        // Alternate between the tool name and the CLI verb; the agent has no grants, so each call
        // is refused by the gate (and audited), never "unknown operation".
        let mut args: Vec<&str> = vec!["call"];
        if i % 2 == 0 {
            args.push(name);
        } else {
            args.extend(verb.split(' '));
        }
        args.extend(["--args", r#"{"job":"team/api","from":"team/api","queue_id":1,"build":1,"config_xml":"<x/>"}"#]);
        // A replay's script comes from a file (never --args); without it the CLI asks for it.
        let script = env.dir.join("Jenkinsfile.replay");
        let script_arg = script.display().to_string();
        if name == "replay" {
            std::fs::write(&script, "echo replayed").expect("script file");
            args.extend(["--script-file", &script_arg]);
        }
        let o = env.run(&args, &[("JGATE_AGENT_KEY", &key)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name}: an agent without grants must be refused");
        assert!(!err.contains("no operation is called") && !err.contains("unknown operation"), "{name}: {err}");
    }
    let audit = env.ok(&["--json", "audit", "--agent", "nobody"], &[]);
    for op in ops {
        let name = op["name"].as_str().expect("name");
        assert!(audit.contains(&format!("\"operation\":\"{name}\"")), "{name} left no audit record:\n{audit}");
    }
    let o = env.run(&["call", "no", "such", "op"], &[("JGATE_AGENT_KEY", &key)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no operation is called 'no such op'"));
}

fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A controller that is never called (the agent commands need one only for `call`).
fn add_unreachable_controller(env: &Env) {
    env.ok(
        &[
            "controller",
            "add",
            "prod",
            "--url",
            "http://127.0.0.1:9",
            "--username",
            "admin",
            "--token-env",
            "T",
            "--allow-private",
            "127.0.0.1:9",
            "--force",
        ],
        &[("T", TOKEN)],
    );
}

/// `jgate call` as `key`; returns its standard error.
fn call_as(env: &Env, key: &str) -> String {
    let o = env.run(
        &["call", "get_job", "--controller", "prod", "--args", r#"{"job":"team/api"}"#],
        &[("JGATE_AGENT_KEY", key)],
    );
    assert!(!o.status.success(), "the agent has no grant: the call cannot succeed");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The agent lifecycle as an administrator scripts it: the name rule, key expiry (set, listed,
/// enforced), disable/enable, key rotation with and without an overlap, delete with grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_lifecycle_from_the_cli() {
    let env = Env::new();
    add_unreachable_controller(&env);
    let o = env.run(&["agent", "create", "Triage Bot"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("[a-z0-9][a-z0-9._-]{0,62}") && err.contains("e.g. triage-bot"),
        "{err}"
    );

    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let created = json_of(&env.ok(&["--json", "agent", "create", "bot", "--expires", "90d"], &[]));
    let key1 = created["key"].as_str().expect("key").to_string();
    let expires = created["expires_ms"].as_i64().expect("expires_ms");
    assert!((expires - before - 90 * 86_400_000).abs() < 60_000, "{created}");
    let listed = env.ok(&["agent", "list"], &[]);
    assert!(listed.contains("enabled") && listed.contains("valid, expires 20"), "{listed}");
    let listed = json_of(&env.ok(&["--json", "agent", "list"], &[]));
    assert_eq!(listed[0]["keys"][0]["expires_ms"], expires);
    assert_eq!(listed[0]["disabled"], false);
    assert!(call_as(&env, &key1).contains("denied"), "a valid key reaches the policy");

    // A key that expires in a second is refused after it, with the way out named.
    let short = json_of(&env.ok(&["--json", "agent", "key", "bot", "--expires", "1s"], &[]));
    let short_key = short["key"].as_str().expect("key").to_string();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let err = call_as(&env, &short_key);
    assert!(err.contains("expired at") && err.contains("jgate agent key rotate bot"), "{err}");
    assert!(env.ok(&["agent", "list"], &[]).contains("EXPIRED"));
    assert!(!env.run(&["agent", "create", "b2", "--expires", "soon"], &[]).status.success());

    env.ok(&["agent", "disable", "bot"], &[]);
    let err = call_as(&env, &key1);
    assert!(err.contains("agent bot is disabled"), "{err}");
    assert!(env.ok(&["agent", "list"], &[]).contains("DISABLED"));
    assert!(env.ok(&["agent", "disable", "bot"], &[]).contains("already disabled"));
    env.ok(&["agent", "enable", "bot"], &[]);
    assert!(call_as(&env, &key1).contains("denied"));

    // Rotation with an overlap: both keys work until it ends.
    let rotated = json_of(&env.ok(&["--json", "agent", "key", "rotate", "bot", "--overlap", "1h"], &[]));
    let key2 = rotated["key"].as_str().expect("key").to_string();
    assert!(rotated["retired"].as_array().is_some_and(|r| !r.is_empty()), "{rotated}");
    assert!(call_as(&env, &key1).contains("denied"), "the old key works during the overlap");
    assert!(call_as(&env, &key2).contains("denied"));
    assert!(env.ok(&["agent", "list"], &[]).contains("(rotated)"));
    // Without one: the old keys are revoked at once.
    let text = env.ok(&["agent", "key", "rotate", "bot"], &[]);
    assert!(text.contains("shown once") && text.contains("revoked: "), "{text}");
    assert!(call_as(&env, &key1).contains("revoked"));
    assert!(call_as(&env, &key2).contains("revoked"));

    env.ok(&["grant", "bot", "status", "read"], &[]);
    let o = env.run(&["agent", "delete", "bot"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--with-grants"), "{err}");
    let gone = json_of(&env.ok(&["--json", "agent", "delete", "bot", "--with-grants"], &[]));
    assert_eq!(gone["grants_removed"].as_array().map(Vec::len), Some(1), "{gone}");
    assert!(call_as(&env, &key2).contains("no agent has this key"));
    let audit = env.ok(&["audit", "--json"], &[]);
    for op in ["admin.agent.disable", "admin.agent.enable", "admin.agent.key.rotate", "admin.agent.delete"] {
        assert!(audit.contains(&format!("\"operation\":\"{op}\"")), "{op}");
    }
    for k in [&key1, &key2, &short_key] {
        assert!(!audit.contains(k.as_str()), "no agent key in the audit");
    }
    assert!(env.ok(&["audit", "verify"], &[]).contains("audit chain OK"));
}

/// `jgate access`: the matrix of groups × controllers, and for a job the grant that decides.
#[test]
fn access_shows_the_matrix_and_the_deciding_grant() {
    let env = Env::new();
    add_unreachable_controller(&env);
    env.ok(&["agent", "create", "bot"], &[]);
    env.ok(&["grant", "bot", "status", "read"], &[]);
    env.ok(&["grant", "bot", "build", "full", "--jobs", "release/**"], &[]);
    env.ok(&["grant", "bot", "build", "off", "--jobs", "release/prod-*", "--controller", "prod"], &[]);
    let o = env.run(&["grant", "bot", "status", "read", "--jobs", "job/team/job/api"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("write 'team/api'"), "{err}");

    let text = env.ok(&["access", "bot"], &[]);
    assert!(text.contains("agent bot (enabled, 1 valid key(s))"), "{text}");
    assert!(text.contains("Full — release/prod-* off, release/** full use, other jobs off"), "{text}");
    let status = text.lines().find(|l| l.starts_with("status")).expect("status row");
    assert!(status.ends_with("Read"), "{text}");
    assert!(text.lines().find(|l| l.starts_with("config")).is_some_and(|l| l.ends_with("Off")), "{text}");

    let v = json_of(&env.ok(&["access", "bot", "--json", "--job", "/job/release/job/prod-eu/"], &[]));
    assert_eq!(v["job"], "release/prod-eu");
    let build = v["explanations"]
        .as_array()
        .expect("explanations")
        .iter()
        .find(|e| e["group"] == "build")
        .expect("build")
        .clone();
    assert_eq!(build["write"]["decision"]["allowed"], false);
    assert_eq!(build["write"]["decision"]["grant"], 3);
    let text = env.ok(&["access", "bot", "--job", "release/prod-eu"], &[]);
    assert!(text.contains("→ grant 3") && text.contains("grant 3 is more specific"), "{text}");
    let text = env.ok(&["access", "bot", "--job", "release/dev"], &[]);
    assert!(text.contains("build   reads n/a, changes allowed"), "{text}");
    assert!(!env.run(&["access", "nobody"], &[]).status.success());
}

/// MCP tools/list over stdio: an agent scoped to one folder is not offered the controller-wide
/// tools (queue, views), nor tools of groups it has no grant in; a grant on all jobs brings them.
#[test]
fn mcp_lists_only_tools_the_agent_could_use() {
    use std::io::{BufRead, Write};
    let env = Env::new();
    let created = json_of(&env.ok(&["--json", "agent", "create", "team-bot"], &[]));
    let key = created["key"].as_str().expect("key").to_string();
    env.ok(&["grant", "team-bot", "status", "read", "--jobs", "team/**"], &[]);
    let tools = |env: &Env| -> Vec<serde_json::Value> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jgate"))
            .arg("mcp")
            .env("JGATE_DATA_DIR", &env.dir)
            .env_remove("JGATE_MASTER_KEY")
            .env_remove("JGATE_DB")
            .env_remove("JGATE_AUDIT_FILE")
            .env("JGATE_AGENT_KEY", &key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("jgate mcp");
        let mut stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let send = |stdin: &mut std::process::ChildStdin, v: serde_json::Value| {
            writeln!(stdin, "{v}").expect("write");
            stdin.flush().expect("flush");
        };
        send(
            &mut stdin,
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}),
        );
        let mut answer = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut sent_list = false;
        while answer.is_none() && std::time::Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(30)) else { break };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["id"] == 1 && !sent_list {
                send(&mut stdin, serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
                send(&mut stdin, serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
                sent_list = true;
            } else if v["id"] == 2 {
                answer = Some(v);
            }
        }
        drop(stdin);
        let _ = child.kill();
        let _ = child.wait();
        let answer = answer.expect("tools/list answered");
        answer["result"]["tools"].as_array().expect("tools").clone()
    };
    let names = |tools: &[serde_json::Value]| -> Vec<String> {
        tools.iter().filter_map(|t| t["name"].as_str().map(str::to_string)).collect()
    };
    // What read_more offers (its `what` choices).
    let grouped = |tools: &[serde_json::Value]| -> Vec<String> {
        tools
            .iter()
            .find(|t| t["name"] == "read_more")
            .and_then(|t| t["inputSchema"]["properties"]["what"]["enum"].as_array())
            .map(|e| e.iter().filter_map(|w| w.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let listed = tools(&env);
    let (names_now, offered) = (names(&listed), grouped(&listed));
    for shown in ["whoami", "list_jobs", "get_job", "get_build_log"] {
        assert!(names_now.iter().any(|n| n == shown), "{shown} missing from {names_now:?}");
    }
    for hidden in ["get_queue", "list_views", "trigger_build", "list_nodes", "get_job_config"] {
        assert!(!names_now.iter().any(|n| n == hidden), "{hidden} must not be listed: {names_now:?}");
        assert!(!offered.iter().any(|n| n == hidden), "{hidden} must not be offered by read_more: {offered:?}");
    }
    // Grouped reads of jobs in its folder are offered through read_more.
    assert!(offered.iter().any(|n| n == "compare_builds"), "{offered:?}");
    env.ok(&["grant", "team-bot", "status", "read"], &[]);
    let offered = grouped(&tools(&env));
    // The queue is a grouped read: a grant on all jobs allows it, through read_more.
    assert!(offered.iter().any(|n| n == "get_queue"), "a grant on all jobs allows the queue: {offered:?}");
}

/// `jgate serve`: a disabled agent's key is refused exactly like a revoked key (401,
/// `invalid_token`, the reason in the description), by a server that was already running when
/// the change was made in another process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_disabled_agent_like_a_revoked_key() {
    use std::io::BufRead;
    let env = Env::new();
    let key_of = |name: &str| {
        let created = json_of(&env.ok(&["--json", "agent", "create", name], &[]));
        created["key"].as_str().expect("key").to_string()
    };
    let (disabled, revoked) = (key_of("paused-bot"), key_of("revoked-bot"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_jgate"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("JGATE_DATA_DIR", &env.dir)
        .env_remove("JGATE_MASTER_KEY")
        .env_remove("JGATE_DB")
        .env_remove("JGATE_AUDIT_FILE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("jgate serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    std::io::BufReader::new(stdout).read_line(&mut first).expect("ready line");
    let base = first.split_whitespace().find(|w| w.starts_with("http://")).expect("address").to_string();
    let client = reqwest::Client::new();
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
    let post = |key: String| {
        let client = client.clone();
        let url = format!("{base}/mcp");
        let init = init.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .header("Accept", "application/json, text/event-stream")
                .json(&init)
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            let challenge =
                r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            (status, challenge, r.text().await.unwrap_or_default())
        }
    };
    assert_eq!(post(disabled.clone()).await.0, 200);
    assert_eq!(post(revoked.clone()).await.0, 200);
    env.ok(&["agent", "disable", "paused-bot"], &[]);
    env.ok(&["agent", "revoke", "revoked-bot"], &[]);
    // Within the caches' second (and some slack for a loaded machine).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (s1, c1, b1) = post(disabled).await;
    let (s2, c2, b2) = post(revoked).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((s1, s2), (401, 401), "{b1} {b2}");
    assert_eq!(c1, c2, "the same challenge");
    let (j1, j2) = (json_of(&b1), json_of(&b2));
    assert_eq!(j1["error"], "invalid_token");
    assert_eq!(j2["error"], "invalid_token");
    assert!(j1["error_description"].as_str().is_some_and(|d| d.contains("agent paused-bot is disabled")), "{b1}");
    assert!(j2["error_description"].as_str().is_some_and(|d| d.contains("was revoked")), "{b2}");
}

/// `jgate controller update` through its flags, against the twin: a new token from a file or
/// from standard input (with a new user), the timeout, the allow-list replaced or emptied, a
/// failing test that stores nothing, `--force`, the egress guard; then removal while grants name
/// the controller (a conflict, exit 8). Self-contained: its own helpers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_update_through_its_flags() {
    use std::io::Write;
    const BOT_TOKEN: &str = "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let (_twin, server) = jenkins_twin::start(
        "[controller]\nquiet_period = 0\n",
        &[("admin".into(), "admin".into(), TOKEN.into()), ("bot".into(), "bot".into(), BOT_TOKEN.into())],
    )
    .await
    .expect("twin");
    let env = Env::new();
    let port = server.addr().port();
    let allow = format!("127.0.0.1:{port}");
    let url = server.url();
    env.ok(
        &[
            "controller",
            "add",
            "prod",
            "--url",
            &url,
            "--username",
            "admin",
            "--token-env",
            "T",
            "--allow-private",
            &allow,
        ],
        &[("T", TOKEN)],
    );
    let stored = || {
        let list = json_of(&env.ok(&["--json", "controller", "list"], &[]));
        list.as_array().and_then(|a| a.first()).cloned().expect("one controller")
    };
    let tested_user = || json_of(&env.ok(&["--json", "controller", "test", "prod"], &[]))["user"].clone();
    let json_err = |o: &Output| {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let line = err.lines().find(|l| l.starts_with('{')).map(str::to_string);
        json_of(&line.unwrap_or_else(|| panic!("no JSON error: {err}")))
    };
    let before = stored();

    // A token the test rejects: auth (exit 5), nothing stored, the old token still works.
    let o = env.run(
        &["--json", "controller", "update", "prod", "--token-env", "T"],
        &[("T", "11wrongwrongwrongwrongwrongwrong00")],
    );
    assert_eq!(o.status.code(), Some(5), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json_err(&o)["error"]["kind"], "auth");
    assert_eq!(stored(), before, "a failing test stores nothing");
    assert_eq!(tested_user(), "admin");

    // --token-file with a new user.
    let file = env.dir.join("bot-token.txt");
    std::fs::write(&file, format!("{BOT_TOKEN}\n")).expect("write");
    let updated = json_of(&env.ok(
        &["--json", "controller", "update", "prod", "--username", "bot", "--token-file", &file.display().to_string()],
        &[],
    ));
    assert_eq!(updated["user"], "bot", "{updated}");
    assert_eq!(stored()["username"], "bot");
    assert_eq!(tested_user(), "bot", "the new token is the one used");

    // --token-stdin, back to the first user; the token never appears in the output.
    let mut child = Command::new(env!("CARGO_BIN_EXE_jgate"))
        .args(["--json", "controller", "update", "prod", "--username", "admin", "--token-stdin"])
        .env("JGATE_DATA_DIR", &env.dir)
        .env_remove("JGATE_MASTER_KEY")
        .env_remove("JGATE_DB")
        .env_remove("JGATE_AUDIT_FILE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(format!("{TOKEN}\n").as_bytes()).expect("write token");
    let o = child.wait_with_output().expect("wait");
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{all}");
    assert!(!all.contains(TOKEN), "the token is never printed");
    assert_eq!(json_of(&String::from_utf8_lossy(&o.stdout))["user"], "admin");
    assert_eq!(tested_user(), "admin");

    // --timeout: set, then back to the default with 0.
    env.ok(&["controller", "update", "prod", "--timeout", "45"], &[]);
    assert_eq!(stored()["timeout_secs"], 45);
    env.ok(&["controller", "update", "prod", "--timeout", "0"], &[]);
    assert_eq!(stored()["timeout_secs"], serde_json::Value::Null);

    // The allow-list: emptied, the loopback twin is refused by the egress guard (denied, exit 4),
    // even with --force, which cannot help; nothing stored.
    for force in [false, true] {
        let mut args = vec!["--json", "controller", "update", "prod", "--no-allow-private"];
        if force {
            args.push("--force");
        }
        let o = env.run(&args, &[]);
        assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
        let e = json_err(&o);
        assert_eq!(e["error"]["kind"], "denied", "{e}");
        assert!(e["error"]["fix"].as_str().is_some_and(|f| f.contains(&format!("--allow-private {allow}"))), "{e}");
        assert_eq!(stored()["allow_private"], serde_json::json!([allow]), "force={force}: nothing stored");
    }
    // Replaced by another entry that covers the twin.
    env.ok(&["controller", "update", "prod", "--allow-private", "127.0.0.0/8"], &[]);
    assert_eq!(stored()["allow_private"], serde_json::json!(["127.0.0.0/8"]));
    assert_eq!(tested_user(), "admin");
    // A cloud metadata address: denied, and no allow-list advice.
    let o = env.run(&["--json", "controller", "update", "prod", "--url", "http://169.254.169.254/"], &[]);
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json_err(&o)["error"]["fix"], serde_json::Value::Null);

    // A URL where nothing answers: refused (unreachable, exit 6) and nothing stored ...
    let dead = "http://127.0.0.1:9/";
    let o = env.run(&["--json", "controller", "update", "prod", "--url", dead], &[]);
    assert_eq!(o.status.code(), Some(6), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"), "the error mentions --force");
    assert_eq!(stored()["url"], before["url"]);
    // ... unless --force: stored without a passing test, and said so.
    let forced = env.ok(&["controller", "update", "prod", "--url", dead, "--force"], &[]);
    assert!(forced.contains("stored without a passing connection test (--force)"), "{forced}");
    assert_eq!(stored()["url"], dead);
    // Back to the twin.
    env.ok(&["controller", "update", "prod", "--url", &url], &[]);
    assert_eq!(tested_user(), "admin");

    // Removal while a grant names the controller: a conflict (exit 8), with the way out.
    env.ok(&["agent", "create", "reader"], &[]);
    env.ok(&["grant", "reader", "status", "read", "--controller", "prod"], &[]);
    let o = env.run(&["--json", "controller", "remove", "prod"], &[]);
    assert_eq!(o.status.code(), Some(8), "{}", String::from_utf8_lossy(&o.stderr));
    let e = json_err(&o);
    assert_eq!(e["error"]["kind"], "conflict", "{e}");
    assert!(e["error"]["fix"].as_str().is_some_and(|f| f.contains("--with-grants")), "{e}");
    env.ok(&["controller", "remove", "prod", "--with-grants"], &[]);
    assert_eq!(env.ok(&["--json", "controller", "list"], &[]).trim(), "[]");
}

/// `jgate agent limits`: shown (none by default), set, one kept when the other is set, in `agent
/// list` and `access`, enforced on `jgate call` (exit 11, kind `limited`), cleared; a grant's
/// `--max-per-hour`; every change audited.
#[test]
fn agent_limits_are_set_shown_enforced_and_cleared_from_the_cli() {
    let env = Env::new();
    add_unreachable_controller(&env);
    let created = json_of(&env.ok(&["--json", "agent", "create", "bot"], &[]));
    let key = created["key"].as_str().expect("key").to_string();
    env.ok(&["grant", "bot", "status", "read"], &[]);
    let shown = env.ok(&["agent", "limits", "bot"], &[]);
    assert!(shown.contains("bot's limits: no limits") && shown.contains("recommended"), "{shown}");

    let set = json_of(
        &env.ok(&["--json", "agent", "limits", "bot", "--calls-per-minute", "1", "--triggers-per-hour", "5"], &[]),
    );
    assert_eq!(set["changed"], true, "{set}");
    assert_eq!(set["limits"], serde_json::json!({"calls_per_minute": 1, "triggers_per_hour": 5}));
    let set = json_of(&env.ok(&["--json", "agent", "limits", "bot", "--triggers-per-hour", "7"], &[]));
    assert_eq!(
        set["limits"],
        serde_json::json!({"calls_per_minute": 1, "triggers_per_hour": 7}),
        "one flag keeps the other"
    );
    let shown = env.ok(&["agent", "limits", "bot"], &[]);
    assert!(shown.contains("bot's limits: 1 call per minute, 7 triggers per hour"), "{shown}");
    assert!(env.ok(&["agent", "list"], &[]).contains("1/min, 7 triggers/h"));
    assert!(env.ok(&["access", "bot"], &[]).contains("rate limits: 1 call per minute, 7 triggers per hour"));
    let o = env.run(&["agent", "limits", "bot", "--calls-per-minute", "0"], &[]);
    assert_eq!(o.status.code(), Some(2), "0 is refused");

    // The first call of the minute reaches the (unreachable) controller; within the same minute
    // the next is refused. Three calls: whichever minute they fall in, one of the last two is.
    let call = || {
        env.run(
            &["--json", "call", "get_job", "--controller", "prod", "--args", r#"{"job":"team/api"}"#],
            &[("JGATE_AGENT_KEY", key.as_str())],
        )
    };
    let first = call();
    assert_ne!(first.status.code(), Some(11), "{}", String::from_utf8_lossy(&first.stderr));
    let limited: Vec<Output> = [call(), call()].into_iter().filter(|o| o.status.code() == Some(11)).collect();
    let o = limited.first().expect("a call over the limit exits 11");
    let err = json_of(String::from_utf8_lossy(&o.stderr).trim());
    assert_eq!(err["error"]["kind"], "limited", "{err}");
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("refused: bot's limit of 1 call per minute is reached; the next is allowed in"),
        "{err}"
    );
    let fix = err["error"]["fix"].as_str().unwrap_or_default();
    assert!(fix.contains("jgate agent limits bot --calls-per-minute N"), "{err}");

    let cleared = env.ok(&["agent", "limits", "bot", "--clear"], &[]);
    assert!(cleared.contains("bot's limits are now: no limits"), "{cleared}");
    assert!(json_of(&env.ok(&["--json", "agent", "list"], &[]))[0]["limits"]["calls_per_minute"].is_null());
    let after = call();
    assert_ne!(after.status.code(), Some(11), "no limit after --clear");

    let gr = json_of(
        &env.ok(&["--json", "grant", "bot", "build", "full", "--jobs", "release/**", "--max-per-hour", "5"], &[]),
    );
    assert_eq!(gr["max_per_hour"], 5, "{gr}");
    assert!(env.ok(&["grants", "bot"], &[]).contains("at most 5 calls per hour"));

    let audit = env.ok(&["audit"], &[]);
    assert!(
        audit.contains("ops-admin (local CLI) set the rate limits of agent bot to 1 call per minute, 5 triggers per hour (before: no limits)"),
        "{audit}"
    );
    assert!(audit.contains("set the rate limits of agent bot to no limits"), "{audit}");
    assert!(
        audit.contains("was denied reading job team/api on prod: refused: bot's limit of 1 call per minute"),
        "{audit}"
    );
}
