//! Creating, copying and deleting jobs (group `jobs`).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::status::JobArgs;
use super::{BuildArg, Exec, Facts, Need, Op, resolve_number};
use crate::catalog::{Access, Group, Operation, Target};
use crate::error::GateError;

pub struct CreateJob;

/// Arguments of `create_job`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    /// The new job's full name, folders separated by '/'.
    pub job: String,
    /// The new job's complete config.xml.
    pub config_xml: Option<String>,
    /// Instead of config_xml: the type of an empty item to create, e.g.
    /// com.cloudbees.hudson.plugins.folder.Folder or hudson.model.FreeStyleProject.
    pub item_type: Option<String>,
}

impl Op for CreateJob {
    type Args = CreateArgs;
    const META: Operation = crate::op!("create_job", Jobs, Write, Job, destructive: false, idempotent: false,
        routes: ["POST /createItem?name={name}", "POST /{folder}/createItem?name={name}"], cli: "job create",
        phrase: "created job",
        "Create a job from a config.xml, or an empty item of a type (such as a folder), at the root or in a folder.");

    /// The new name must be one the agent may see: Jenkins' "already exists" would otherwise tell
    /// it that a job hidden from it is there.
    fn needs(a: &CreateArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job)), Need::visible(&a.job, "job")]
    }

    async fn run(cx: &mut Exec<'_>, a: CreateArgs) -> Result<Value, GateError> {
        let jp = cx.path(0)?;
        match (&a.config_xml, &a.item_type) {
            (Some(xml), None) => cx.client.create_job(jp.parent().as_ref(), jp.name(), xml).await?,
            (None, Some(kind)) => {
                super::views::check_type_name(kind)?;
                cx.client.create_item_of_type(jp.parent().as_ref(), jp.name(), kind).await?
            }
            _ => return Err(super::bad_request("create_job takes either config_xml or item_type")),
        }
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
            // As for create_job: a hidden name must not answer "already exists".
            Need::visible(&a.job, "job"),
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

pub struct RenameJob;

/// Arguments of `rename_job`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameArgs {
    /// The job's full name, folders separated by '/'.
    pub job: String,
    /// The new name: one item name in the same folder (Jenkins renames, it does not move).
    pub new_name: String,
}

impl RenameArgs {
    /// The new full name: the new name in the job's folder (read from the job's canonical name,
    /// whatever spelling the agent used; a job name the policy cannot read is denied anyway).
    fn new_full_name(&self) -> String {
        let job = crate::policy::normalize_job_path(&self.job).unwrap_or_else(|_| self.job.clone());
        match job.rsplit_once('/') {
            Some((folder, _)) => format!("{folder}/{}", self.new_name),
            None => self.new_name.clone(),
        }
    }
}

impl Op for RenameJob {
    type Args = RenameArgs;
    const META: Operation = crate::op!("rename_job", Jobs, Write, Job, destructive: true, idempotent: false,
        routes: ["POST /{job}/confirmRename?newName={name}", "POST /{job}/doRename?newName={name}"],
        cli: "job rename", phrase: "changed the name of",
        "Rename a job or folder inside its folder. Needs the right to create and delete jobs under both the old and the new name.");

    /// A rename deletes the old name and creates the new one: both need `jobs full use`, and the
    /// new name must be one the agent may see — otherwise Jenkins' "already exists" would tell it
    /// that a job hidden from it is there.
    fn needs(a: &RenameArgs) -> Vec<Need> {
        let new = a.new_full_name();
        vec![
            Need::primary(&Self::META, Some(&a.job)),
            Need {
                group: Group::Jobs,
                access: Access::Write,
                target: Target::Job,
                path: Some(new.clone()),
                role: "new_name",
            },
            Need::visible(&new, "new_name"),
        ]
    }

    fn facts(answer: &Value) -> Facts {
        let note = answer.get("renamed_to").and_then(Value::as_str).map(|n| format!("renamed to {n}"));
        Facts { note, build_number: None }
    }

    async fn run(cx: &mut Exec<'_>, _a: RenameArgs) -> Result<Value, GateError> {
        let jp = cx.path(0)?;
        // The name checked is the name sent: the canonical new name, which must stay in the folder
        // (a '/' in new_name would have named another folder to the policy; Jenkins would refuse it).
        let new = cx.path(1)?;
        if new.parent() != jp.parent() || new.segments().len() != jp.segments().len() {
            return Err(super::bad_request(
                "new_name must be one item name: Jenkins renames a job inside its folder and cannot move it",
            ));
        }
        cx.client.rename_job(&jp, new.name()).await?;
        Ok(json!({ "renamed": jp.to_string(), "renamed_to": new.to_string() }))
    }
}

pub struct DeleteBuild;

impl Op for DeleteBuild {
    type Args = BuildNumberArgs;
    const META: Operation = crate::op!("delete_build", Jobs, Write, Job, destructive: true, idempotent: true,
        routes: ["POST /{job}/{build}/doDelete"], cli: "build delete", phrase: "deleted a build of",
        "Delete one finished build (its log, artifacts and test results) from a job's history.");

    fn needs(a: &BuildNumberArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: BuildNumberArgs) -> Result<Value, GateError> {
        let jp = cx.path(0)?;
        let number = resolve_number(cx.client, &jp, BuildArg::selector(Some(&a.build))?).await?;
        cx.client.delete_build(&jp, number).await?;
        Ok(json!({ "deleted": true, "number": number }))
    }
}

/// Arguments of operations on one named build.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildNumberArgs {
    /// The job's full name, folders separated by '/'.
    pub job: String,
    /// The build: a number, or a permalink such as lastBuild.
    pub build: BuildArg,
}
