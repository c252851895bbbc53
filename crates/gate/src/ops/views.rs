//! Changing views (group `config`).
//!
//! A view is configuration of its owner — the root or a folder — not a job: creating, changing
//! or deleting one needs `config full use` on the folder that holds it (on all jobs for the root's
//! views), as changing that folder's configuration would. A view only lists jobs, so it creates
//! none: the `jobs` group is not involved. Adding a job to a view or removing it names the job,
//! so the agent must also be able to see it (Jenkins answers differently for a job that exists).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Exec, Facts, Need, Op};
use crate::catalog::Operation;
use crate::error::GateError;

pub struct ManageView;

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ViewAction {
    Create,
    Update,
    Delete,
    AddJob,
    RemoveJob,
}

impl ViewAction {
    fn past(self) -> &'static str {
        match self {
            ViewAction::Create => "created",
            ViewAction::Update => "reconfigured",
            ViewAction::Delete => "deleted",
            ViewAction::AddJob => "added a job to",
            ViewAction::RemoveJob => "removed a job from",
        }
    }
}

/// Arguments of `manage_view`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewArgs {
    /// The view's name.
    pub view: String,
    /// The folder holding the view (its full name); omit for the root's views.
    pub folder: Option<String>,
    /// create, update (replace its config.xml), delete, add_job or remove_job (list views).
    pub action: ViewAction,
    /// create or update: the view's config.xml.
    pub config_xml: Option<String>,
    /// create without config_xml: the view type, e.g. hudson.model.ListView.
    pub view_type: Option<String>,
    /// add_job or remove_job: the job's full name; it must be in the view's folder.
    pub job: Option<String>,
}

impl Op for ManageView {
    type Args = ViewArgs;
    const META: Operation = crate::op!("manage_view", Config, Write, Folder, destructive: true, idempotent: false,
        routes: ["POST /createView?name={name}", "POST /{folder}/createView?name={name}",
            "POST /view/{view}/config.xml", "POST /{folder}/view/{view}/config.xml",
            "POST /view/{view}/doDelete", "POST /{folder}/view/{view}/doDelete",
            "POST /view/{view}/addJobToView?name={name}", "POST /{folder}/view/{view}/addJobToView?name={name}",
            "POST /view/{view}/removeJobFromView?name={name}", "POST /{folder}/view/{view}/removeJobFromView?name={name}"],
        cli: "view manage", phrase: "changed the views of",
        "Create, reconfigure or delete a view (at the root or in a folder), or add a job to a list view or remove it.");

    fn needs(a: &ViewArgs) -> Vec<Need> {
        let mut needs = vec![Need::primary(&Self::META, a.folder.as_deref())];
        if let (ViewAction::AddJob | ViewAction::RemoveJob, Some(job)) = (a.action, &a.job) {
            needs.push(Need::visible(job, "job"));
        }
        needs
    }

    fn facts(answer: &Value) -> Facts {
        let note = answer.get("note").and_then(Value::as_str).map(str::to_string);
        Facts { note, build_number: None }
    }

    async fn run(cx: &mut Exec<'_>, a: ViewArgs) -> Result<Value, GateError> {
        check_view_name(&a.view)?;
        let folder = cx.folder()?;
        let client = cx.client;
        let note = format!("{} view {}", a.action.past(), a.view);
        match a.action {
            ViewAction::Create => match (&a.config_xml, &a.view_type) {
                (Some(xml), None) => client.create_view(folder.as_ref(), &a.view, xml).await?,
                (None, Some(kind)) => {
                    check_type_name(kind)?;
                    client.create_view_of_type(folder.as_ref(), &a.view, kind).await?
                }
                _ => return Err(super::bad_request("create takes either config_xml or view_type")),
            },
            ViewAction::Update => {
                let xml = a.config_xml.as_deref().ok_or_else(|| super::bad_request("update needs config_xml"))?;
                client.update_view_config(folder.as_ref(), &a.view, xml).await?
            }
            ViewAction::Delete => client.delete_view(folder.as_ref(), &a.view).await?,
            ViewAction::AddJob | ViewAction::RemoveJob => {
                // The job checked is the job sent: its canonical name, in the view's folder.
                let job = cx.path(1).map_err(|_| super::bad_request(format!("{:?} needs job", a.action)))?;
                if job.parent() != folder {
                    return Err(super::bad_request(
                        "job must be in the view's folder (a view lists the items of its owner)",
                    ));
                }
                client.view_membership(folder.as_ref(), &a.view, job.name(), a.action == ViewAction::AddJob).await?
            }
        }
        Ok(json!({ "view": a.view, "folder": folder.map(|f| f.to_string()), "note": note }))
    }
}

/// A view name is one URL segment.
pub(crate) fn check_view_name(name: &str) -> Result<(), GateError> {
    let ok = !name.trim().is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if ok { Ok(()) } else { Err(super::bad_request("view must be one view name: no '/', '\\' or controls")) }
}

/// An item or view type is a Java class name (a descriptor id).
pub fn check_type_name(kind: &str) -> Result<(), GateError> {
    let ok = !kind.is_empty()
        && kind.len() <= 300
        && kind.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '$'));
    if ok {
        Ok(())
    } else {
        Err(super::bad_request(format!("'{kind}' is not a type name (a Java class such as hudson.model.ListView)")))
    }
}
