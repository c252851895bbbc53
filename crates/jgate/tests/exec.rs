//! `jgate exec` end to end: the real binary runs a command (curl, as the integration guides use
//! it) against `jgate serve`'s Jenkins proxy with a token made for the run.

mod common;

use common::{Env, TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_gets_a_proxy_only_token_that_ends_with_it() {
    let toml = "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"team/api\"\nscript = \"echo hi\"\n";
    let (_twin, server) =
        jenkins_twin::start(toml, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let env = Env::new("exec", None);
    env.add_twin("prod", &server.url(), server.addr().port());
    let key = env.agent("ci-bot");
    env.ok(&["grant", "ci-bot", "status", "read"]);
    let serve = env.serve(&[]);
    let base = serve.base.clone();

    // The command reports what it was given and what the token can reach, then exits with 7.
    let script = r#"
printf '%s\n' "$JENKINS_URL" "$JENKINS_USER" "$JENKINS_TOKEN" "${JGATE_AGENT_KEY:-no-agent-key}"
curl -s -o /dev/null -w '%{http_code}\n' -u "$JENKINS_USER:$JENKINS_TOKEN" "${JENKINS_URL}job/team/job/api/api/json"
curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $JENKINS_TOKEN" \
  -H 'Accept: application/json, text/event-stream' -H 'Content-Type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}' \
  "$JGATE_FOR_TEST/mcp"
curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $JENKINS_TOKEN" -H 'Content-Type: application/json' \
  -d '{"ttl_secs":600}' "$JGATE_FOR_TEST/exec-tokens"
exit 7
"#;
    let out = env
        .command()
        .args(["exec", "--url", &base, "--ttl", "10m", "--", "sh", "-c", script])
        .env("JGATE_AGENT_KEY", &key)
        .env("JGATE_FOR_TEST", &base)
        .output()
        .expect("jgate exec");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        out.status.code(),
        Some(7),
        "the command's exit code is jgate exec's:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines.first().copied(), Some(format!("{base}/jenkins/prod/").as_str()), "{stdout}");
    assert_eq!(lines.get(1).copied(), Some("ci-bot"));
    let token = lines.get(2).copied().unwrap_or_default().to_string();
    assert!(token.starts_with("jgate_") && token != key, "a token of its own, not the agent key: {stdout}");
    assert_eq!(lines.get(3).copied(), Some("no-agent-key"), "the agent's key is not passed to the command");
    assert_eq!(lines.get(4).copied(), Some("200"), "the token works through the proxy: {stdout}");
    assert_eq!(lines.get(5).copied(), Some("401"), "the token does not open MCP: {stdout}");
    assert_eq!(lines.get(6).copied(), Some("401"), "the run's token cannot mint another token: {stdout}");

    // After the command: the token is revoked.
    let after = reqwest::Client::new()
        .get(format!("{base}/jenkins/prod/api/json"))
        .basic_auth("ci-bot", Some(&token))
        .send()
        .await
        .expect("request");
    assert_eq!(after.status().as_u16(), 401, "the run's token must end with the run");
    // The token endpoint with a malformed request: refused, nothing minted (the audit below holds
    // one start and one end only).
    let http = reqwest::Client::new();
    for body in [
        "",
        "not json",
        "{\"ttl_secs\": \"1h\"}",
        "{\"ttl_secs\": -5}",
        "[600]",
        "{\"ttl_secs\": 0}",
        "{\"ttl_secs\": 60, \"agent\": \"other\"}",
    ] {
        let r = http
            .post(format!("{base}/exec-tokens"))
            .bearer_auth(&key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 400, "body {body:?}");
        let text = r.text().await.expect("body");
        assert!(!text.contains("jgate_"), "no token in a refusal: {text}");
    }
    let r = http.post(format!("{base}/exec-tokens")).body("{\"ttl_secs\": 60}").send().await.expect("request");
    assert_eq!(r.status().as_u16(), 401, "no key, no token");
    drop(serve);

    let audit = env.ok(&["audit", "--agent", "ci-bot"]);
    assert!(audit.contains("started a `jgate exec` run"), "{audit}");
    assert!(audit.contains("ended the `jgate exec` run"), "{audit}");
    assert_eq!(audit.matches("started a `jgate exec` run").count(), 1, "one token was minted: {audit}");
    assert!(!audit.contains(&token) && !audit.contains(&key), "no secret in the audit");

    // Without a key, or with an unknown controller, nothing runs.
    let no_key = env.command().args(["exec", "--url", &base, "--", "true"]).output().expect("exec");
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("JGATE_AGENT_KEY"));
    env.remove();
}
