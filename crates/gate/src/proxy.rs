//! The governed proxy's executor: a raw Jenkins read, forwarded as [`crate::route`] classified it,
//! through the same `Gate::begin` → executor → `Gate::finish` path as every typed call.
//!
//! It has no policy or audit code of its own: `begin` decides on the operation and the canonical
//! target; the request sent to Jenkins is rebuilt from that target; the answer is filtered to what
//! the agent may see (the same `policy::may_see` as every listing) and released through the
//! sanitizer; `finish` audits the outcome.
//!
//! Reads: every read route of [`crate::route`] answering JSON (rendered by the surface as JSON or
//! Python), `consoleText` and `logText/progressiveText`. Writes ([`Gate::proxy_write`]) run the
//! same typed operation an MCP client would call (`trigger_build` with its parameter constraints,
//! `stop_build`, `cancel_queue_item`, ...), so a write through the proxy is checked, recorded
//! (intent, then outcome) and retried exactly as one through MCP.

use std::time::Duration;

use jenkins::path::JobPath;
use serde_json::{Map, Value, json};

use crate::catalog::Access;
use crate::error::GateError;
use crate::gate::{Caller, Gate};
use crate::ops::{self, Facts, Need};
use crate::policy;
use crate::route::{Classified, Format};
use crate::sanitize::{Sanitizer, Untrusted};

/// The largest JSON answer the proxy reads from Jenkins to filter (a listing of ~10,000 jobs with
/// a few fields each fits several times over).
pub const MAX_PROXY_JSON_BYTES: usize = 32 * 1024 * 1024;
/// The largest console answer the proxy buffers (a progressiveText chunk, a consoleText).
pub const MAX_PROXY_TEXT_BYTES: usize = 64 * 1024 * 1024;

/// What the proxy answers a client, already through the sanitizer.
#[derive(Debug)]
pub struct ProxyAnswer {
    /// Headers Jenkins sent that clients rely on (`X-Jenkins`, `X-Text-Size`, `X-More-Data`).
    pub headers: Vec<(&'static str, String)>,
    pub body: ProxyBody,
}

pub enum ProxyBody {
    /// Filtered, clean JSON with Jenkins' absolute URLs still pointing at Jenkins (the surface
    /// rewrites them to its own base) in the representation the client asked for.
    Json(Value, Format),
    /// Clean text.
    Text(String),
    /// Console text as Jenkins sends it, cleaned whole lines at a time while it streams: memory
    /// stays bounded whatever the log's size. The read was audited before the first byte.
    Stream(futures_util::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>),
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyBody::Json(v, format) => f.debug_tuple("Json").field(v).field(format).finish(),
            ProxyBody::Text(t) => f.debug_tuple("Text").field(t).finish(),
            ProxyBody::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// Why the proxy did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Hidden from the agent, or missing in Jenkins: the two answer alike.
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Gate(#[from] GateError),
}

/// Headers passed from Jenkins' answer to the client.
const PASSED_HEADERS: [&str; 3] = ["X-Jenkins", "X-Text-Size", "X-More-Data"];

impl Gate {
    /// Serves one classified request for `caller` on `controller`.
    pub async fn proxy(&self, caller: &Caller, controller: &str, c: &Classified) -> Result<ProxyAnswer, ProxyError> {
        let meta = ops::OPERATIONS
            .iter()
            .copied()
            .find(|o| o.name == c.op)
            .ok_or_else(|| GateError::Invalid(format!("{} is not in the catalog", c.op)))?;
        if meta.access == Access::Write {
            return Err(GateError::Invalid(format!("{} is a write: serve it with Gate::proxy_write", meta.name)).into());
        }
        let job = c.job.as_ref().map(ToString::to_string);
        let needs = vec![Need::primary(meta, job.as_deref())];
        let audit_args = json!({"route": c.route, "request": c.upstream});
        let begun = match self.begin(caller, controller, meta, needs, &[], audit_args).await {
            Ok(b) => b,
            Err(GateError::Denied { reason }) => {
                // An item the agent may not see answers like a missing one; one it may see but not
                // use this way is a plain refusal.
                let grants = self.grants_for_call(&caller.agent).await?;
                return match &job {
                    Some(j) if !policy::may_see(&grants, &caller.agent, controller, j) => Err(ProxyError::NotFound),
                    _ => Err(GateError::Denied { reason }.into()),
                };
            }
            Err(e) => return Err(e.into()),
        };
        let conn = self.connection_for_call(controller).await?;
        let mut sanitizer = Sanitizer::new(conn.known.as_ref().clone());
        let canonical = match begun.targets.first().cloned().flatten() {
            Some(p) => Some(JobPath::parse(&p).map_err(GateError::from)?),
            None => None,
        };
        let grants = begun.grants.clone();
        // The Pipeline REST API (`wfapi`) answers JSON without an `api/` segment: read, filtered
        // and rewritten as JSON like the remote API.
        let json_wanted = c.format.or_else(|| c.route.contains("/wfapi/").then_some(Format::Json));
        let (path, query) = if c.route == "GET /" {
            // The root page is HTML; its headers (X-Jenkins) come with every API answer too, so
            // the smallest one is read and the client gets the headers with an empty page.
            ("api/json".to_string(), vec![("tree".to_string(), "mode".to_string())])
        } else {
            c.clone().with_format(Format::Json).upstream_with(canonical.as_ref())
        };
        let json_wanted = if c.route == "GET /" { None } else { json_wanted };
        let deadline = self.calls.limits.read_deadline;
        // A view's config.xml names jobs: read whole (it is small) and filtered, not streamed.
        let view_config = c.route.ends_with("/view/{view}/config.xml");
        if json_wanted.is_none() && c.route != "GET /" && !view_config {
            // Console text: streamed. The answer's headers come first; the read is audited then,
            // before any of its bytes leave jgate.
            let opened = match tokio::time::timeout(deadline, conn.client.forward_get(&path, &query)).await {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => Err(GateError::from(e)),
                Err(_) => {
                    Err(GateError::Invalid(format!("Jenkins did not answer {path} within {} s", deadline.as_secs())))
                }
            };
            let resp = match opened {
                Ok(resp) => resp,
                Err(e) => {
                    // `finish` audits the failure and returns it (sanitized).
                    let facts = |_: &Value| Facts::default();
                    return match self.finish_within(begun, Err(e), facts, &mut sanitizer, MAX_PROXY_JSON_BYTES).await {
                        Err(e) => Err(e.into()),
                        Ok(_) => Err(GateError::Invalid("the console could not be read".into()).into()),
                    };
                }
            };
            let headers = passed_headers(&resp);
            let facts = |_: &Value| Facts::default();
            let started = Untrusted::new(json!({"console": "streamed"}));
            self.finish_within(begun, Ok(started), facts, &mut sanitizer, MAX_PROXY_JSON_BYTES).await?;
            return Ok(ProxyAnswer { headers, body: ProxyBody::Stream(clean_console_stream(resp, sanitizer)) });
        }
        let fetched = fetch(&conn.client, &path, &query, json_wanted.is_some() || c.route == "GET /", deadline).await;
        let mut headers = Vec::new();
        let mut text_body = None;
        let result: Result<Untrusted<Value>, GateError> = match fetched {
            Ok(Fetched::Json(_, h)) if c.route == "GET /" => {
                headers = h;
                text_body = Some(String::new());
                Ok(Untrusted::new(json!({})))
            }
            Ok(Fetched::Json(value, h)) => {
                headers = h;
                let visible = |name: &str| policy::may_see(&grants, &caller.agent, controller, name);
                let base = conn.client.base_url().to_string();
                let item_hidden = match c.queue_id {
                    Some(id) if c.op == "get_queue" => {
                        if value.pointer("/task/url").is_some() {
                            !queue_item_visible(&value, &base, &visible)
                        } else {
                            // The client's tree= left out the owner (api4jenkins polls with
                            // tree=_class): ask Jenkins for it on its own.
                            let tree = [("tree".to_string(), "task[url]".to_string())];
                            match fetch(&conn.client, &format!("queue/item/{id}/api/json"), &tree, true, deadline).await
                            {
                                Ok(Fetched::Json(owner, _)) => !queue_item_visible(&owner, &base, &visible),
                                _ => true,
                            }
                        }
                    }
                    _ => false,
                };
                if item_hidden {
                    // Finish the call (audited as a read that found nothing to show), then 404.
                    let _ = self
                        .finish(
                            begun,
                            Err(GateError::Invalid("not found".into())),
                            |_| Facts::default(),
                            &mut sanitizer,
                        )
                        .await;
                    return Err(ProxyError::NotFound);
                }
                Ok(Untrusted::new(filter_visible(value, &base, canonical.as_ref(), &visible)))
            }
            Ok(Fetched::Text(raw, h)) => {
                headers = h;
                let raw = if view_config {
                    let visible = |name: &str| policy::may_see(&grants, &caller.agent, controller, name);
                    let owner = canonical.as_ref().map(ToString::to_string);
                    filter_view_config(&raw, owner.as_deref(), &visible)
                } else {
                    raw
                };
                // Console text is cleaned here, whole lines at a time; the audit records its size.
                let cleaned = clean_console(&mut sanitizer, &raw);
                let bytes = cleaned.len();
                text_body = Some(cleaned);
                Ok(Untrusted::new(json!({"console_bytes": bytes})))
            }
            Err(e) => Err(e),
        };
        let facts = |_: &Value| Facts::default();
        let clean = self.finish_within(begun, result, facts, &mut sanitizer, MAX_PROXY_JSON_BYTES).await?;
        let body = match (text_body, json_wanted) {
            (Some(text), _) => ProxyBody::Text(text),
            (None, Some(format)) => {
                let mut value = clean.into_inner();
                strip_redaction_count(&mut value);
                ProxyBody::Json(value, format)
            }
            (None, None) => ProxyBody::Text(String::new()),
        };
        Ok(ProxyAnswer { headers, body })
    }
}

/// A proxied request that maps to no operation, or is never served: named in the audit as this
/// pseudo-operation, so refusals are on record like every other call.
pub static PROXY_REFUSED: crate::catalog::Operation = crate::op!("proxy_request", Status, Read, Controller,
    destructive: false, idempotent: true, routes: [], cli: "", phrase: "sent a Jenkins request to",
    "A raw Jenkins request through the governed proxy that maps to no operation jgate serves.");

impl Gate {
    /// The Jenkins base URL of a controller the proxy serves (`None`: there is no such controller).
    /// Answered from the caches (names and connections), not the store: this runs on every
    /// proxied request.
    pub async fn proxy_controller(&self, name: &str) -> Result<Option<String>, GateError> {
        if !self.controller_names().await?.iter().any(|n| n == name) {
            return Ok(None);
        }
        Ok(Some(self.connection_for_call(name).await?.client.base_url().to_string()))
    }

    /// Records a proxied request refused before it reached the policy (an unknown, forbidden or
    /// malformed route) and returns the error to answer with.
    pub async fn proxy_refused(&self, caller: &Caller, controller: &str, request: &str, reason: &str) -> GateError {
        // The request line is the client's own text: it goes to the audit through the sanitizer.
        let mut sanitizer = Sanitizer::new(crate::sanitize::KnownSecrets::new());
        let shown = sanitizer.release_text(Untrusted::new(request.chars().take(512).collect())).into_inner();
        let entry = self.entry(caller, controller, &PROXY_REFUSED, json!({"request": shown}));
        self.refuse(entry, reason.to_string(), GateError::Denied { reason: reason.to_string() }).await
    }
}

/// What a proxied write did, for the surface's Jenkins-shaped answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyWrite {
    /// A trigger Jenkins queued (the client reads the item from `Location`).
    Queued {
        queue_id: u64,
    },
    /// A rename: the item's new path below the base (`job/a/job/b/`), which clients read from
    /// `Location`.
    Moved {
        path: String,
    },
    Done,
}

/// The largest form or config.xml body the proxy accepts.
pub const MAX_PROXY_BODY_BYTES: usize = 1024 * 1024;

impl Gate {
    /// Serves a classified write by calling its typed operation with the request's arguments:
    /// the form fields, query parameters and `json=` field of a trigger become its parameters
    /// (checked against the grant's constraints), a POSTed config.xml its new configuration.
    pub async fn proxy_write(
        &self,
        caller: &Caller,
        controller: &str,
        c: &Classified,
        form: &[(String, String)],
        body: Option<String>,
        files: &[jenkins::FilePart],
    ) -> Result<ProxyWrite, ProxyError> {
        let job = c.job.as_ref().map(ToString::to_string);
        if !files.is_empty() && c.route != "POST /{job}/buildWithParameters" {
            return Err(GateError::Invalid(
                "files are taken only as a trigger's file parameters (buildWithParameters)".into(),
            )
            .into());
        }
        if !c.views.is_empty() {
            self.check_views(caller, controller, &c.views).await?;
        }
        // A request parameter as Jenkins reads it (`getParameter`): the query first, then the form.
        let field = |name: &str| -> Option<String> {
            c.query().iter().chain(form).find(|(k, _)| k == name).map(|(_, v)| v.clone())
        };
        let request = format!("POST {}", c.upstream);
        let args = match c.op {
            "trigger_build" => {
                let mut params = trigger_parameters(c.query(), form)?;
                if params.is_empty() && files.is_empty() && c.route == "POST /{job}/buildWithParameters" {
                    params = self.default_parameters(caller, controller, job.as_deref()).await?;
                }
                let mut args = json!({"job": job, "wait": "none"});
                if !params.is_empty() {
                    args["parameters"] =
                        Value::Object(params.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
                }
                if !files.is_empty() {
                    use base64::Engine as _;
                    // The files go to the typed trigger, which checks their content under the
                    // grant's constraints like any value and sends them as file parameters.
                    let mut by_name = Map::new();
                    for f in files {
                        let content = base64::engine::general_purpose::STANDARD.encode(&f.content);
                        by_name.insert(f.name.clone(), json!({"file_name": f.file_name, "content_base64": content}));
                    }
                    args["files"] = Value::Object(by_name);
                }
                args
            }
            "stop_build" => match c.build {
                Some(crate::route::BuildRef::Number(n)) => json!({"job": job, "build": n}),
                _ => return Err(GateError::Invalid("stop a build by its number, not a permalink".into()).into()),
            },
            "cancel_queue_item" => {
                // The item's job is known only from Jenkins' answer; the operation verifies it again.
                let id = c.queue_id.ok_or_else(|| GateError::Invalid("cancelItem needs an id".into()))?;
                let conn = self.connection_for_call(controller).await?;
                let base = conn.client.base_url().to_string();
                let owner = match conn.client.forward_get(&format!("queue/item/{id}/api/json"), &[]).await {
                    Ok(resp) => {
                        let raw = read_capped(resp, MAX_PROXY_JSON_BYTES).await?;
                        serde_json::from_slice::<Value>(&raw)
                            .ok()
                            .and_then(|v| v.pointer("/task/url").and_then(Value::as_str).map(str::to_string))
                            .and_then(|u| u.strip_prefix(base.as_str()).and_then(job_from_url_path))
                    }
                    Err(_) => None,
                };
                let Some(owner) = owner else { return Err(ProxyError::NotFound) };
                json!({"job": owner, "queue_id": id})
            }
            "update_job_config" => {
                let xml =
                    body.ok_or_else(|| GateError::Invalid("POST the new config.xml as the request body".into()))?;
                json!({"job": job, "config_xml": xml})
            }
            "enable_job" | "disable_job" | "delete_job" | "wipe_workspace" => json!({"job": job}),
            "create_job" => match field("mode") {
                // Form mode (`mode=<item type>`, the "new item" form; python-jenkins' create_folder).
                // The name is the query's: a `name` in the form (python-jenkins sends the full name
                // there) is not what Jenkins reads either.
                Some(mode) => {
                    crate::ops::check_type_name(&mode)?;
                    json!({"job": job, "item_type": mode})
                }
                None => {
                    let xml = body.filter(|b| !b.trim().is_empty()).ok_or_else(|| {
                        GateError::Invalid(
                            "POST the new item's config.xml as the body (Content-Type: application/xml), \
                             or mode=<item type> for an empty item"
                                .into(),
                        )
                    })?;
                    json!({"job": job, "config_xml": xml})
                }
            },
            "delete_build" => match c.build {
                Some(crate::route::BuildRef::Number(n)) => json!({"job": job, "build": n}),
                Some(crate::route::BuildRef::Permalink(p)) => json!({"job": job, "build": p}),
                None => return Err(GateError::Invalid("doDelete of a build needs its number".into()).into()),
            },
            "rename_job" => {
                let Some(new_name) = field("newName").map(|n| n.trim().to_string()).filter(|n| !n.is_empty()) else {
                    return Err(self
                        .refused_as_jenkins(caller, controller, &request, "No name is specified", 400)
                        .await);
                };
                json!({"job": job, "new_name": new_name})
            }
            "set_description" => {
                let mut args = json!({"job": job, "description": field("description").unwrap_or_default()});
                match c.build {
                    Some(crate::route::BuildRef::Number(n)) => args["build"] = json!(n),
                    Some(crate::route::BuildRef::Permalink(p)) => args["build"] = json!(p),
                    None => {}
                }
                args
            }
            "set_next_build_number" => {
                // The plugin reads its structured form (the `json` field), as Jenkins' forms do: a
                // bare nextBuildNumber=N is refused by Jenkins, and so here.
                let Some(structured) = field("json") else {
                    let message = if c.query().is_empty() && form.is_empty() {
                        "Nothing is submitted"
                    } else {
                        "This page expects a form submission"
                    };
                    return Err(self.refused_as_jenkins(caller, controller, &request, message, 400).await);
                };
                let number = serde_json::from_str::<Value>(&structured).ok().and_then(|v| {
                    let n = v.get("nextBuildNumber")?.clone();
                    n.as_u64().or_else(|| n.as_str().and_then(|s| s.trim().parse().ok()))
                });
                let Some(number) = number else {
                    let message = "the json field's nextBuildNumber is not a number";
                    return Err(self.refused_as_jenkins(caller, controller, &request, message, 400).await);
                };
                json!({"job": job, "number": number})
            }
            "replay" => {
                let number = match c.build {
                    Some(crate::route::BuildRef::Number(n)) => n,
                    _ => return Err(GateError::Invalid("replay a build by its number, not a permalink".into()).into()),
                };
                // The plugin reads its structured form (the `json` field) and its mainScript; a
                // form without them is refused as Jenkins refuses it, before anything is sent.
                let Some(structured) = field("json") else {
                    let message = if c.query().is_empty() && form.is_empty() {
                        "Nothing is submitted"
                    } else {
                        "This page expects a form submission"
                    };
                    return Err(self.refused_as_jenkins(caller, controller, &request, message, 400).await);
                };
                let script = serde_json::from_str::<Value>(&structured)
                    .ok()
                    .and_then(|v| v.get("mainScript").and_then(Value::as_str).map(str::to_string));
                let Some(script) = script else {
                    let message = "the json field has no mainScript (the replacement Pipeline script)";
                    return Err(self.refused_as_jenkins(caller, controller, &request, message, 400).await);
                };
                // Jenkins answers with the job, not a queue item: the proxy does not wait either.
                json!({"job": job, "build": number, "script": script, "wait": "none"})
            }
            "answer_input" => {
                let number = match c.build {
                    Some(crate::route::BuildRef::Number(n)) => n,
                    _ => return Err(GateError::Invalid("answer an input step of a build by its number".into()).into()),
                };
                let abort = c.route.ends_with("/abort");
                let mut args = json!({"job": job, "build": number, "input_id": c.input,
                    "action": if abort { "abort" } else { "proceed" }});
                if c.route.ends_with("/proceed") {
                    let params = input_parameters(form)?;
                    if !params.is_empty() {
                        args["parameters"] =
                            Value::Object(params.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
                    }
                }
                args
            }
            "manage_view" => self.view_args(caller, controller, c, &field, body, &request).await?,
            "copy_job" => {
                let from = c.from.as_ref().map(ToString::to_string);
                json!({"job": job, "from": from})
            }
            other => {
                return Err(GateError::Invalid(format!("{other} is not served through the Jenkins proxy yet")).into());
            }
        };
        // Every job the request names (for rename, the new full name; for a view, its folder).
        let mut targets: Vec<String> = ["job", "from", "folder"]
            .iter()
            .filter_map(|k| args.get(*k).and_then(Value::as_str).map(str::to_string))
            .collect();
        if c.op == "rename_job"
            && let (Some(old), Some(new)) = (c.job.as_ref(), args.get("new_name").and_then(Value::as_str))
        {
            targets.push(old.parent().map_or_else(|| new.to_string(), |p| format!("{p}/{new}")));
        }
        let view_job = (c.op == "manage_view").then(|| args.get("job").and_then(Value::as_str).map(str::to_string));
        match self.call_with(caller, Some(controller), c.op, args, crate::call::CallOptions::default()).await {
            Ok(clean) => Ok(match clean.as_ref().get("queue_id").and_then(Value::as_u64) {
                Some(queue_id) if c.op == "trigger_build" => ProxyWrite::Queued { queue_id },
                _ => match clean.as_ref().get("renamed_to").and_then(Value::as_str) {
                    Some(new) if c.op == "rename_job" => {
                        ProxyWrite::Moved { path: JobPath::parse(new).map_err(GateError::from)?.url_path() }
                    }
                    _ => ProxyWrite::Done,
                },
            }),
            Err(GateError::Denied { reason }) => {
                let grants = self.grants_for_call(&caller.agent).await?;
                let hidden = |j: &str| !policy::may_see(&grants, &caller.agent, controller, j);
                // A job named to a view that the agent may not see answers as Jenkins answers for
                // a job that does not exist.
                if let Some(Some(j)) = &view_job
                    && hidden(j)
                {
                    let name = j.rsplit('/').next().unwrap_or(j);
                    return Err(GateError::Failed {
                        message: format!("Query parameter 'name' does not correspond to a known item: {name}"),
                        status: Some(400),
                    }
                    .into());
                }
                // A target the agent may not see (the job, a copy's source, a new name) answers
                // like a missing one.
                if targets.iter().any(|j| hidden(j)) {
                    Err(ProxyError::NotFound)
                } else {
                    Err(GateError::Denied { reason }.into())
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Gate {
    /// Refuses a request before any operation, the way Jenkins refuses it (its status and message),
    /// on record like every other refusal.
    async fn refused_as_jenkins(
        &self,
        caller: &Caller,
        controller: &str,
        request: &str,
        message: &str,
        status: u16,
    ) -> ProxyError {
        let _ = self.proxy_refused(caller, controller, request, message).await;
        GateError::Failed { message: message.to_string(), status: Some(status) }.into()
    }

    /// `/view/a/view/b/job/x/…`: Jenkins resolves the item through the views and answers 404
    /// when one of them does not exist. Reads are forwarded through the views; a write (made by
    /// its typed operation on the item itself) first asks Jenkins whether the views exist.
    async fn check_views(&self, caller: &Caller, controller: &str, views: &[String]) -> Result<(), ProxyError> {
        let conn = self.connection_for_call(controller).await?;
        let path = format!("{}api/json", crate::route::views_path(views));
        let tree = [("tree".to_string(), "name".to_string())];
        match conn.client.forward_get(&path, &tree).await {
            Ok(_) => Ok(()),
            Err(jenkins::Error::NotFound { .. }) => {
                let request = format!("POST through {path}");
                let _ = self.proxy_refused(caller, controller, &request, "no such view").await;
                Err(ProxyError::NotFound)
            }
            Err(e) => Err(GateError::from(e).into()),
        }
    }

    /// The arguments of `manage_view` from a view request: which action the route is, the view's
    /// name (from the path, or for createView from the query, the form or its `json` field, as
    /// Jenkins reads it), and what the action takes.
    async fn view_args(
        &self,
        caller: &Caller,
        controller: &str,
        c: &Classified,
        field: &(dyn Fn(&str) -> Option<String> + Sync),
        body: Option<String>,
        request: &str,
    ) -> Result<Value, ProxyError> {
        let folder = c.job.as_ref().map(ToString::to_string);
        let structured = field("json").and_then(|j| serde_json::from_str::<Value>(&j).ok());
        let from_json =
            |key: &str| structured.as_ref().and_then(|v| v.get(key)).and_then(Value::as_str).map(str::to_string);
        let body = body.filter(|b| !b.trim().is_empty());
        let action = c.route.rsplit('/').next().unwrap_or_default();
        let view = match c.name() {
            Some(v) => v.to_string(),
            None => match field("name").or_else(|| from_json("name")).map(|n| n.trim().to_string()) {
                Some(n) if !n.is_empty() => n,
                _ => {
                    let message = "Query parameter 'name' is required";
                    return Err(self.refused_as_jenkins(caller, controller, request, message, 400).await);
                }
            },
        };
        let mut args = json!({"view": view, "folder": folder});
        if action.starts_with("createView") {
            args["action"] = json!("create");
            match (body, field("mode").or_else(|| from_json("mode"))) {
                (Some(xml), _) => args["config_xml"] = json!(xml),
                (None, Some(mode)) => args["view_type"] = json!(mode),
                (None, None) => {
                    return Err(self.refused_as_jenkins(caller, controller, request, "No mode given", 400).await);
                }
            }
        } else if action == "config.xml" {
            let xml = body.ok_or_else(|| GateError::Invalid("POST the view's new config.xml as the body".into()))?;
            args["action"] = json!("update");
            args["config_xml"] = json!(xml);
        } else if action == "doDelete" {
            args["action"] = json!("delete");
        } else {
            let add = action.starts_with("addJobToView");
            args["action"] = json!(if add { "add_job" } else { "remove_job" });
            let Some(name) = field("name").filter(|n| !n.is_empty()) else {
                let message = "Query parameter 'name' is required";
                return Err(self.refused_as_jenkins(caller, controller, request, message, 400).await);
            };
            // Jenkins resolves the name relative to the view's owner; jgate takes one item name
            // only (no relative paths), so that the job checked is the job Jenkins finds.
            if name.contains(['/', '\\']) || name == "." || name == ".." || name.chars().any(char::is_control) {
                return Err(GateError::Invalid(
                    "name must be one item name in the view's folder (no paths) through jgate".into(),
                )
                .into());
            }
            args["job"] = json!(match &folder {
                Some(f) => format!("{f}/{name}"),
                None => name,
            });
        }
        Ok(args)
    }

    /// `buildWithParameters` without parameters builds with the job's defaults in Jenkins; the
    /// typed trigger needs them spelled out (without parameters it asks for a plain `build`, which
    /// Jenkins refuses on a parameterized job). They are read with `get_job` — a read checked by the
    /// policy and audited like any other — and then checked against the grant's constraints as if
    /// the client had sent them. A job without parameters answers as Jenkins (2.524+) does: 400.
    async fn default_parameters(
        &self,
        caller: &Caller,
        controller: &str,
        job: Option<&str>,
    ) -> Result<Vec<(String, String)>, ProxyError> {
        let args = json!({ "job": job });
        let info = match self
            .call_with(caller, Some(controller), "get_job", args, crate::call::CallOptions::default())
            .await
        {
            Ok(clean) => clean.into_inner(),
            Err(GateError::Denied { reason }) => {
                let grants = self.grants_for_call(&caller.agent).await?;
                return match job {
                    Some(j) if !policy::may_see(&grants, &caller.agent, controller, j) => Err(ProxyError::NotFound),
                    _ => Err(GateError::Denied { reason }.into()),
                };
            }
            Err(e) => return Err(e.into()),
        };
        let defs = info.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
        if defs.is_empty() {
            // Refused before any trigger reached Jenkins: on record like every other refusal.
            let name = job.unwrap_or_default();
            let message = format!("{name} is not parameterized");
            let request = format!("POST buildWithParameters of {name} without parameters");
            let _ = self.proxy_refused(caller, controller, &request, &message).await;
            return Err(GateError::Failed { message, status: Some(400) }.into());
        }
        Ok(defs
            .iter()
            .filter_map(|d| {
                let name = d.get("name").and_then(Value::as_str)?;
                let value = match d.get("default") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                Some((name.to_string(), value))
            })
            .collect())
    }
}

/// A trigger's parameters from the query string, the form fields and the `json=` field
/// (`{"parameter": [{"name": ..., "value": ...}]}`), as Jenkins reads them. `delay` is Jenkins'
/// own; a build token (`token`) is refused: agents authenticate as themselves.
fn trigger_parameters(
    query: &[(String, String)],
    form: &[(String, String)],
) -> Result<Vec<(String, String)>, GateError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in query.iter().chain(form) {
        match k.as_str() {
            "delay" | "Submit" => {}
            "token" => {
                return Err(GateError::Invalid(
                    "build tokens are not used through jgate: agents authenticate with their own key".into(),
                ));
            }
            "json" => {
                let parsed: Value = serde_json::from_str(v)
                    .map_err(|e| GateError::Invalid(format!("the json= field is not JSON: {e}")))?;
                let list = match parsed.get("parameter") {
                    Some(Value::Array(items)) => items.clone(),
                    Some(one @ Value::Object(_)) => vec![one.clone()],
                    _ => Vec::new(),
                };
                for p in list {
                    let Some(name) = p.get("name").and_then(Value::as_str) else { continue };
                    let value = match p.get("value") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Null) | None => String::new(),
                        Some(other) => other.to_string(),
                    };
                    out.push((name.to_string(), value));
                }
            }
            _ => out.push((k.clone(), v.clone())),
        }
    }
    // A name given twice keeps its last value: the value checked is the value sent, because the
    // trigger sent to Jenkins is rebuilt from this list (never forwarded as the client wrote it).
    let mut seen = std::collections::BTreeMap::new();
    for (k, v) in out {
        seen.insert(k, v);
    }
    Ok(seen.into_iter().collect())
}

/// An input step's parameters from the `json` form field of `proceed`
/// (`{"parameter": [{"name": ..., "value": ...}]}`).
fn input_parameters(form: &[(String, String)]) -> Result<Vec<(String, String)>, GateError> {
    let json: Vec<(String, String)> = form.iter().filter(|(k, _)| k == "json").cloned().collect();
    trigger_parameters(&[], &json)
}

enum Fetched {
    Json(Value, Vec<(&'static str, String)>),
    Text(String, Vec<(&'static str, String)>),
}

/// The headers of Jenkins' answer that clients rely on.
fn passed_headers(resp: &reqwest::Response) -> Vec<(&'static str, String)> {
    PASSED_HEADERS
        .iter()
        .filter_map(|h| resp.headers().get(*h).and_then(|v| v.to_str().ok()).map(|v| (*h, v.to_string())))
        .collect()
}

async fn fetch(
    client: &jenkins::client::JenkinsClient,
    path: &str,
    query: &[(String, String)],
    json: bool,
    deadline: Duration,
) -> Result<Fetched, GateError> {
    let work = async {
        let resp = client.forward_get(path, query).await?;
        let headers = passed_headers(&resp);
        let cap = if json { MAX_PROXY_JSON_BYTES } else { MAX_PROXY_TEXT_BYTES };
        let body = read_capped(resp, cap).await?;
        if json {
            let value: Value = serde_json::from_slice(&body)
                .map_err(|e| GateError::Invalid(format!("Jenkins answered {path} with JSON jgate cannot read: {e}")))?;
            Ok(Fetched::Json(value, headers))
        } else {
            Ok(Fetched::Text(String::from_utf8_lossy(&body).into_owned(), headers))
        }
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(GateError::Invalid(format!("Jenkins did not answer {path} within {} s", deadline.as_secs()))),
    }
}

async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, GateError> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| GateError::Invalid(format!("the answer from Jenkins broke off: {e}")))?;
        if body.len() + chunk.len() > cap {
            return Err(GateError::Invalid(format!(
                "the answer from Jenkins is over the proxy's limit of {} MiB; ask for less (tree=, a smaller depth)",
                cap / (1024 * 1024)
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Console text cleaned whole lines at a time (the sanitizer's contract), without the untrusted
/// fence the MCP tools add: a Jenkins client expects the console as Jenkins writes it.
/// The longest run without a newline held back before it is cleaned and sent anyway.
const MAX_PENDING_LINE: usize = 1024 * 1024;

/// Jenkins' console body, cleaned whole lines at a time as it arrives (the sanitizer's contract);
/// at most one line ([`MAX_PENDING_LINE`]) is held in memory.
fn clean_console_stream(
    resp: reqwest::Response,
    sanitizer: Sanitizer,
) -> futures_util::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>> {
    use futures_util::StreamExt;
    let upstream = Box::pin(resp.bytes_stream());
    futures_util::stream::unfold(
        (upstream, Vec::<u8>::new(), sanitizer, false),
        |(mut upstream, mut pending, mut sanitizer, done)| async move {
            if done {
                return None;
            }
            loop {
                match upstream.next().await {
                    Some(Ok(chunk)) => {
                        pending.extend_from_slice(&chunk);
                        let cut = match pending.iter().rposition(|&b| b == b'\n') {
                            Some(i) => i + 1,
                            None if pending.len() > MAX_PENDING_LINE => pending.len(),
                            None => continue,
                        };
                        let rest = pending.split_off(cut);
                        let cleaned = clean_console(&mut sanitizer, &String::from_utf8_lossy(&pending));
                        return Some((Ok(bytes::Bytes::from(cleaned)), (upstream, rest, sanitizer, false)));
                    }
                    Some(Err(e)) => {
                        return Some((Err(std::io::Error::other(e)), (upstream, Vec::new(), sanitizer, true)));
                    }
                    None if pending.is_empty() => return None,
                    None => {
                        let cleaned = clean_console(&mut sanitizer, &String::from_utf8_lossy(&pending));
                        return Some((Ok(bytes::Bytes::from(cleaned)), (upstream, Vec::new(), sanitizer, true)));
                    }
                }
            }
        },
    )
    .boxed()
}

fn clean_console(sanitizer: &mut Sanitizer, raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for line in raw.split_inclusive('\n') {
        out.push_str(&sanitizer.clean(line));
    }
    out
}

/// `finish` adds the redaction count to object answers; a Jenkins client must see Jenkins' shape.
fn strip_redaction_count(value: &mut Value) {
    if let Some(map) = value.as_object_mut() {
        map.remove("redactions");
    }
}

/// The full name of the job an object describes, from its `url` under the controller's base (or
/// its `fullName`).
fn job_of(object: &Map<String, Value>, base: &str) -> Option<String> {
    if let Some(url) = object.get("url").and_then(Value::as_str)
        && let Some(rest) = url.strip_prefix(base)
    {
        return job_from_url_path(rest);
    }
    object.get("fullName").and_then(Value::as_str).map(str::to_string)
}

/// `job/a/job/b/12/` → `a/b` (segments decoded once, as Jenkins encoded them).
fn job_from_url_path(rest: &str) -> Option<String> {
    let segs: Vec<&str> = rest.split('/').collect();
    let mut names = Vec::new();
    let mut i = 0;
    while segs.get(i) == Some(&"job") {
        let name = percent_encoding::percent_decode_str(segs.get(i + 1)?).decode_utf8().ok()?;
        names.push(name.into_owned());
        i += 2;
    }
    (!names.is_empty()).then(|| names.join("/"))
}

/// Drops from an answer everything about jobs the agent may not see: entries of `jobs` arrays
/// (at any depth, under any `tree=`), and any other object whose `url` names a hidden job
/// (builds in a view, an executor's current build, upstream projects…). An entry whose job
/// cannot be told is dropped too (fail closed).
fn filter_visible(value: Value, base: &str, this: Option<&JobPath>, visible: &dyn Fn(&str) -> bool) -> Value {
    let parent = this.map(ToString::to_string);
    prune(value, base, parent.as_deref(), visible).unwrap_or(Value::Null)
}

fn prune(value: Value, base: &str, parent: Option<&str>, visible: &dyn Fn(&str) -> bool) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if let Some(job) = job_of(&map, base)
                && !visible(&job)
            {
                return None;
            }
            let this = job_of(&map, base).or_else(|| parent.map(str::to_string));
            let mut out = Map::with_capacity(map.len());
            for (key, v) in map {
                let v = if key == "jobs" {
                    prune_jobs(v, base, this.as_deref(), visible)
                } else {
                    match prune(v, base, this.as_deref(), visible) {
                        Some(v) => v,
                        None => Value::Null,
                    }
                };
                out.insert(key, v);
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => {
            Some(Value::Array(items.into_iter().filter_map(|v| prune(v, base, parent, visible)).collect()))
        }
        other => Some(other),
    }
}

/// A `jobs` array: each entry's full name from its url, its fullName, or its name under the
/// object the array belongs to; entries whose name cannot be told are dropped.
fn prune_jobs(value: Value, base: &str, parent: Option<&str>, visible: &dyn Fn(&str) -> bool) -> Value {
    let Value::Array(items) = value else { return Value::Null };
    let kept = items
        .into_iter()
        .filter_map(|item| {
            let Value::Object(map) = &item else { return None };
            let name = job_of(map, base).or_else(|| {
                let short = map.get("name").and_then(Value::as_str)?;
                Some(match parent {
                    Some(p) if !p.is_empty() => format!("{p}/{short}"),
                    _ => short.to_string(),
                })
            })?;
            if !visible(&name) {
                return None;
            }
            prune(item, base, Some(&name), visible)
        })
        .collect();
    Value::Array(kept)
}

/// A view's config.xml without the job names the agent may not see: each `<string>` of every
/// `<jobNames>` list names an item of the view's owner (`owner`, or the root). A list that holds
/// anything else than plain names is emptied (fail closed).
fn filter_view_config(xml: &str, owner: Option<&str>, visible: &dyn Fn(&str) -> bool) -> String {
    use std::sync::LazyLock;
    static BLOCK: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(r"(?s)(<jobNames(?:\s[^>]*)?>)(.*?)(</jobNames>)").ok());
    static NAME: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(r"<string>([^<]*)</string>[ \t]*\r?\n?").ok());
    let (Some(block), Some(name)) = (BLOCK.as_ref(), NAME.as_ref()) else { return String::new() };
    if xml.contains("<jobNames") && !block.is_match(xml) {
        return String::new();
    }
    block
        .replace_all(xml, |caps: &regex::Captures<'_>| {
            let inner = &caps[2];
            let kept = name.replace_all(inner, |n: &regex::Captures<'_>| {
                let short = xml_unescape(&n[1]);
                let full = match owner {
                    Some(o) if !o.is_empty() => format!("{o}/{short}"),
                    _ => short,
                };
                if visible(&full) { n[0].to_string() } else { String::new() }
            });
            // Names in another form (CDATA, entities this reader does not know): drop them all.
            if name.replace_all(inner, "").contains("<string") {
                return format!("{}{}", &caps[1], &caps[3]);
            }
            format!("{}{kept}{}", &caps[1], &caps[3])
        })
        .into_owned()
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// Whether a queue item belongs to a job the agent may see (its `task.url`); unknown → hidden.
fn queue_item_visible(item: &Value, base: &str, visible: &dyn Fn(&str) -> bool) -> bool {
    let Some(url) = item.pointer("/task/url").and_then(Value::as_str) else { return false };
    url.strip_prefix(base).and_then(job_from_url_path).is_some_and(|job| visible(&job))
}

/// Rewrites every string that starts with `from` (Jenkins' base URL) to start with `to` (the
/// proxy's base for the controller), so clients keep coming back through jgate.
pub fn rewrite_urls(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix(from) {
                *s = format!("{to}{rest}");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_urls(v, from, to)),
        Value::Object(map) => map.values_mut().for_each(|v| rewrite_urls(v, from, to)),
        _ => {}
    }
}

/// Rewrites root-relative links (`/job/X/16/wfapi/describe`, as the Pipeline REST API writes its
/// `_links.*.href`, `url`, `consoleUrl` and an input step's `proceedUrl`, `abortUrl` and
/// `redirectApprovalUrl`: jenkins-wire.md §12.1, §12.4) from Jenkins' path `from` to the
/// proxy's path `to`. Only those keys, and only links into items (`<from>job/`), so free text is
/// never touched.
pub fn rewrite_root_relative(value: &mut Value, from: &str, to: &str) {
    let items = format!("{from}job/");
    rewrite_links(value, &items, from, to);
}

fn rewrite_links(value: &mut Value, items: &str, from: &str, to: &str) {
    match value {
        Value::Array(list) => list.iter_mut().for_each(|v| rewrite_links(v, items, from, to)),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s)
                        if matches!(
                            key.as_str(),
                            "href" | "url" | "consoleUrl" | "proceedUrl" | "abortUrl" | "redirectApprovalUrl"
                        ) =>
                    {
                        if s.starts_with(items)
                            && let Some(rest) = s.strip_prefix(from)
                        {
                            *s = format!("{to}{rest}");
                        }
                    }
                    other => rewrite_links(other, items, from, to),
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://j.example/";

    fn only(allowed: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |name: &str| allowed.iter().any(|a| name == *a || name.starts_with(&format!("{a}/")))
    }

    #[test]
    fn hidden_jobs_leave_no_trace_in_listings() {
        let root = json!({
            "_class": "hudson.model.Hudson",
            "jobs": [
                {"name": "open", "url": "http://j.example/job/open/"},
                {"name": "secret", "url": "http://j.example/job/secret/"},
                {"name": "team", "url": "http://j.example/job/team/", "jobs": [
                    {"name": "api", "url": "http://j.example/job/team/job/api/"},
                    {"name": "hidden", "url": "http://j.example/job/team/job/hidden/"},
                    {"name": "nourl"},
                ]},
            ],
            "views": [{"name": "all", "jobs": [{"name": "secret"}, {"name": "open", "url": "http://j.example/job/open/"}]}],
            "primaryView": {"name": "all", "url": "http://j.example/"},
        });
        let visible = only(&["open", "team/api", "team/nourl"]);
        // "team" itself is visible as the folder holding team/api.
        let visible = |n: &str| visible(n) || n == "team";
        let out = filter_visible(root, BASE, None, &visible);
        let text = out.to_string();
        assert!(!text.contains("secret") && !text.contains("hidden"), "{text}");
        assert!(text.contains("team/job/api") && text.contains("nourl"), "{text}");
        // tree=jobs[name] without urls: names compose by nesting; unknown ones are dropped.
        let bare = json!({"jobs": [{"name": "open"}, {"name": "secret"}, {"name": "team", "jobs": [{"name": "api"}, {"name": "hidden"}]}]});
        let out = filter_visible(bare, BASE, None, &visible).to_string();
        assert!(!out.contains("secret") && !out.contains("hidden") && out.contains("api"), "{out}");
    }

    #[test]
    fn objects_pointing_at_hidden_jobs_are_removed_anywhere() {
        let nodes = json!({"computer": [{"executors": [
            {"currentExecutable": {"url": "http://j.example/job/secret/7/", "number": 7}},
            {"currentExecutable": {"url": "http://j.example/job/open/3/", "number": 3}},
        ]}]});
        let out = filter_visible(nodes, BASE, None, &only(&["open"])).to_string();
        assert!(!out.contains("secret") && out.contains("job/open/3"), "{out}");
        let job = json!({"name": "open", "url": "http://j.example/job/open/", "downstreamProjects": [
            {"name": "secret", "url": "http://j.example/job/secret/"}]});
        let out = filter_visible(job, BASE, None, &only(&["open"])).to_string();
        assert!(!out.contains("secret"), "{out}");
    }

    #[test]
    fn view_configs_list_only_visible_jobs() {
        let xml = "<hudson.model.ListView>\n  <name>v</name>\n  <jobNames>\n    <comparator class=\"hudson.util.CaseInsensitiveComparator\"/>\n    <string>open</string>\n    <string>secret</string>\n    <string>a&amp;b</string>\n  </jobNames>\n</hudson.model.ListView>";
        let out = filter_view_config(xml, None, &only(&["open", "a&b"]));
        assert!(out.contains("<string>open</string>") && out.contains("a&amp;b"), "{out}");
        assert!(!out.contains("secret") && out.contains("comparator"), "{out}");
        // In a folder, names are relative to it.
        let out = filter_view_config(xml, Some("team"), &only(&["team/secret"]));
        assert!(out.contains("secret") && !out.contains("open"), "{out}");
        // Anything but plain names: the list is emptied.
        let odd = "<jobNames><string><![CDATA[secret]]></string><string>open</string></jobNames>";
        assert_eq!(filter_view_config(odd, None, &only(&["open"])), "<jobNames></jobNames>");
        assert_eq!(filter_view_config("<jobNames><string>secret</string>", None, &only(&["open"])), "");
    }

    #[test]
    fn queue_items_belong_to_their_task() {
        let item = json!({"id": 4, "task": {"name": "secret", "url": "http://j.example/job/secret/"}});
        assert!(!queue_item_visible(&item, BASE, &only(&["open"])));
        assert!(queue_item_visible(&item, BASE, &only(&["secret"])));
        assert!(!queue_item_visible(&json!({"id": 4}), BASE, &only(&["secret"])), "no owner: hidden");
        let queue = json!({"items": [item, {"id": 5, "task": {"url": "http://j.example/job/open/"}}]});
        let out = filter_visible(queue, BASE, None, &only(&["open"])).to_string();
        assert!(!out.contains("secret") && out.contains("\"id\":5"), "{out}");
    }

    #[test]
    fn trigger_parameters_are_read_as_jenkins_reads_them() {
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let json_field = r#"{"parameter": [{"name": "ENV", "value": "production"}, {"name": "N", "value": 3}]}"#;
        let got = trigger_parameters(&pairs(&[("ENV", "staging"), ("delay", "0sec")]), &pairs(&[("json", json_field)]));
        // Every way of passing a value is seen; the last one is checked and is the one sent.
        assert_eq!(got.ok(), Some(pairs(&[("ENV", "production"), ("N", "3")])));
        assert!(trigger_parameters(&pairs(&[("token", "x")]), &[]).is_err(), "build tokens are refused");
        assert!(trigger_parameters(&[], &pairs(&[("json", "{not json")])).is_err());
    }

    #[test]
    fn pipeline_links_are_rewritten_to_the_proxy() {
        let mut v = json!({"_links": {"self": {"href": "/job/a/16/wfapi/describe"}},
            "stages": [{"_links": {"log": {"href": "/job/a/16/execution/node/6/wfapi/log"}}, "name": "/job/x"}],
            "consoleUrl": "/job/a/16/execution/node/6/log", "other": {"href": "/manage/"}});
        rewrite_root_relative(&mut v, "/", "/jenkins/prod/");
        assert_eq!(v["_links"]["self"]["href"], "/jenkins/prod/job/a/16/wfapi/describe");
        assert_eq!(v["stages"][0]["_links"]["log"]["href"], "/jenkins/prod/job/a/16/execution/node/6/wfapi/log");
        assert_eq!(v["consoleUrl"], "/jenkins/prod/job/a/16/execution/node/6/log");
        assert_eq!(v["stages"][0]["name"], "/job/x", "free text is not a link");
        assert_eq!(v["other"]["href"], "/manage/", "only links into items");
        // An input step's answers (pendingInputActions) point at the proxy too.
        let mut v = json!([{"id": "Ef95", "proceedUrl": "/job/a/11/input/Ef95/proceedEmpty",
            "abortUrl": "/job/a/11/input/Ef95/abort", "redirectApprovalUrl": "/job/a/11/input/"}]);
        rewrite_root_relative(&mut v, "/", "/jenkins/prod/");
        assert_eq!(v[0]["proceedUrl"], "/jenkins/prod/job/a/11/input/Ef95/proceedEmpty");
        assert_eq!(v[0]["abortUrl"], "/jenkins/prod/job/a/11/input/Ef95/abort");
        assert_eq!(v[0]["redirectApprovalUrl"], "/jenkins/prod/job/a/11/input/");
        // A Jenkins under a context path.
        let mut v = json!({"url": "/ci/job/a/14/artifact/x.jar"});
        rewrite_root_relative(&mut v, "/ci/", "/jenkins/prod/");
        assert_eq!(v["url"], "/jenkins/prod/job/a/14/artifact/x.jar");
    }

    #[test]
    fn urls_are_rewritten_to_the_proxy() {
        let mut v = json!({"url": "http://j.example/job/a/", "x": ["http://j.example/queue/item/3/", "http://other/"]});
        rewrite_urls(&mut v, BASE, "http://gate/jenkins/prod/");
        assert_eq!(v["url"], "http://gate/jenkins/prod/job/a/");
        assert_eq!(v["x"][0], "http://gate/jenkins/prod/queue/item/3/");
        assert_eq!(v["x"][1], "http://other/");
    }
}
