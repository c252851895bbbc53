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
    for _ in 0..2 {
        let rotated = env.ok(&["key", "rotate"], &[]);
        assert!(rotated.contains("re-wrapped 1"), "{rotated}");
        assert!(env.ok(&["controller", "test", "prod"], &[]).contains("OK"), "the rotated key opens the token");
    }
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
