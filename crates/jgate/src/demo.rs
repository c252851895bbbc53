//! `jgate demo`: starts the Jenkins twin with the demo scenario and walks through what a Jenkins
//! client sees: the job tree, a failing build's log, a triggered build followed from its queue
//! item to its result and stages, and a refused call. (The agent-facing demo comes with the MCP
//! server.)

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

#[derive(Args)]
pub struct DemoArgs {
    /// Keep the twin running after the tour and print how to reach it.
    #[arg(long)]
    serve: bool,
    /// Address for the twin (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: std::net::SocketAddr,
}

const ADMIN: (&str, &str) = ("admin", "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let sc = crate::twin_cmd::load_scenario(Some("demo"))?;
    let admin = vec![(ADMIN.0.to_string(), "admin".to_string(), ADMIN.1.to_string())];
    let twin = jenkins_twin::Twin::new(&sc, &admin)?;
    let server = twin.serve(args.addr).await.context("cannot start the twin")?;
    let base = server.url();
    println!("jgate demo — the Jenkins twin (a simulated controller) is listening on {base}\n");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let resp = http.get(&url).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await?;
            let status = resp.status();
            if !status.is_success() {
                bail!("GET {url}: {status}");
            }
            anyhow::Ok(resp)
        }
    };

    let root: Value =
        get("/api/json?tree=jobs[name,color,jobs[name,color,jobs[name,color]]]".into()).await?.json().await?;
    println!("1. Jobs (GET /api/json?tree=jobs[name,color,jobs[...]]):");
    print_tree(&root["jobs"], 1);

    let log = get("/job/team-api/job/api-server/lastFailedBuild/logText/progressiveText?start=0".into()).await?;
    let size = log.headers().get("X-Text-Size").and_then(|v| v.to_str().ok()).unwrap_or("?").to_string();
    drop(log);
    let text = get("/job/team-api/job/api-server/2/consoleText".into()).await?.text().await?;
    let tail: Vec<&str> = text.lines().rev().take(4).collect();
    println!("\n2. The last failed build of team-api/api-server has a {size}-byte log; its last lines:");
    for l in tail.into_iter().rev() {
        println!("     {l}");
    }

    println!("\n3. Triggering release/deploy-production with ENV=staging (POST buildWithParameters):");
    let resp = http
        .post(format!("{base}/job/release/job/deploy-production/buildWithParameters"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .form(&[("ENV", "staging")])
        .send()
        .await?;
    let location = resp.headers().get("Location").and_then(|v| v.to_str().ok()).map(str::to_string);
    let Some(location) = location else { bail!("no Location header on the trigger response ({})", resp.status()) };
    println!("   {} Location: {location}", resp.status());
    let mut number = None;
    for _ in 0..120 {
        let item: Value =
            http.get(format!("{location}api/json")).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await?.json().await?;
        if let Some(n) = item["executable"]["number"].as_u64() {
            number = Some(n);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let Some(number) = number else { bail!("the queue item did not start a build within 30 s") };
    println!("   the queue item became build #{number}; waiting for it to finish...");
    let mut result = Value::Null;
    for _ in 0..240 {
        let b: Value = get(format!("/job/release/job/deploy-production/{number}/api/json?tree=result,building"))
            .await?
            .json()
            .await?;
        if b["building"] == Value::Bool(false) {
            result = b["result"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let run: Value = get(format!("/job/release/job/deploy-production/{number}/wfapi/describe")).await?.json().await?;
    println!("   result: {result}; stages (wfapi):");
    if let Some(stages) = run["stages"].as_array() {
        for s in stages {
            println!(
                "     {:<8} {:<10} {} ms",
                s["name"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or(""),
                s["durationMillis"]
            );
        }
    }

    let denied = http
        .post(format!("{base}/job/release/job/deploy-production/buildWithParameters"))
        .basic_auth("viewer", Some("11dddddddddddddddddddddddddddddddd"))
        .send()
        .await?;
    let needed = denied.headers().get("X-Required-Permission").and_then(|v| v.to_str().ok()).unwrap_or("?").to_string();
    println!("\n4. The read-only user 'viewer' tries the same: {} (X-Required-Permission: {needed})", denied.status());

    if args.serve {
        println!("\nThe twin keeps running at {base} (admin / {}; viewer / viewer). Ctrl-C stops it.", ADMIN.1);
        tokio::select! {
            _ = server.wait() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    } else {
        println!("\nDone. `jgate twin serve --scenario demo --user admin:admin:{}` serves this controller.", ADMIN.1);
    }
    Ok(())
}

fn print_tree(jobs: &Value, depth: usize) {
    let Some(list) = jobs.as_array() else { return };
    for j in list {
        let color = j["color"].as_str().map(|c| format!(" ({c})")).unwrap_or_default();
        println!("{}{}{color}", "   ".repeat(depth), j["name"].as_str().unwrap_or("?"));
        print_tree(&j["jobs"], depth + 1);
    }
}
