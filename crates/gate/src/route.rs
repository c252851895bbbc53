//! # Jenkins URLs as catalog operations (the governed proxy's classifier)
//!
//! The governed proxy (issue #11) receives raw Jenkins requests from clients that believe they talk
//! to Jenkins. Each request is mapped here to exactly one catalog operation and its targets, or
//! refused. The proxy then takes the same path as MCP (`Gate::begin` → executor → `Gate::finish`),
//! so policy and audit see a proxied request as the operation it is.
//!
//! Three rules keep the mapping safe:
//!
//! 1. **Fail closed.** Only the shapes in [`ROUTES`] are recognised. Anything else is
//!    [`Route::Unknown`] (refused: "maps to no operation"); a small set of endpoints is
//!    [`Route::Forbidden`] whatever the grants (script console, CLI, user and security
//!    management, credentials, plugin installation, restart).
//! 2. **Parse once, strictly.** The path is split on `/` and each segment is percent-decoded
//!    exactly once. What a servlet container or Stapler would normalise, strip or reject in its own
//!    way — empty segments (`//`), `.` and `..` (also encoded), `;` path parameters, a decoded `/`
//!    or `\`, control characters, invalid UTF-8 — is refused here rather than guessed at.
//! 3. **Forward what was decided.** The request sent to Jenkins is rebuilt from the classification
//!    ([`Classified::upstream`]: canonical `job/…/` segments encoded as Jenkins encodes them, and
//!    only the query parameters the route allows), never copied from the raw request, so the name
//!    the policy decided on is the name Jenkins resolves.
//!
//! Every pair (operation, route) here is one the operation declares in its catalog `routes`, and
//! every proxied route of the catalog is here (tested below), so the catalog's routes are data
//! that is checked, not prose.

use std::fmt;

use jenkins::path::{JobPath, raw_encode};
use percent_encoding::percent_decode_str;

/// The representation an `api/…` endpoint answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
    Python,
}

impl Format {
    fn parse(segment: &str) -> Option<Format> {
        match segment {
            "json" => Some(Format::Json),
            "xml" => Some(Format::Xml),
            "python" => Some(Format::Python),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Xml => "xml",
            Format::Python => "python",
        }
    }
}

/// Jenkins' build permalinks (jenkins-wire.md §5.12).
pub const PERMALINKS: [&str; 7] = [
    "lastBuild",
    "lastStableBuild",
    "lastSuccessfulBuild",
    "lastFailedBuild",
    "lastUnstableBuild",
    "lastUnsuccessfulBuild",
    "lastCompletedBuild",
];

/// A build named in a URL: a number or a permalink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildRef {
    Number(u64),
    Permalink(&'static str),
}

impl fmt::Display for BuildRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildRef::Number(n) => write!(f, "{n}"),
            BuildRef::Permalink(p) => f.write_str(p),
        }
    }
}

/// A request recognised as a catalog operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The catalog operation (its name, as in `ops::OPERATIONS`).
    pub op: &'static str,
    /// The route it matched, as declared in the operation's catalog `routes`.
    pub route: &'static str,
    /// The job or folder acted on (`None` for the root and controller-wide operations).
    pub job: Option<JobPath>,
    pub build: Option<BuildRef>,
    /// A queue item id from the path or the query (`queue/item/N`, `cancelItem?id=N`).
    pub queue_id: Option<u64>,
    pub format: Option<Format>,
    /// The source of a copy (`createItem?mode=copy&from=`), resolved as Jenkins resolves it:
    /// relative to the folder the new item is created in, or from the root when it starts with `/`.
    pub from: Option<JobPath>,
    /// The views the request went through before its item (`/view/a/view/b/job/x/…`), in order:
    /// Jenkins answers 404 when one of them does not exist, so the proxy asks Jenkins through them.
    pub views: Vec<String>,
    /// An input step's id (`input/{input}/…`).
    pub input: Option<String>,
    /// The path and query to send to Jenkins, relative to the controller's base URL, rebuilt from
    /// this classification (for logs and tests; the proxy rebuilds it with the canonical job the
    /// policy decided on: [`Classified::upstream_with`]).
    pub upstream: String,
    pattern: &'static str,
    name: Option<String>,
    query: Vec<(String, String)>,
}

impl Classified {
    /// The path (relative to the controller's base URL) and the query to send to Jenkins, with
    /// `job` in place of the job named in the request.
    pub fn upstream_with(&self, job: Option<&JobPath>) -> (String, Vec<(String, String)>) {
        let path = if self.pattern.ends_with("/createItem") {
            create_item_path(job)
        } else {
            upstream_path(
                self.pattern,
                job,
                self.build,
                self.queue_id,
                self.format,
                self.name.as_deref(),
                self.input.as_deref(),
            )
        };
        (format!("{}{path}", views_path(&self.views)), self.query.clone())
    }

    /// The view named in the path (`view/{view}/…`), or the node (`computer/{node}/…`).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The query parameters the route passes on (decoded).
    pub fn query(&self) -> &[(String, String)] {
        &self.query
    }

    /// Asks Jenkins for `format` instead (the proxy reads JSON and renders the others itself).
    pub fn with_format(mut self, format: Format) -> Classified {
        if self.format.is_some() {
            self.format = Some(format);
        }
        self
    }
}

/// What a raw request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Op(Box<Classified>),
    /// Never forwarded, whatever the grants; the reason is one line for the 403 page.
    Forbidden(&'static str),
    /// Maps to no operation: refused.
    Unknown,
    /// `crumbIssuer/api/…`: agents are exempt from crumbs (as API-token users are in Jenkins); the
    /// proxy answers as a Jenkins without CSRF protection does (404), and adds the controller's
    /// crumb itself when it forwards a write. The proxy answers with a placeholder crumb rather
    /// than 404, because api4jenkins (2.1) fails on a 404 here; the crumb is never checked.
    Crumb,
    /// `GET /me/api/json` (or `python`): who the client is. Answered by jgate with the agent's
    /// identity; nothing is forwarded (Jenkins would answer for the controller's token user).
    WhoAmI(Format),
    /// `GET /user/NAME/api/json` (or `python`): the surface answers it as [`Route::WhoAmI`] when
    /// NAME is the calling agent, and refuses it otherwise (Jenkins' users are not served).
    User(String, Format),
    /// A path jgate does not parse the way Jenkins might (see rule 2); the reason says what.
    Malformed(&'static str),
}

/// One proxied route: method, pattern, the operation, and the query parameters passed on.
///
/// Pattern segments: literals; `{job}` (one or more `job/NAME` pairs: a job or a folder);
/// `{build}` (a number or a permalink); `{id}` (a queue item number); `{format}` (`json`, `xml`,
/// `python`); `{node}` and `{view}` (one name); a trailing `*` (any further segments).
struct Pattern {
    method: &'static str,
    path: &'static str,
    op: &'static str,
    /// Query parameters passed on to Jenkins; others are refused (`*`: any, for parameters of
    /// `buildWithParameters`, which the policy's parameter constraints check).
    query: &'static [&'static str],
    /// The route as the operation's catalog entry spells it.
    catalog: &'static str,
    /// Query parameters (name, value) the request must carry for this pattern to apply
    /// (`createItem` is a copy with `mode=copy`, a creation from config.xml without a mode).
    requires: &'static [(&'static str, &'static str)],
}

const API_QUERY: &[&str] = &["tree", "depth"];
const CREATE_QUERY: &[&str] = &["name", "mode", "from"];

/// Every route the proxy forwards. Order matters only where two patterns could match one path;
/// none can today (tested).
const ROUTES: &[Pattern] = &[
    // The root page: clients read the Jenkins version from its X-Jenkins header.
    Pattern { method: "GET", path: "/", op: "get_system_info", query: &[], catalog: "GET /", requires: &[] },
    Pattern {
        method: "GET",
        path: "/api/{format}",
        op: "list_jobs",
        query: API_QUERY,
        catalog: "GET /api/json?tree=jobs[...]",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/{job}/api/{format}",
        op: "get_job",
        query: API_QUERY,
        catalog: "GET /{job}/api/json",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/{job}/{build}/api/{format}",
        op: "get_build",
        query: API_QUERY,
        catalog: "GET /{job}/{build}/api/json",
        requires: &[],
    },
    // The EnvInject plugin's variables of a build (Jenkins answers 404 without the plugin); the
    // values pass the sanitizer like every answer.
    Pattern {
        method: "GET",
        path: "/{job}/{build}/injectedEnvVars/api/{format}",
        op: "get_build",
        query: API_QUERY,
        catalog: "GET /{job}/{build}/injectedEnvVars/api/json",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/{job}/{build}/consoleText",
        op: "get_build_log",
        query: &[],
        catalog: "GET /{job}/{build}/consoleText",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/{job}/{build}/logText/progressiveText",
        op: "get_build_log",
        query: &["start"],
        catalog: "GET /{job}/{build}/logText/progressiveText",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/{job}/{build}/testReport/api/{format}",
        op: "get_test_report",
        query: API_QUERY,
        catalog: "GET /{job}/{build}/testReport/api/json",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/{job}/wfapi/runs",
        op: "get_pipeline_run",
        query: &[],
        catalog: "GET /{job}/wfapi/runs",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/{job}/{build}/wfapi/describe",
        op: "get_pipeline_run",
        query: &[],
        catalog: "GET /{job}/{build}/wfapi/describe",
        requires: &[],
    },
    // A Pipeline flow node (a stage or a step): its description and its log (jenkins-wire.md §12.1).
    Pattern {
        method: "GET",
        path: "/{job}/{build}/execution/node/{id}/wfapi/describe",
        op: "get_pipeline_run",
        query: &[],
        catalog: "GET /{job}/{build}/execution/node/{id}/wfapi/*",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/{job}/{build}/execution/node/{id}/wfapi/log",
        op: "get_pipeline_run",
        query: &[],
        catalog: "GET /{job}/{build}/execution/node/{id}/wfapi/*",
        requires: &[],
    },
    // A Pipeline run's artifacts with their sizes (jenkins-wire.md §12.4).
    Pattern {
        method: "GET",
        path: "/{job}/{build}/wfapi/artifacts",
        op: "list_artifacts",
        query: &[],
        catalog: "GET /{job}/{build}/wfapi/artifacts",
        requires: &[],
    },
    // A flow node's whole log (its `consoleUrl`, jenkins-wire.md §12.4): text, cleaned as it streams.
    Pattern {
        method: "GET",
        path: "/{job}/{build}/execution/node/{id}/log",
        op: "get_stage_log",
        query: &[],
        catalog: "GET /{job}/{build}/execution/node/{id}/log",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/{job}/{build}/wfapi/pendingInputActions",
        op: "get_pipeline_run",
        query: &[],
        catalog: "GET /{job}/{build}/wfapi/pendingInputActions",
        requires: &[],
    },
    // A view's configuration: the job names it lists are filtered to those the agent may see.
    Pattern {
        method: "GET",
        path: "/view/{view}/config.xml",
        op: "list_views",
        query: &[],
        catalog: "GET /view/{view}/config.xml",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/{job}/view/{view}/config.xml",
        op: "get_job",
        query: &[],
        catalog: "GET /{folder}/view/{view}/config.xml",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/queue/api/{format}",
        op: "get_queue",
        query: API_QUERY,
        catalog: "GET /queue/api/json",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/queue/item/{id}/api/{format}",
        op: "get_queue",
        query: API_QUERY,
        catalog: "GET /queue/item/{id}/api/json",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/view/{view}/api/{format}",
        op: "list_views",
        query: API_QUERY,
        catalog: "GET /view/{view}/api/json",
        requires: &[],
    },
    // A folder's view (api4jenkins lists a folder through its `All` view): the folder's items,
    // read as the folder is read and filtered as every listing is.
    Pattern {
        method: "GET",
        path: "/{job}/view/{view}/api/{format}",
        op: "get_job",
        query: API_QUERY,
        catalog: "GET /{folder}/view/{view}/api/json",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/computer/api/{format}",
        op: "list_nodes",
        query: API_QUERY,
        catalog: "GET /computer/api/json",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/computer/{node}/api/{format}",
        op: "get_node",
        query: API_QUERY,
        catalog: "GET /computer/{node}/api/json",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/pluginManager/api/{format}",
        op: "get_system_info",
        query: API_QUERY,
        catalog: "GET /pluginManager/api/json",
        requires: &[],
    },
    Pattern {
        method: "GET",
        path: "/{job}/config.xml",
        op: "get_job_config",
        query: &[],
        catalog: "GET /{job}/config.xml",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/config.xml",
        op: "update_job_config",
        query: &[],
        catalog: "POST /{job}/config.xml",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/enable",
        op: "enable_job",
        query: &[],
        catalog: "POST /{job}/enable",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/disable",
        op: "disable_job",
        query: &[],
        catalog: "POST /{job}/disable",
        requires: &[],
    },
    // `DELETE /job/X/` (Jenkins answers 204: AbstractItem is HttpDeletable, jenkins-wire.md §10.9).
    Pattern {
        method: "DELETE",
        path: "/{job}",
        op: "delete_job",
        query: &[],
        catalog: "DELETE /{job}/",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/doDelete",
        op: "delete_job",
        query: &[],
        catalog: "POST /{job}/doDelete",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/build",
        op: "trigger_build",
        query: &["delay"],
        catalog: "POST /{job}/build",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/buildWithParameters",
        op: "trigger_build",
        query: &["*"],
        catalog: "POST /{job}/buildWithParameters",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/{build}/stop",
        op: "stop_build",
        query: &[],
        catalog: "POST /{job}/{build}/stop",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/{build}/term",
        op: "stop_build",
        query: &[],
        catalog: "POST /{job}/{build}/term",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/{build}/kill",
        op: "stop_build",
        query: &[],
        catalog: "POST /{job}/{build}/kill",
        requires: &[],
    },
    // workflow-cps' ReplayAction (docs/twin.md): served by the typed `replay`, whose script cap,
    // needs (build and config full use) and audit summary apply as to an MCP call.
    Pattern {
        method: "POST",
        path: "/{job}/{build}/replay/run",
        op: "replay",
        query: &[],
        catalog: "POST /{job}/{build}/replay/run",
        requires: &[],
    },
    // createItem (jenkins-wire.md §10.8): `{job}` here is the folder the item is created in; the
    // classification names the new item (folder + `name=`) and, for a copy, its source.
    Pattern {
        method: "POST",
        path: "/createItem",
        op: "copy_job",
        query: CREATE_QUERY,
        catalog: "POST /createItem?name={name}&mode=copy&from={from}",
        requires: &[("mode", "copy")],
    },
    Pattern {
        method: "POST",
        path: "/{job}/createItem",
        op: "copy_job",
        query: CREATE_QUERY,
        catalog: "POST /{folder}/createItem?name={name}&mode=copy&from={from}",
        requires: &[("mode", "copy")],
    },
    Pattern {
        method: "POST",
        path: "/createItem",
        op: "create_job",
        query: &["name", "mode"],
        catalog: "POST /createItem?name={name}",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/createItem",
        op: "create_job",
        query: &["name", "mode"],
        catalog: "POST /{folder}/createItem?name={name}",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/{build}/doDelete",
        op: "delete_build",
        query: &[],
        catalog: "POST /{job}/{build}/doDelete",
        requires: &[],
    },
    // A rename: the new name (`newName`, in the query or the form) is checked by the operation.
    Pattern {
        method: "POST",
        path: "/{job}/confirmRename",
        op: "rename_job",
        query: &["newName"],
        catalog: "POST /{job}/confirmRename?newName={name}",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/doRename",
        op: "rename_job",
        query: &["newName"],
        catalog: "POST /{job}/doRename?newName={name}",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/submitDescription",
        op: "set_description",
        query: &["description"],
        catalog: "POST /{job}/submitDescription",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/{build}/submitDescription",
        op: "set_description",
        query: &["description"],
        catalog: "POST /{job}/{build}/submitDescription",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/nextbuildnumber/submit",
        op: "set_next_build_number",
        query: &[],
        catalog: "POST /{job}/nextbuildnumber/submit",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/doWipeOutWorkspace",
        op: "wipe_workspace",
        query: &[],
        catalog: "POST /{job}/doWipeOutWorkspace",
        requires: &[],
    },
    // A Pipeline input step (jenkins-wire.md §12.1: the `proceedUrl` / `abortUrl` of pendingInputActions).
    Pattern {
        method: "POST",
        path: "/{job}/{build}/input/{input}/proceedEmpty",
        op: "answer_input",
        query: &[],
        catalog: "POST /{job}/{build}/input/{input}/proceedEmpty",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/{build}/input/{input}/proceed",
        op: "answer_input",
        query: &[],
        catalog: "POST /{job}/{build}/input/{input}/proceed",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/{build}/input/{input}/abort",
        op: "answer_input",
        query: &[],
        catalog: "POST /{job}/{build}/input/{input}/abort",
        requires: &[],
    },
    // Views (at the root, or in the folder `{job}`): the view's name for createView comes from the
    // query or the form, as Jenkins reads it; the policy decides on the folder that holds the view.
    Pattern {
        method: "POST",
        path: "/createView",
        op: "manage_view",
        query: &["name"],
        catalog: "POST /createView?name={name}",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/createView",
        op: "manage_view",
        query: &["name"],
        catalog: "POST /{folder}/createView?name={name}",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/view/{view}/config.xml",
        op: "manage_view",
        query: &[],
        catalog: "POST /view/{view}/config.xml",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/view/{view}/config.xml",
        op: "manage_view",
        query: &[],
        catalog: "POST /{folder}/view/{view}/config.xml",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/view/{view}/doDelete",
        op: "manage_view",
        query: &[],
        catalog: "POST /view/{view}/doDelete",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/view/{view}/doDelete",
        op: "manage_view",
        query: &[],
        catalog: "POST /{folder}/view/{view}/doDelete",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/view/{view}/addJobToView",
        op: "manage_view",
        query: &["name"],
        catalog: "POST /view/{view}/addJobToView?name={name}",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/view/{view}/addJobToView",
        op: "manage_view",
        query: &["name"],
        catalog: "POST /{folder}/view/{view}/addJobToView?name={name}",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/view/{view}/removeJobFromView",
        op: "manage_view",
        query: &["name"],
        catalog: "POST /view/{view}/removeJobFromView?name={name}",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/{job}/view/{view}/removeJobFromView",
        op: "manage_view",
        query: &["name"],
        catalog: "POST /{folder}/view/{view}/removeJobFromView?name={name}",
        requires: &[],
    },
    Pattern {
        method: "POST",
        path: "/queue/cancelItem",
        op: "cancel_queue_item",
        query: &["id"],
        catalog: "POST /queue/cancelItem?id={id}",
        requires: &[],
    },
];

/// First path segments that are never forwarded, with the reason shown to the client.
const FORBIDDEN_ROOTS: &[(&str, &str)] = &[
    ("script", "the script console runs arbitrary code on the controller"),
    ("scriptText", "the script console runs arbitrary code on the controller"),
    ("cli", "the Jenkins CLI endpoint can do anything its user can"),
    ("jnlpJars", "agent connection files are not served to agents of jgate"),
    ("user", "user accounts and their API tokens are managed in Jenkins, not through jgate"),
    ("me", "user accounts and their API tokens are managed in Jenkins, not through jgate"),
    ("securityRealm", "security configuration is not reachable through jgate"),
    ("configureSecurity", "security configuration is not reachable through jgate"),
    ("credentials", "credentials are not reachable through jgate"),
    ("manage", "Jenkins administration is not reachable through jgate"),
    ("configure", "Jenkins administration is not reachable through jgate"),
    ("configSubmit", "Jenkins administration is not reachable through jgate"),
    ("updateCenter", "installing or updating plugins is not reachable through jgate"),
    ("restart", "restarting or stopping Jenkins is not reachable through jgate"),
    ("safeRestart", "restarting or stopping Jenkins is not reachable through jgate"),
    ("exit", "restarting or stopping Jenkins is not reachable through jgate"),
    ("safeExit", "restarting or stopping Jenkins is not reachable through jgate"),
    ("quietDown", "restarting or stopping Jenkins is not reachable through jgate"),
    ("cancelQuietDown", "restarting or stopping Jenkins is not reachable through jgate"),
    ("reload", "restarting or stopping Jenkins is not reachable through jgate"),
];

/// Segments never forwarded wherever they appear (`/computer/x/script`, `/job/x/credentials/…`,
/// form-validation endpoints under `descriptorByName` that can run code or reach the network).
const FORBIDDEN_ANYWHERE: &[(&str, &str)] = &[
    ("script", "the script console runs arbitrary code on the controller"),
    ("scriptText", "the script console runs arbitrary code on the controller"),
    ("credentials", "credentials are not reachable through jgate"),
    ("descriptorByName", "form validation endpoints can run code or reach the network"),
    ("configSubmit", "configuration forms are not reachable through jgate"),
];

/// Plugin manager endpoints other than its read-only API.
const PLUGIN_MANAGER_REASON: &str = "installing or updating plugins is not reachable through jgate";

/// Classifies a raw request: its method, its path below the controller's proxy base (starting with
/// `/`), and its raw query string (without `?`, not decoded).
pub fn classify(method: &str, path: &str, query: Option<&str>) -> Route {
    // The crumb issuer is answered by jgate itself and nothing is forwarded, so a spelling with
    // empty segments (jenkinsapi asks for `<base>/crumbIssuer/...` after a base ending in `/`)
    // needs no refusal: there is no second reading of it to guard against.
    if method.eq_ignore_ascii_case("GET") && path.split('/').find(|s| !s.is_empty()) == Some("crumbIssuer") {
        return Route::Crumb;
    }
    let segments = match split_path(path) {
        Ok(s) => s,
        Err(why) => return Route::Malformed(why),
    };
    // HEAD is GET without the body (the surface sends none): it reads what GET reads.
    let method = if method.eq_ignore_ascii_case("HEAD") { "GET" } else { method };
    // `/view/V/job/X/…` resolves to the item X as `/job/X/…` does (jenkins-wire.md §4; Stapler
    // asks the view for the item, which answers from its owner): the view prefix, nested or not,
    // is dropped before the job path is read, so both spellings are one request to the policy.
    let (views, segments) = strip_view_prefix(segments);
    if method.eq_ignore_ascii_case("GET")
        && let [me, api, format] = segments.as_slice()
        && me == "me"
        && api == "api"
        && let Some(format) = Format::parse(format)
    {
        return Route::WhoAmI(format);
    }
    if method.eq_ignore_ascii_case("GET")
        && let [user, name, api, format] = segments.as_slice()
        && user == "user"
        && api == "api"
        && let Some(format) = Format::parse(format)
    {
        return Route::User(name.clone(), format);
    }
    if let Some(reason) = forbidden(&segments) {
        return Route::Forbidden(reason);
    }
    if segments.first().is_some_and(|s| s == "crumbIssuer") && method.eq_ignore_ascii_case("GET") {
        return Route::Crumb;
    }
    let pairs = match parse_query(query.unwrap_or("")) {
        Ok(p) => p,
        Err(why) => return Route::Malformed(why),
    };
    for pattern in ROUTES {
        if !pattern.method.eq_ignore_ascii_case(method) {
            continue;
        }
        if !pattern.requires.iter().all(|(k, v)| pairs.iter().any(|(pk, pv)| pk == k && pv == v)) {
            continue;
        }
        let Some(found) = match_pattern(pattern.path, &segments) else { continue };
        return finish(pattern, found, &pairs, views);
    }
    Route::Unknown
}

/// The decoded segments of a path; a trailing `/` is allowed (Jenkins answers both forms).
fn split_path(path: &str) -> Result<Vec<String>, &'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("the path must start with /");
    };
    if rest.contains(';') {
        return Err("path parameters (;) are not accepted");
    }
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut out = Vec::new();
    for raw in rest.split('/') {
        if raw.is_empty() {
            return Err("empty path segments (//) are not accepted");
        }
        if has_bad_escape(raw) {
            return Err("a % in the path is not followed by two hex digits");
        }
        let decoded = percent_decode_str(raw).decode_utf8().map_err(|_| "the path is not valid UTF-8 once decoded")?;
        if decoded == "." || decoded == ".." {
            return Err("'.' and '..' segments are not accepted");
        }
        if decoded.contains(['/', '\\']) {
            return Err("an encoded / or \\ inside a path segment is not accepted");
        }
        if decoded.chars().any(char::is_control) {
            return Err("control characters in the path are not accepted");
        }
        if decoded.is_empty() {
            return Err("empty path segments are not accepted");
        }
        out.push(decoded.into_owned());
    }
    Ok(out)
}

/// Splits off leading `view/NAME` pairs when a `job/` segment follows them (only then: a view's
/// own API, `/view/V/api/json`, stays a view request): the views' names, and the rest.
fn strip_view_prefix(segments: Vec<String>) -> (Vec<String>, Vec<String>) {
    let mut at = 0;
    while segments.get(at).is_some_and(|s| s == "view") && segments.get(at + 1).is_some() {
        at += 2;
    }
    if at > 0 && segments.get(at).is_some_and(|s| s == "job") {
        let views = segments[..at].iter().skip(1).step_by(2).cloned().collect();
        (views, segments[at..].to_vec())
    } else {
        (Vec::new(), segments)
    }
}

/// `view/a/view/b/` for the views a request went through (empty for none).
pub fn views_path(views: &[String]) -> String {
    views.iter().map(|v| format!("view/{}/", raw_encode(v))).collect()
}

fn has_bad_escape(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

fn forbidden(segments: &[String]) -> Option<&'static str> {
    let first = segments.first()?;
    if let Some((_, reason)) = FORBIDDEN_ROOTS.iter().find(|(name, _)| name == first) {
        return Some(reason);
    }
    if first == "pluginManager" && !(segments.len() == 3 && segments[1] == "api") {
        return Some(PLUGIN_MANAGER_REASON);
    }
    // Inside a job path a segment after `job` is an item name, which may be anything: only the
    // structural segments are checked.
    let mut i = 0;
    while i < segments.len() {
        if segments[i] == "job" || segments[i] == "view" {
            i += 2;
            continue;
        }
        if let Some((_, reason)) = FORBIDDEN_ANYWHERE.iter().find(|(name, _)| *name == segments[i]) {
            return Some(reason);
        }
        i += 1;
    }
    None
}

#[derive(Default)]
struct Found {
    job: Option<Vec<String>>,
    build: Option<BuildRef>,
    id: Option<u64>,
    format: Option<Format>,
    name: Option<String>,
    input: Option<String>,
}

fn match_pattern(pattern: &str, segments: &[String]) -> Option<Found> {
    let mut found = Found::default();
    let mut at = 0;
    for part in pattern.trim_start_matches('/').split('/').filter(|p| !p.is_empty()) {
        match part {
            "{job}" => {
                let mut names = Vec::new();
                while segments.get(at).is_some_and(|s| s == "job") {
                    names.push(segments.get(at + 1)?.clone());
                    at += 2;
                }
                if names.is_empty() {
                    return None;
                }
                found.job = Some(names);
            }
            "{build}" => {
                let s = segments.get(at)?;
                found.build = Some(parse_build(s)?);
                at += 1;
            }
            "{id}" => {
                found.id = Some(parse_number(segments.get(at)?)?);
                at += 1;
            }
            "{format}" => {
                found.format = Some(Format::parse(segments.get(at)?)?);
                at += 1;
            }
            "{node}" | "{view}" => {
                found.name = Some(segments.get(at)?.clone());
                at += 1;
            }
            "{input}" => {
                found.input = Some(segments.get(at)?.clone());
                at += 1;
            }
            literal => {
                if segments.get(at)? != literal {
                    return None;
                }
                at += 1;
            }
        }
    }
    (at == segments.len()).then_some(found)
}

/// A build number as Jenkins accepts it: decimal digits only (no sign, no leading `+`), at most
/// what fits; permalinks by their exact name.
fn parse_build(s: &str) -> Option<BuildRef> {
    if let Some(p) = PERMALINKS.iter().find(|p| **p == s) {
        return Some(BuildRef::Permalink(p));
    }
    parse_number(s).map(BuildRef::Number)
}

fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_query(query: &str) -> Result<Vec<(String, String)>, &'static str> {
    if query.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if has_bad_escape(pair) {
            return Err("a % in the query is not followed by two hex digits");
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            let plus = s.replace('+', " ");
            percent_decode_str(&plus).decode_utf8().map(|c| c.into_owned())
        };
        let (Ok(k), Ok(v)) = (decode(k), decode(v)) else {
            return Err("the query is not valid UTF-8 once decoded");
        };
        out.push((k, v));
    }
    Ok(out)
}

fn finish(pattern: &'static Pattern, found: Found, pairs: &[(String, String)], views: Vec<String>) -> Route {
    let any_query = pattern.query.contains(&"*");
    let mut kept = Vec::new();
    for (k, v) in pairs {
        if any_query || pattern.query.contains(&k.as_str()) {
            kept.push((k.clone(), v.clone()));
        } else {
            return Route::Malformed("a query parameter this endpoint does not take through jgate");
        }
    }
    let job = match found.job.map(|names| JobPath::parse(&names.join("/"))) {
        Some(Ok(job)) => Some(job),
        Some(Err(_)) => return Route::Malformed("not a valid item name"),
        None => None,
    };
    let (job, from) = if pattern.path.ends_with("/createItem") {
        match create_item_targets(pattern.op, job, &kept) {
            Ok(t) => t,
            Err(why) => return Route::Malformed(why),
        }
    } else {
        (job, None)
    };
    let mut queue_id = found.id;
    if pattern.op == "cancel_queue_item" {
        queue_id = match kept.iter().find(|(k, _)| k == "id").and_then(|(_, v)| parse_number(v)) {
            Some(id) if kept.len() == 1 => Some(id),
            _ => return Route::Malformed("cancelItem needs exactly one numeric id"),
        };
    }
    let mut upstream = views_path(&views);
    upstream.push_str(&if pattern.path.ends_with("/createItem") {
        create_item_path(job.as_ref())
    } else {
        upstream_path(
            pattern.path,
            job.as_ref(),
            found.build,
            queue_id,
            found.format,
            found.name.as_deref(),
            found.input.as_deref(),
        )
    });
    if !kept.is_empty() {
        let encoded: Vec<String> =
            kept.iter().map(|(k, v)| format!("{}={}", query_encode(k), query_encode(v))).collect();
        upstream.push('?');
        upstream.push_str(&encoded.join("&"));
    }
    Route::Op(Box::new(Classified {
        op: pattern.op,
        route: pattern.catalog,
        job,
        build: found.build,
        queue_id,
        format: found.format,
        from,
        views,
        input: found.input,
        upstream,
        pattern: pattern.path,
        name: found.name,
        query: kept,
    }))
}

/// The new item (its folder joined with `name=`) and, for a copy, the source. The name is one item
/// name (no `/`); the rest of Jenkins' name rules (`checkGoodName`) are Jenkins' to apply and
/// report (400 with `X-Error`). Exactly one `name`; a copy exactly one `mode=copy` and one `from`.
fn create_item_targets(
    op: &str,
    folder: Option<JobPath>,
    query: &[(String, String)],
) -> Result<(Option<JobPath>, Option<JobPath>), &'static str> {
    let one = |key: &str| -> Result<Option<&str>, &'static str> {
        let mut values = query.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err("a createItem parameter is given twice");
        }
        Ok(first)
    };
    let Some(name) = one("name")?.filter(|n| !n.is_empty()) else {
        return Err("createItem needs the query parameter 'name'");
    };
    if name.contains(['/', '\\']) || name == "." || name == ".." || name.chars().any(char::is_control) {
        return Err("the new item's name must be one item name (no '/', '\\', '.', '..' or control characters)");
    }
    let parent = folder.as_ref().map(ToString::to_string);
    let full = match &parent {
        Some(p) => format!("{p}/{name}"),
        None => name.to_string(),
    };
    let job = JobPath::parse(&full).map_err(|_| "not a valid item name")?;
    if op != "copy_job" {
        // Form mode: `mode` names the item type (a Java class name), once.
        if let Some(mode) = one("mode")?
            && (mode.is_empty() || !mode.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '$')))
        {
            return Err("createItem's mode must be an item type (a Java class name) or copy");
        }
        return Ok((Some(job), None));
    }
    one("mode")?;
    let Some(from) = one("from")?.filter(|f| !f.is_empty()) else {
        return Err("a copy needs the query parameter 'from'");
    };
    // Jenkins resolves `from` relative to the new item's folder, or from the root after a `/`.
    let full_from = match (from.strip_prefix('/'), &parent) {
        (Some(absolute), _) => absolute.to_string(),
        (None, Some(p)) => format!("{p}/{from}"),
        (None, None) => from.to_string(),
    };
    if full_from.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err("'from' must name an item without empty, '.' or '..' segments");
    }
    let from = JobPath::parse(&full_from).map_err(|_| "'from' is not a valid item name")?;
    Ok((Some(job), Some(from)))
}

/// `createItem` in the new item's folder (the item itself is named by `name=`).
fn create_item_path(job: Option<&JobPath>) -> String {
    let folder = job.and_then(JobPath::parent);
    format!("{}createItem", folder.as_ref().map(JobPath::url_path).unwrap_or_default())
}

/// The path for Jenkins, rebuilt from the parts: names encoded as Jenkins encodes them.
fn upstream_path(
    pattern: &str,
    job: Option<&JobPath>,
    build: Option<BuildRef>,
    id: Option<u64>,
    format: Option<Format>,
    name: Option<&str>,
    input: Option<&str>,
) -> String {
    let mut out = String::new();
    for part in pattern.trim_start_matches('/').split('/').filter(|p| !p.is_empty()) {
        match part {
            "{job}" => {
                if let Some(job) = job {
                    out.push_str(job.url_path().trim_end_matches('/'));
                }
            }
            "{build}" => out.push_str(&build.map(|b| b.to_string()).unwrap_or_default()),
            "{id}" => out.push_str(&id.map(|i| i.to_string()).unwrap_or_default()),
            "{format}" => out.push_str(format.map_or("json", Format::as_str)),
            "{node}" | "{view}" => out.push_str(&raw_encode(name.unwrap_or_default())),
            "{input}" => out.push_str(&raw_encode(input.unwrap_or_default())),
            literal => out.push_str(literal),
        }
        out.push('/');
    }
    // Endpoints are addressed without the trailing slash (as clients send them).
    if out.ends_with('/') {
        out.pop();
    }
    out
}

fn query_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_SET).to_string()
}

/// Everything but unreserved characters and the `tree=` grammar's brackets and commas.
const QUERY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'[')
    .remove(b']')
    .remove(b',');

/// Every (operation, catalog route) pair the proxy forwards.
pub fn proxied_routes() -> impl Iterator<Item = (&'static str, &'static str)> {
    ROUTES.iter().map(|p| (p.op, p.catalog))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, target: &str) -> Classified {
        let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
        match classify(method, path, query) {
            Route::Op(c) => *c,
            other => panic!("{method} {target}: expected an operation, got {other:?}"),
        }
    }

    fn refused(method: &str, target: &str) -> Route {
        let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
        let route = classify(method, path, query);
        assert!(!matches!(route, Route::Op(_)), "{method} {target} must be refused, got {route:?}");
        route
    }

    #[test]
    fn the_usual_client_requests_map_to_their_operations() {
        let c = op("GET", "/job/team/job/api/api/json?tree=jobs[name,url]");
        assert_eq!((c.op, c.job.map(|j| j.to_string())), ("get_job", Some("team/api".into())));
        assert_eq!(c.upstream, "job/team/job/api/api/json?tree=jobs[name,url]");
        let c = op("GET", "/job/app/12/consoleText");
        assert_eq!((c.op, c.build), ("get_build_log", Some(BuildRef::Number(12))));
        let c = op("GET", "/job/app/lastFailedBuild/api/python?depth=1");
        assert_eq!(
            (c.op, c.build, c.format),
            ("get_build", Some(BuildRef::Permalink("lastFailedBuild")), Some(Format::Python))
        );
        let c = op("GET", "/job/app/7/logText/progressiveText?start=1024");
        assert_eq!(c.upstream, "job/app/7/logText/progressiveText?start=1024");
        let c = op("POST", "/job/app/buildWithParameters?ENV=staging&delay=0sec");
        assert_eq!(c.op, "trigger_build");
        let c = op("POST", "/queue/cancelItem?id=42");
        assert_eq!((c.op, c.queue_id), ("cancel_queue_item", Some(42)));
        let c = op("GET", "/queue/item/42/api/json");
        assert_eq!((c.op, c.queue_id), ("get_queue", Some(42)));
        assert_eq!(op("GET", "/api/json?tree=jobs[name]").op, "list_jobs");
        assert_eq!(op("GET", "/computer/(built-in)/api/json").upstream, "computer/(built-in)/api/json");
        // A job named like a permalink or a keyword is still a job: `job/` says so.
        let c = op("GET", "/job/lastBuild/job/api/api/json");
        assert_eq!(c.job.map(|j| j.to_string()), Some("lastBuild/api".into()));
    }

    #[test]
    fn names_are_decoded_once_and_sent_as_jenkins_encodes_them() {
        let c = op("GET", "/job/my%20job/api/json");
        assert_eq!(c.job.map(|j| j.to_string()), Some("my job".into()));
        assert_eq!(c.upstream, "job/my%20job/api/json");
        // A multibranch branch: its name holds %2F, its URL %252F (jenkins-wire.md §4).
        let c = op("GET", "/job/repo/job/feature%252Fx/3/api/json");
        assert_eq!(c.job.as_ref().map(|j| j.to_string()), Some("repo/feature%2Fx".into()));
        assert_eq!(c.upstream, "job/repo/job/feature%252Fx/3/api/json");
        let c = op("GET", "/job/caf%C3%A9/api/json");
        assert_eq!(c.upstream, "job/caf%C3%A9/api/json");
    }

    #[test]
    fn spellings_jenkins_might_resolve_differently_are_refused() {
        for target in [
            "/job/a//api/json",
            "/job//a/api/json",
            "/job/./api/json",
            "/job/../api/json",
            "/job/%2e%2e/api/json",
            "/job/%2E/api/json",
            "/job/a%2Fb/api/json",
            "/job/a%5Cb/api/json",
            "/job/a;jsessionid=x/api/json",
            "/job/a/api/json;x",
            "/job/a%00/api/json",
            "/job/a%0a/api/json",
            "/job/a%zz/api/json",
            "/job/a%/api/json",
            "/job/%ff/api/json",
            "job/a/api/json",
        ] {
            assert!(matches!(refused("GET", target), Route::Malformed(_)), "{target}");
        }
    }

    #[test]
    fn unknown_shapes_and_other_spellings_of_known_ones_are_refused() {
        for (method, target) in [
            ("GET", "/JOB/a/api/json"),
            ("GET", "/Job/a/api/json"),
            ("GET", "/job/a/API/json"),
            ("GET", "/job/a/api/JSON"),
            ("GET", "/job/a/api/yaml"),
            ("GET", "/job/a/12/artifact/x"),
            ("GET", "/job/a/+12/api/json"),
            ("GET", "/job/a/-1/api/json"),
            ("GET", "/job/a/0x1/api/json"),
            ("GET", "/job/a/lastbuild/api/json"),
            ("GET", "/job/a/12/consoleFull"),
            ("GET", "/job/a/ws/secret.txt"),
            ("GET", "/job/a/build"),
            ("POST", "/job/a/api/json"),
            ("DELETE", "/job/a/config.xml"),
            ("GET", "/queue/item/abc/api/json"),
            ("GET", "/view/a/view/b/api/json"),
            ("GET", "/whoAmI/api/json"),
            ("POST", "/"),
        ] {
            assert_eq!(refused(method, target), Route::Unknown, "{method} {target}");
        }
    }

    #[test]
    fn dangerous_endpoints_are_forbidden_whatever_the_spelling() {
        for (method, target) in [
            ("POST", "/scriptText"),
            ("GET", "/script"),
            ("POST", "/computer/(built-in)/scriptText"),
            ("POST", "/computer/agent-1/script"),
            ("POST", "/job/a/script"),
            ("POST", "/cli"),
            ("GET", "/cli/ws"),
            ("POST", "/user/admin/descriptorByName/jenkins.security.ApiTokenProperty/generateNewToken"),
            ("GET", "/me/my-views/api/json"),
            ("POST", "/pluginManager/installNecessaryPlugins"),
            ("POST", "/pluginManager/uploadPlugin"),
            ("GET", "/credentials/store/system/domain/_/api/json"),
            ("GET", "/job/a/credentials/store/folder/api/json"),
            ("POST", "/job/a/descriptorByName/hudson.plugins.git.UserRemoteConfig/checkUrl"),
            ("POST", "/restart"),
            ("POST", "/safeRestart"),
            ("POST", "/exit"),
            ("POST", "/quietDown"),
            ("POST", "/configSubmit"),
            ("POST", "/manage/configureSecurity/configure"),
            ("POST", "/%73criptText"),
            ("POST", "/scriptText/"),
            ("POST", "/updateCenter/safeRestart"),
        ] {
            assert!(matches!(refused(method, target), Route::Forbidden(_)), "{method} {target}");
        }
        // An item may be called "script": as a name it is a job, not the script console.
        assert_eq!(op("GET", "/job/script/api/json").job.map(|j| j.to_string()), Some("script".into()));
        // The plugin manager's read-only API is the one part that is forwarded.
        assert_eq!(op("GET", "/pluginManager/api/json?depth=1").op, "get_system_info");
    }

    #[test]
    fn only_the_query_parameters_a_route_takes_are_forwarded() {
        assert!(matches!(refused("GET", "/job/a/api/json?jsonp=alert"), Route::Malformed(_)));
        assert!(matches!(refused("GET", "/job/a/12/consoleText?start=0"), Route::Malformed(_)));
        assert!(matches!(refused("POST", "/job/a/build?token=x"), Route::Malformed(_)));
        assert!(matches!(refused("POST", "/queue/cancelItem?id=1&id=2"), Route::Malformed(_)));
        assert!(matches!(refused("POST", "/queue/cancelItem?id=x"), Route::Malformed(_)));
        assert!(matches!(refused("POST", "/queue/cancelItem"), Route::Malformed(_)));
        // Values are re-encoded, so what Jenkins reads is what was classified.
        let c = op("POST", "/job/a/buildWithParameters?ENV=a%26b&X=1+2");
        assert_eq!(c.upstream, "job/a/buildWithParameters?ENV=a%26b&X=1%202");
    }

    #[test]
    fn pipeline_flow_nodes_are_read_by_number() {
        let c = op("GET", "/job/p/7/execution/node/12/wfapi/describe");
        assert_eq!((c.op, c.upstream.as_str()), ("get_pipeline_run", "job/p/7/execution/node/12/wfapi/describe"));
        assert_eq!(
            op("GET", "/view/v/job/p/lastBuild/execution/node/6/wfapi/log").upstream,
            "view/v/job/p/lastBuild/execution/node/6/wfapi/log"
        );
        for target in [
            "/job/p/7/execution/node/x/wfapi/describe",
            "/job/p/7/execution/node/-1/wfapi/describe",
            "/job/p/7/execution/node/12/wfapi/inputSubmit",
            "/job/p/7/execution/node/x/log",
            "/job/p/7/execution/node/12/log/x",
            "/job/p/7/execution/node/12/wfapi",
        ] {
            assert_eq!(refused("GET", target), Route::Unknown, "{target}");
        }
        assert_eq!(refused("POST", "/job/p/7/execution/node/12/wfapi/describe"), Route::Unknown);
        assert!(matches!(refused("GET", "/job/p/7/execution/node/12/wfapi/log?start=0"), Route::Malformed(_)));
        // A node's whole log is a stage log read.
        let c = op("GET", "/job/p/7/execution/node/12/log");
        assert_eq!((c.op, c.upstream.as_str()), ("get_stage_log", "job/p/7/execution/node/12/log"));
    }

    #[test]
    fn create_item_names_the_new_item_and_the_source_of_a_copy() {
        let c = op("POST", "/createItem?name=app");
        assert_eq!((c.op, c.job.as_ref().map(ToString::to_string)), ("create_job", Some("app".into())));
        assert_eq!(c.upstream, "createItem?name=app");
        let c = op("POST", "/job/team/createItem?name=my%20app");
        assert_eq!((c.op, c.job.as_ref().map(ToString::to_string)), ("create_job", Some("team/my app".into())));
        assert_eq!(c.upstream, "job/team/createItem?name=my%20app");
        // A copy: `from` relative to the new item's folder, or from the root after a '/'.
        let c = op("POST", "/createItem?name=b&mode=copy&from=a");
        assert_eq!((c.op, c.from.map(|f| f.to_string())), ("copy_job", Some("a".into())));
        let c = op("POST", "/job/team/createItem?name=b&mode=copy&from=a");
        assert_eq!(c.job.map(|j| j.to_string()), Some("team/b".into()));
        assert_eq!(c.from.map(|f| f.to_string()), Some("team/a".into()));
        let c = op("POST", "/job/team/createItem?name=b&mode=copy&from=%2Fother%2Fa");
        assert_eq!(c.from.map(|f| f.to_string()), Some("other/a".into()));
        // Views in front of the folder change nothing.
        let c = op("POST", "/view/all/job/team/createItem?name=x");
        assert_eq!(c.job.map(|j| j.to_string()), Some("team/x".into()));
        // Form mode (the "new item" form): an item of a type, decided on like any creation.
        let c = op("POST", "/job/team/createItem?name=sub&mode=com.cloudbees.hudson.plugins.folder.Folder");
        assert_eq!((c.op, c.job.map(|j| j.to_string())), ("create_job", Some("team/sub".into())));
        for target in [
            "/createItem",
            "/createItem?name=",
            "/createItem?name=a%2Fb",
            "/createItem?name=a%5Cb",
            "/createItem?name=..",
            "/createItem?name=.",
            "/createItem?name=a%0Ab",
            "/createItem?name=a&name=b",
            "/createItem?name=a&mode=copy",
            "/createItem?name=a&mode=copy&from=",
            "/createItem?name=a&mode=copy&from=..%2Fx",
            "/createItem?name=a&mode=copy&from=x%2F%2Fy",
            "/createItem?name=a&mode=copy&from=x%2F.",
            "/createItem?name=a&mode=copy&from=x&from=y",
            "/createItem?name=a&mode=copy&mode=copy&from=x",
            // Form mode takes one item type: a Java class name.
            "/createItem?name=a&mode=",
            "/createItem?name=a&mode=../x",
            "/createItem?name=a&mode=a%20b",
            "/createItem?name=a&mode=x&mode=y",
            "/createItem?name=a&token=x",
            "/job/a/createItem;x?name=b",
        ] {
            assert!(matches!(refused("POST", target), Route::Malformed(_)), "{target}");
        }
        assert_eq!(refused("GET", "/createItem?name=a"), Route::Unknown);
        assert_eq!(refused("POST", "/createItem/x?name=a"), Route::Unknown);
        assert_eq!(refused("POST", "/job/a/1/createItem?name=a"), Route::Unknown);
    }

    #[test]
    fn view_prefixes_and_heads_read_as_jenkins_resolves_them() {
        // The policy decides on the item; Jenkins is asked through the view, so that a view that
        // does not exist answers 404 as in Jenkins.
        let c = op("GET", "/view/all/job/a/api/json");
        assert_eq!((c.op, c.upstream.as_str()), ("get_job", "view/all/job/a/api/json"));
        assert_eq!((c.job.map(|j| j.to_string()), c.views), (Some("a".into()), vec!["all".to_string()]));
        let c = op("GET", "/view/my%20view/view/b%2520c/job/a/1/consoleText");
        assert_eq!(c.upstream, "view/my%20view/view/b%2520c/job/a/1/consoleText");
        assert_eq!(c.views, vec!["my view".to_string(), "b%20c".to_string()]);
        let c = op("GET", "/view/a/view/b/job/x/job/y/3/consoleText");
        assert_eq!((c.op, c.job.map(|j| j.to_string())), ("get_build_log", Some("x/y".into())));
        // The view's own API stays a view request; a view prefix does not open anything.
        assert_eq!(op("GET", "/view/all/api/json").op, "list_views");
        assert!(matches!(refused("POST", "/view/all/job/a/script"), Route::Forbidden(_)));
        assert!(matches!(refused("GET", "/view/all/job/%2e%2e/api/json"), Route::Malformed(_)));
        assert_eq!(refused("GET", "/view/all/job"), Route::Unknown);
        assert!(matches!(refused("GET", "/view/all/scriptText"), Route::Forbidden(_)));
        // A folder's view: the folder read as a folder.
        let c = op("GET", "/job/f/view/All/api/json?tree=jobs[name,url]");
        assert_eq!((c.op, c.job.map(|j| j.to_string())), ("get_job", Some("f".into())));
        assert_eq!(c.upstream, "job/f/view/All/api/json?tree=jobs[name,url]");
        assert_eq!(refused("GET", "/job/f/view/All/job/x/api/json"), Route::Unknown);
        // HEAD reads what GET reads, and nothing else.
        assert_eq!(op("HEAD", "/").op, "get_system_info");
        assert_eq!(op("head", "/job/a/api/json").op, "get_job");
        assert_eq!(refused("HEAD", "/job/a/build"), Route::Unknown);
        // DELETE on the item itself, and on nothing else.
        assert_eq!(op("DELETE", "/job/a/job/b/").op, "delete_job");
        assert_eq!(op("DELETE", "/view/v/job/a").upstream, "view/v/job/a");
        for target in ["/", "/job/a/1/", "/job/a/builds", "/view/v/", "/queue/item/1/"] {
            assert_eq!(refused("DELETE", target), Route::Unknown, "DELETE {target}");
        }
        assert!(matches!(refused("DELETE", "/job/a?x=1"), Route::Malformed(_)));
        assert!(matches!(refused("HEAD", "/scriptText"), Route::Forbidden(_)));
    }

    #[test]
    fn builds_are_deleted_and_described_by_number_or_permalink() {
        let c = op("POST", "/job/team/job/app/12/doDelete");
        assert_eq!(
            (c.op, c.job.map(|j| j.to_string()), c.build),
            ("delete_build", Some("team/app".into()), Some(BuildRef::Number(12)))
        );
        assert_eq!(op("POST", "/job/app/lastBuild/doDelete").build, Some(BuildRef::Permalink("lastBuild")));
        // The job's own doDelete stays delete_job; a build is never reached by another spelling.
        assert_eq!(op("POST", "/job/app/doDelete").op, "delete_job");
        let c = op("POST", "/job/app/3/submitDescription?description=deployed%20to%20staging");
        assert_eq!((c.op, c.build), ("set_description", Some(BuildRef::Number(3))));
        assert_eq!(c.query(), &[("description".to_string(), "deployed to staging".to_string())]);
        assert_eq!(op("POST", "/job/app/submitDescription").build, None);
        assert_eq!(op("POST", "/job/app/nextbuildnumber/submit").op, "set_next_build_number");
        assert_eq!(op("POST", "/job/app/doWipeOutWorkspace").op, "wipe_workspace");
        for (method, target) in [
            ("GET", "/job/app/12/doDelete"),
            ("POST", "/job/app/lastbuild/doDelete"),
            ("POST", "/job/app/+12/doDelete"),
            ("POST", "/job/app/12/doDelete/x"),
            ("POST", "/job/app/nextbuildnumber"),
            ("POST", "/job/app/NextBuildNumber/submit"),
            ("GET", "/job/app/doWipeOutWorkspace"),
            ("POST", "/job/app/ws/doWipeOutWorkspace"),
            ("POST", "/doWipeOutWorkspace"),
            ("POST", "/submitDescription"),
        ] {
            assert_eq!(refused(method, target), Route::Unknown, "{method} {target}");
        }
        for target in [
            "/job/app/12/doDelete?x=1",
            "/job/app/nextbuildnumber/submit?nextBuildNumber=5",
            "/job/app/submitDescription?description=a&token=b",
            "/job/app/12%2Fx/doDelete",
        ] {
            assert!(matches!(refused("POST", target), Route::Malformed(_)), "{target}");
        }
    }

    #[test]
    fn a_rename_names_the_job_and_carries_the_new_name() {
        for action in ["confirmRename", "doRename"] {
            let c = op("POST", &format!("/job/team/job/a/{action}?newName=b"));
            assert_eq!((c.op, c.job.as_ref().map(|j| j.to_string())), ("rename_job", Some("team/a".into())));
            assert_eq!(c.query(), &[("newName".to_string(), "b".to_string())]);
        }
        // Another spelling of the job is the same job; the new name is the operation's to check.
        assert_eq!(
            op("POST", "/view/all/job/TEAM/job/A/confirmRename").job.map(|j| j.to_string()),
            Some("TEAM/A".into())
        );
        assert!(matches!(refused("POST", "/job/a/confirmRename?newName=b&from=c"), Route::Malformed(_)));
        assert!(matches!(refused("POST", "/job/a/confirmRename?newName=b%zz"), Route::Malformed(_)));
        assert_eq!(refused("GET", "/job/a/confirmRename?newName=b"), Route::Unknown);
        assert_eq!(refused("POST", "/confirmRename?newName=b"), Route::Unknown);
    }

    #[test]
    fn views_are_managed_on_their_folder_and_read_with_their_config() {
        let c = op("POST", "/createView?name=v");
        assert_eq!((c.op, c.job.clone()), ("manage_view", None));
        let c = op("POST", "/job/team/createView");
        assert_eq!((c.op, c.job.map(|j| j.to_string())), ("manage_view", Some("team".into())));
        for action in ["config.xml", "doDelete", "addJobToView?name=x", "removeJobFromView?name=x"] {
            let c = op("POST", &format!("/view/my%20v/{action}"));
            assert_eq!((c.op, c.name(), c.job.clone()), ("manage_view", Some("my v"), None), "{action}");
            let c = op("POST", &format!("/job/team/view/v/{action}"));
            assert_eq!(
                (c.op, c.name(), c.job.as_ref().map(|j| j.to_string())),
                ("manage_view", Some("v"), Some("team".into()))
            );
        }
        // Reading a view's configuration.
        let c = op("GET", "/view/v/config.xml");
        assert_eq!((c.op, c.upstream.as_str()), ("list_views", "view/v/config.xml"));
        let c = op("GET", "/job/team/view/v/config.xml");
        assert_eq!((c.op, c.job.map(|j| j.to_string())), ("get_job", Some("team".into())));
        for (method, target) in [
            ("POST", "/view/v/view/w/doDelete"),
            ("POST", "/view/v/createView?name=x"),
            ("POST", "/view/v/configSubmit"),
            ("DELETE", "/view/v/"),
            ("POST", "/view/v/job/x/addJobToView?name=x"),
        ] {
            assert!(
                !matches!(
                    classify(
                        method,
                        target.split('?').next().unwrap_or(target),
                        target.split_once('?').map(|(_, q)| q)
                    ),
                    Route::Op(_)
                ),
                "{method} {target}"
            );
        }
        assert!(matches!(refused("POST", "/view/v%2Fw/doDelete"), Route::Malformed(_)));
        assert!(matches!(refused("POST", "/view/v/addJobToView?name=x&mode=y"), Route::Malformed(_)));
    }

    #[test]
    fn input_steps_are_answered_on_their_build() {
        let c = op("GET", "/job/p/7/wfapi/pendingInputActions");
        assert_eq!((c.op, c.upstream.as_str()), ("get_pipeline_run", "job/p/7/wfapi/pendingInputActions"));
        for action in ["proceedEmpty", "proceed", "abort"] {
            let c = op("POST", &format!("/job/f/job/p/7/input/Ef95a/{action}"));
            assert_eq!((c.op, c.input.as_deref(), c.build), ("answer_input", Some("Ef95a"), Some(BuildRef::Number(7))));
            assert_eq!(c.upstream, format!("job/f/job/p/7/input/Ef95a/{action}"));
        }
        for (method, target) in [
            ("GET", "/job/p/7/input/Ef95a/proceedEmpty"),
            ("POST", "/job/p/7/input/Ef95a/submit"),
            ("POST", "/job/p/7/input/Ef95a"),
            ("POST", "/job/p/7/input/proceedEmpty"),
            ("POST", "/job/p/7/wfapi/inputSubmit"),
        ] {
            assert_eq!(refused(method, target), Route::Unknown, "{method} {target}");
        }
        assert!(matches!(refused("POST", "/job/p/7/input/a%2Fb/abort"), Route::Malformed(_)));
        assert!(matches!(refused("POST", "/job/p/7/input/%2e%2e/abort"), Route::Malformed(_)));
        assert!(matches!(refused("POST", "/job/p/7/input/x/abort?token=1"), Route::Malformed(_)));
    }

    #[test]
    fn crumbs_and_identity_are_answered_by_jgate_and_nothing_else_of_users_is() {
        assert_eq!(classify("GET", "/crumbIssuer/api/json", None), Route::Crumb);
        assert_eq!(classify("GET", "//crumbIssuer/api/python", None), Route::Crumb);
        assert_ne!(classify("POST", "/crumbIssuer/api/json", None), Route::Crumb);
        assert_eq!(classify("GET", "/me/api/json", Some("depth=0")), Route::WhoAmI(Format::Json));
        assert_eq!(classify("GET", "/user/bot/api/python", None), Route::User("bot".into(), Format::Python));
        for (method, target) in [
            ("POST", "/me/api/json"),
            ("GET", "/me/configure"),
            ("GET", "/me/api/json/x"),
            ("POST", "/user/bot/descriptorByName/jenkins.security.ApiTokenProperty/generateNewToken"),
            ("GET", "/user/bot/configure"),
            ("GET", "/user/bot/api/yaml"),
        ] {
            assert!(matches!(refused(method, target), Route::Forbidden(_)), "{method} {target}");
        }
    }

    #[test]
    fn no_two_routes_overlap() {
        // Every route's own example path matches it and no route before it.
        for (i, pattern) in ROUTES.iter().enumerate() {
            let example: Vec<String> = pattern
                .path
                .trim_start_matches('/')
                .split('/')
                .filter(|p| !p.is_empty())
                .flat_map(|p| match p {
                    "{job}" => vec!["job".to_string(), "x".to_string()],
                    "{build}" => vec!["3".to_string()],
                    "{id}" => vec!["4".to_string()],
                    "{format}" => vec!["json".to_string()],
                    "{node}" | "{view}" | "{input}" => vec!["n".to_string()],
                    literal => vec![literal.to_string()],
                })
                .collect();
            for earlier in &ROUTES[..i] {
                // A pattern that requires query parameters applies only with them (createItem's
                // copy before its creation from config.xml).
                if earlier.method == pattern.method && earlier.requires.is_empty() {
                    assert!(
                        match_pattern(earlier.path, &example).is_none(),
                        "{} shadows {}",
                        earlier.path,
                        pattern.path
                    );
                }
            }
            assert!(match_pattern(pattern.path, &example).is_some(), "{}", pattern.path);
        }
    }

    #[test]
    fn every_proxied_route_is_declared_by_its_operation_and_every_declared_one_is_proxied() {
        use crate::ops::OPERATIONS;
        for (name, route) in proxied_routes() {
            let op =
                OPERATIONS.iter().find(|o| o.name == name).unwrap_or_else(|| panic!("{name} is not in the catalog"));
            assert!(op.routes.contains(&route), "{name} does not declare {route}");
        }
        // Declared routes the proxy does not forward, each for a stated reason.
        let not_proxied: &[(&str, &str, &str)] = &[
            ("triage_build", "*", "a composite of reads made by jgate itself, not a Jenkins endpoint"),
            ("list_jobs", "GET /{folder}/api/json?tree=jobs[...]", "the same URL as get_job on a folder"),
            ("list_views", "GET /api/json?tree=views[...]", "the same URL as list_jobs at the root"),
            ("get_system_info", "GET /api/json", "the same URL as list_jobs at the root"),
            ("list_artifacts", "GET /{job}/{build}/api/json?tree=artifacts[...]", "the same URL as get_build"),
            ("compare_builds", "*", "a composite of reads made by jgate itself, not a Jenkins endpoint"),
            ("find_flaky_tests", "*", "a composite of reads made by jgate itself, not a Jenkins endpoint"),
            ("get_deployments", "*", "a composite of reads made by jgate itself, not a Jenkins endpoint"),
            ("rebuild", "*", "a build read then trigger_build's path; the proxy's trigger requests are trigger_build"),
            ("replay", "GET /{job}/api/json?tree=nextBuildNumber", "reads replay makes itself; proxied as get_job"),
            ("replay", "GET /{job}/{build}/api/json", "a read replay makes itself; proxied as get_build"),
            ("read_artifact", "*", "an artifact's bytes are not forwarded: a binary one must never reach the agent"),
            ("get_stage_log", "GET /{job}/{build}/wfapi/describe", "proxied as get_pipeline_run, which reads it too"),
            (
                "get_stage_log",
                "GET /{job}/{build}/execution/node/{id}/wfapi/*",
                "proxied as get_pipeline_run, which reads it too",
            ),
        ];
        for op in OPERATIONS {
            for route in op.routes {
                let proxied = proxied_routes().any(|(n, r)| n == op.name && r == *route);
                let excused = not_proxied.iter().any(|(n, r, _)| *n == op.name && (*r == "*" || r == route));
                assert!(proxied || excused, "{} declares {route}, which the proxy does not forward", op.name);
            }
        }
    }
}
