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
    let lines = env.ok(&["audit", "--json", "--agent", "triage-bot", "--denied"], &[]);
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(env.ok(&["audit", "verify"], &[]).contains("audit chain OK: 2 records"));
    let cp = env.ok(&["audit", "checkpoint"], &[]);
    assert!(cp.starts_with("2 "), "{cp}");

    let revoked = env.ok(&["agent", "revoke", "triage-bot"], &[]);
    assert!(revoked.contains("revoked 1 key"));
    let o = env.run(
        &["call", "get_job", "--controller", "prod", "--args", r#"{"job":"team/api"}"#],
        &[("JGATE_AGENT_KEY", &key)],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("revoked"));

    let rotated = env.ok(&["key", "rotate"], &[]);
    assert!(rotated.contains("re-wrapped 1"), "{rotated}");
    assert!(env.ok(&["controller", "test", "prod"], &[]).contains("OK"), "the rotated key opens the token");
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
    assert!(verified.contains("audit chain OK: 24 records"), "{verified}");
}
