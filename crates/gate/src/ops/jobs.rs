//! Creating, copying and deleting jobs (group `jobs`).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::ConfigArgs;
use super::status::JobArgs;
use super::{Exec, Need, Op};
use crate::catalog::{Access, Group, Operation, Target};
use crate::error::GateError;

pub struct CreateJob;

impl Op for CreateJob {
    type Args = ConfigArgs;
    const META: Operation = crate::op!("create_job", Jobs, Write, Job, destructive: false, idempotent: false,
        routes: ["POST /createItem?name={name}", "POST /{folder}/createItem?name={name}"], cli: "job create",
        phrase: "created job", "Create a job from a config.xml, at the root or in a folder.");

    fn needs(a: &ConfigArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: ConfigArgs) -> Result<Value, GateError> {
        let jp = cx.path(0)?;
        cx.client.create_job(jp.parent().as_ref(), jp.name(), &a.config_xml).await?;
        Ok(json!({ "created": jp.to_string() }))
    }
}

pub struct CopyJob;

/// Arguments of `copy_job`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyArgs {
    /// The new job's full name, folders separated by '/'.
    pub job: String,
    /// The full name of the job to copy.
    pub from: String,
}

impl Op for CopyJob {
    type Args = CopyArgs;
    const META: Operation = crate::op!("copy_job", Jobs, Write, Job, destructive: false, idempotent: false,
        routes: ["POST /createItem?name={name}&mode=copy&from={from}", "POST /{folder}/createItem?name={name}&mode=copy&from={from}"],
        cli: "job copy", phrase: "copied a job to",
        "Copy an existing job to a new name. Needs the right to create the new job and to read the source's configuration.");

    /// A copy reveals the source's whole configuration, so the source needs `config read` — not
    /// just visibility — and the destination needs `jobs full use`.
    fn needs(a: &CopyArgs) -> Vec<Need> {
        vec![
            Need::primary(&Self::META, Some(&a.job)),
            Need {
                group: Group::Config,
                access: Access::Read,
                target: Target::Job,
                path: Some(a.from.clone()),
                role: "from",
            },
        ]
    }

    async fn run(cx: &mut Exec<'_>, _a: CopyArgs) -> Result<Value, GateError> {
        let jp = cx.path(0)?;
        // The name checked is the name sent: the canonical source, never the raw argument.
        let from = cx.path(1)?.to_string();
        cx.client.copy_job(jp.parent().as_ref(), jp.name(), &format!("/{from}")).await?;
        Ok(json!({ "created": jp.to_string(), "from": from }))
    }
}

pub struct DeleteJob;

impl Op for DeleteJob {
    type Args = JobArgs;
    const META: Operation = crate::op!("delete_job", Jobs, Write, Job, destructive: true, idempotent: true,
        routes: ["POST /{job}/doDelete", "DELETE /{job}/"], cli: "job delete", phrase: "deleted job",
        "Delete a job or folder with its history.");

    fn needs(a: &JobArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, _a: JobArgs) -> Result<Value, GateError> {
        let jp = cx.path(0)?;
        cx.client.delete_job(&jp).await?;
        Ok(json!({ "deleted": jp.to_string() }))
    }
}
