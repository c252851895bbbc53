//! `jgate call pipeline replay`: the script comes from `--script-file PATH` or standard input,
//! never from `--args`, and it is not in the audit the CLI shows.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const TOKEN: &str = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const MARKER: &str = "CLI-REPLAY-MARKER-51";

fn jgate(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jgate"));
    c.args(args)
        .env("JGATE_DATA_DIR", dir)
        .env_remove("JGATE_MASTER_KEY")
        .env_remove("JGATE_DB")
        .env_remove("JGATE_AUDIT_FILE")
        .env("USER", "ops-admin")
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("run jgate");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("jgate output")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_comes_from_a_file_or_stdin_and_stays_out_of_the_audit() {
    let toml = "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"pipe\"\nkind = \"pipeline\"\nscript = \"node { echo 'original' }\"\n[[jobs.builds]]\nresult = \"SUCCESS\"\n";
    let (_twin, server) =
        jenkins_twin::start(toml, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let dir = std::env::temp_dir().join(format!("jgate-cli-replay-{}", std::process::id()));
    let allow = format!("127.0.0.1:{}", server.addr().port());
    let tok = [("JENKINS_TOKEN_FOR_TEST", TOKEN)];
    let add = [
        "controller",
        "add",
        "prod",
        "--url",
        &server.url(),
        "--username",
        "admin",
        "--token-env",
        "JENKINS_TOKEN_FOR_TEST",
        "--allow-private",
        &allow,
    ];
    ok(&jgate(&dir, &add, &tok, None));
    let created: serde_json::Value =
        serde_json::from_str(&ok(&jgate(&dir, &["--json", "agent", "create", "bot"], &[], None))).expect("json");
    let key = created["key"].as_str().expect("key").to_string();
    for (group, level) in [("status", "read"), ("build", "full"), ("config", "full")] {
        ok(&jgate(&dir, &["grant", "bot", group, level], &[], None));
    }
    let agent = [("JGATE_AGENT_KEY", key.as_str())];
    let script = format!("node {{ echo '{MARKER}' }}");
    let args = r#"{"job":"pipe","build":1}"#;

    // Not as a command-line value.
    let inline = format!(r#"{{"job":"pipe","build":1,"script":"{MARKER}"}}"#);
    let o = jgate(&dir, &["call", "pipeline", "replay", "--args", &inline], &agent, None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--script-file"), "{o:?}");
    let o = jgate(&dir, &["call", "pipeline", "replay", "--args", args], &agent, None);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--script-file"), "{o:?}");

    // From standard input, then from a file.
    let v: serde_json::Value = serde_json::from_str(&ok(&jgate(
        &dir,
        &["call", "pipeline", "replay", "--args", args, "--script-file", "-"],
        &agent,
        Some(&script),
    )))
    .expect("json");
    assert_eq!(v["replayed_from"], 1, "{v}");
    assert_eq!(v["build"]["number"], 2, "{v}");
    let file = dir.join("Jenkinsfile.fix");
    std::fs::write(&file, &script).expect("script file");
    let path = file.display().to_string();
    let v: serde_json::Value = serde_json::from_str(&ok(&jgate(
        &dir,
        &["call", "pipeline", "replay", "--args", args, "--script-file", &path],
        &agent,
        None,
    )))
    .expect("json");
    assert_eq!(v["build"]["number"], 3, "{v}");

    let audit = ok(&jgate(&dir, &["audit", "--json"], &[], None));
    assert!(audit.contains("replay"), "{audit}");
    assert!(!audit.contains(MARKER), "the script is in the audit");
    let _ = std::fs::remove_dir_all(&dir);
}
