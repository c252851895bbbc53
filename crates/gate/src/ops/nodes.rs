//! One node in detail (group `nodes`): executors, offline cause, labels, and what it runs —
//! named only for builds of jobs the agent may see.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Exec, Need, Op, owner_from_url};
use crate::catalog::Operation;
use crate::error::GateError;

pub struct GetNode;

/// Arguments of `get_node`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeArgs {
    /// The node's name as list_nodes shows it; "built-in" for the controller itself.
    pub name: String,
}

impl Op for GetNode {
    type Args = NodeArgs;
    const META: Operation = crate::op!("get_node", Nodes, Read, Controller, destructive: false, idempotent: true, grouped: true,
        routes: ["GET /computer/{node}/api/json"], cli: "nodes show", phrase: "read the detail of a node of",
        "Show one node: executors busy and idle, offline cause, labels, and the builds it runs (those of jobs you may see).");

    fn needs(_: &NodeArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, None)]
    }

    async fn run(cx: &mut Exec<'_>, a: NodeArgs) -> Result<Value, GateError> {
        let name = a.name.trim();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(super::bad_request("name must be a node's name (1 to 200 characters), or built-in"));
        }
        let n = cx.client.node_detail(name).await?;
        let base = cx.client.base_url().as_url().clone();
        let executors: Vec<&Value> = ["executors", "oneOffExecutors"]
            .iter()
            .filter_map(|k| n.get(*k).and_then(Value::as_array))
            .flatten()
            .collect();
        let regular = n.get("executors").and_then(Value::as_array).map_or(0, Vec::len);
        let (mut busy, mut running, mut hidden, mut unnamed) = (0, Vec::new(), 0, 0);
        for e in executors.iter().take(500) {
            let current = e.get("currentExecutable").filter(|c| !c.is_null());
            let Some(current) = current else { continue };
            busy += 1;
            let url = current.get("url").and_then(Value::as_str);
            match url.and_then(|u| build_of(&base, u)) {
                Some((job, number)) if cx.may_see(&job) => running.push(json!({"job": job, "number": number})),
                Some(_) => hidden += 1,
                // A Pipeline's placeholder task (or an answer without a URL): the owner is unknown.
                None => unnamed += 1,
            }
        }
        let idle_regular =
            executors.iter().take(regular).filter(|e| e.get("currentExecutable").is_none_or(Value::is_null)).count();
        let labels: Vec<&str> = n
            .get("assignedLabels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| l.get("name").and_then(Value::as_str))
            .take(100)
            .collect();
        let offline = n.get("offline").and_then(Value::as_bool).unwrap_or(false);
        let cause = n
            .get("offlineCauseReason")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| n.pointer("/offlineCause/description").and_then(Value::as_str));
        Ok(json!({
            "name": n.get("displayName"),
            "offline": offline,
            "temporarily_offline": n.get("temporarilyOffline"),
            "offline_cause": if offline { json!(cause) } else { Value::Null },
            "executors": n.get("numExecutors"),
            "busy": busy,
            "idle": idle_regular,
            "labels": labels,
            "running": running,
            "running_hidden": hidden,
            "running_unknown_owner": unnamed,
            "untrusted": true,
        }))
    }
}

/// The job and number a build URL designates (`…/job/a/job/b/12/`), relative to the controller.
fn build_of(base: &url::Url, url: &str) -> Option<(String, u64)> {
    let trimmed = url.trim_end_matches('/');
    let (job_url, number) = trimmed.rsplit_once('/')?;
    let number = number.parse().ok()?;
    Some((owner_from_url(base, &format!("{job_url}/"))?, number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_urls_name_their_job_and_number() {
        let base = url::Url::parse("http://ci/jenkins/").expect("url");
        assert_eq!(build_of(&base, "http://ci/jenkins/job/a/job/b/12/"), Some(("a/b".into(), 12)));
        assert_eq!(build_of(&base, "http://ci/jenkins/job/a/"), None);
        assert_eq!(build_of(&base, "http://elsewhere/job/a/3/"), None);
    }
}
