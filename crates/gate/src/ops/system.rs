//! Nodes and the controller itself (groups `nodes` and `system`).

use serde_json::{Value, json};

use super::status::NoArgs;
use super::{Exec, Need, Op};
use crate::catalog::Operation;
use crate::error::GateError;

pub struct ListNodes;

impl Op for ListNodes {
    type Args = NoArgs;
    const META: Operation = crate::op!("list_nodes", Nodes, Read, Controller, destructive: false, idempotent: true,
        routes: ["GET /computer/api/json"], cli: "nodes list", phrase: "listed the nodes of",
        "List nodes (agents): online/offline, executors, labels.");

    fn needs(_: &NoArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, None)]
    }

    async fn run(cx: &mut Exec<'_>, _: NoArgs) -> Result<Value, GateError> {
        let n = cx.client.nodes().await?;
        Ok(
            json!({ "nodes": n.computer.iter().take(1000).map(|c| json!({"name": c.display_name, "offline": c.offline, "executors": c.num_executors, "idle": c.idle, "offline_reason": c.offline_cause_reason})).collect::<Vec<_>>() }),
        )
    }
}

pub struct GetSystemInfo;

impl Op for GetSystemInfo {
    type Args = NoArgs;
    const META: Operation = crate::op!("get_system_info", System, Read, Controller, destructive: false, idempotent: true, grouped: true,
        routes: ["GET /", "GET /api/json", "GET /pluginManager/api/json"], cli: "system info", phrase: "read the version and plugins of",
        "Show the Jenkins version, quiet-down state and installed plugins.");

    fn needs(_: &NoArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, None)]
    }

    async fn run(cx: &mut Exec<'_>, _: NoArgs) -> Result<Value, GateError> {
        let (root, version) =
            cx.client.root_info(Some(&jenkins::tree::Tree::new().fields(&["quietingDown", "useSecurity"]))).await?;
        let caps = cx.client.capabilities().await?;
        Ok(json!({ "version": version, "quieting_down": root.quieting_down,
                "plugins": if caps.plugins_visible { Some(caps.plugins.iter().map(|p| format!("{}@{}", p.short_name, p.version)).collect::<Vec<_>>()) } else { None } }))
    }
}
