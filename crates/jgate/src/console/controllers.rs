//! The Controllers pages: the list (URL, Jenkins version, last test, agents with access), the
//! Connect form with Test (the connection test's diagnosis, nothing stored) and Save, and each
//! controller's page (test, update, rotate the token, remove — refused while grants name it
//! unless they go too). Every change is the CLI's `Gate` function; tokens are write-only (never
//! put back into a page).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use gate::controller_checks::ControllerCheck;
use gate::policy::Level;
use gate::sanitize::{KnownSecrets, Sanitizer};
use gate::{ControllerRemoval, ControllerSettings, ControllerUpdate, GateError, NewController};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::{Authed, Console, Form, done, notice, say};

pub fn routes() -> Router<Console> {
    Router::new().route("/controllers", get(list).post(connect)).route("/controllers/{name}", get(one).post(change))
}

#[derive(serde::Deserialize, Default)]
pub(super) struct Done {
    done: Option<String>,
    name: Option<String>,
}

impl Done {
    pub(super) fn notice(&self) -> Option<String> {
        notice(self.done.as_deref()?, self.name.as_deref().unwrap_or(""))
    }
}

#[derive(Serialize)]
struct Row {
    name: String,
    url: String,
    username: String,
    version: Option<String>,
    check: Option<ControllerCheck>,
    agents: Vec<String>,
    allow_private: Vec<String>,
    timeout_secs: Option<i64>,
    has_ca: bool,
}

async fn rows(console: &Console) -> Result<Vec<Row>, GateError> {
    let gate = console.gate();
    let checks = gate.last_checks().await?;
    let agents = gate.store().agents().await?;
    let mut grants = Vec::new();
    for a in &agents {
        grants.extend(gate.store().grants_of(&a.name).await?);
    }
    let mut out = Vec::new();
    for c in gate.store().controllers().await? {
        let mut with: Vec<String> = grants
            .iter()
            .filter(|g| g.level != Level::Off && g.controller.as_deref().is_none_or(|x| x == c.name))
            .map(|g| g.agent.clone())
            .collect();
        with.sort();
        with.dedup();
        // The version came from Jenkins (its X-Jenkins header): shown only cleaned.
        let mut clean = gate.sanitizer(&c.name).await.unwrap_or_else(|_| Sanitizer::new(KnownSecrets::new()));
        let version = c.jenkins_version.as_deref().map(|v| clean.clean(v));
        out.push(Row {
            check: checks.get(&c.name).cloned(),
            agents: with,
            url: c.base_url,
            username: c.username,
            version,
            allow_private: c.allow_private,
            timeout_secs: c.timeout_secs,
            has_ca: c.tls_ca_pem.is_some(),
            name: c.name,
        });
    }
    Ok(out)
}

/// The list page, with the Connect form (its values kept after a Test or a failed Save, never the
/// token) and the test's diagnosis.
async fn list_page(
    console: &Console,
    authed: &Authed,
    status: StatusCode,
    form: Option<&Form>,
    test: Option<ControllerCheck>,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    let rows = match rows(console).await {
        Ok(r) => r,
        Err(e) => return console.page_error(StatusCode::SERVICE_UNAVAILABLE, &say(&e), Some(authed)),
    };
    let values = form.map(|f| f.values(&["token", "csrf"])).unwrap_or_default();
    console.render_status(
        status,
        "controllers.html",
        Some(authed),
        minijinja::context! { nav => "controllers", controllers => rows, form => values, test => test,
        error => error, notice => notice },
    )
}

async fn list(State(console): State<Console>, headers: HeaderMap, Query(q): Query<Done>) -> Response {
    let authed = match console.authed(&headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    list_page(&console, &authed, StatusCode::OK, None, None, None, q.notice()).await
}

/// The Connect form's settings.
fn new_controller(form: &Form) -> Result<(NewController, ControllerSettings), String> {
    let name = form.get("name").trim().to_string();
    let url = form.get("url").trim().to_string();
    let username = form.get("username").trim().to_string();
    let token = form.get("token").trim().to_string();
    let mut missing = Vec::new();
    for (v, what) in [(&name, "a name"), (&url, "the URL"), (&username, "the user"), (&token, "the API token")] {
        if v.is_empty() {
            missing.push(what);
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "Give {} (the API token is never shown again: type or paste it each time).",
            missing.join(", ")
        ));
    }
    let timeout_secs = timeout(form)?.flatten();
    Ok((
        NewController {
            name,
            url,
            username,
            token: SecretString::from(token),
            password: form.checked("password"),
            allow_private: form.lines("allow_private"),
            ca_pem: form.opt("ca_pem"),
            insecure: false,
        },
        ControllerSettings { timeout_secs, system_ca: form.checked("system_ca") },
    ))
}

/// The timeout field: `None` = not given, `Some(None)` = 0 (back to the default).
fn timeout(form: &Form) -> Result<Option<Option<u64>>, String> {
    match form.opt("timeout") {
        None => Ok(None),
        Some(t) => match t.parse::<u64>() {
            Ok(0) => Ok(Some(None)),
            Ok(n) if n <= 3600 => Ok(Some(Some(n))),
            _ => Err(format!("The timeout '{t}' is not a number of seconds between 1 and 3600.")),
        },
    }
}

/// A diagnosis from an error of Save or Update, cleaned with the token being tried known.
fn check_of(e: GateError, token: Option<&SecretString>, username: &str, name: &str) -> ControllerCheck {
    let mut known = KnownSecrets::new();
    if let Some(t) = token {
        known.add(t.expose_secret());
        known.add_basic_auth(username, t.expose_secret());
    }
    let e = match e {
        GateError::ConnectionTest { error, .. } => GateError::Jenkins(error),
        other => other,
    };
    ControllerCheck::from_result(&Err(e), &mut Sanitizer::new(known), name)
}

async fn connect(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let authed = match console.authed_post(&headers, &form).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (c, settings) = match new_controller(&form) {
        Ok(x) => x,
        Err(msg) => {
            return list_page(&console, &authed, StatusCode::BAD_REQUEST, Some(&form), None, Some(msg), None).await;
        }
    };
    let gate = console.gate();
    if form.get("action") == "test" {
        let check = in_console_words(gate.check_new_controller(&c, &settings).await);
        let status = if check.ok { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
        return list_page(&console, &authed, status, Some(&form), Some(check), None, None).await;
    }
    let (name, token, username) = (c.name.clone(), c.token.clone(), c.username.clone());
    match gate.add_controller_with(&authed.admin(), c, settings, false).await {
        Ok((_, report)) => {
            if let Some(r) = report {
                let mut s = gate.sanitizer(&name).await.unwrap_or_else(|_| Sanitizer::new(KnownSecrets::new()));
                let check = ControllerCheck::from_result(&Ok(r), &mut s, &name);
                if let Err(e) = gate.keep_check(&name, &check).await {
                    tracing::warn!(error = %e, "the connection test's result could not be kept");
                }
            }
            done("/console/controllers", "saved", &name)
        }
        Err(e @ (GateError::ConnectionTest { .. } | GateError::Jenkins(_))) => {
            let check = in_console_words(check_of(e, Some(&token), &username, &name));
            list_page(&console, &authed, StatusCode::UNPROCESSABLE_ENTITY, Some(&form), Some(check), None, None).await
        }
        Err(e) => list_page(&console, &authed, StatusCode::BAD_REQUEST, Some(&form), None, Some(say(&e)), None).await,
    }
}

async fn one_page(
    console: &Console,
    authed: &Authed,
    name: &str,
    status: StatusCode,
    check: Option<ControllerCheck>,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    let rows = match rows(console).await {
        Ok(r) => r,
        Err(e) => return console.page_error(StatusCode::SERVICE_UNAVAILABLE, &say(&e), Some(authed)),
    };
    let Some(row) = rows.into_iter().find(|r| r.name == name) else {
        return console.page_error(
            StatusCode::NOT_FOUND,
            &format!("There is no controller '{name}'. The Controllers page lists them."),
            Some(authed),
        );
    };
    let grants = console.gate().store().grants_on_controller(name).await.unwrap_or_default();
    let grants: Vec<String> = grants.iter().map(|g| format!("#{} {}: {}", g.id, g.agent, g.describe())).collect();
    console.render_status(
        status,
        "controller.html",
        Some(authed),
        minijinja::context! { nav => "controllers", c => row, grants => grants, test => check, error => error,
        notice => notice },
    )
}

async fn one(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    let authed = match console.authed(&headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    one_page(&console, &authed, &name, StatusCode::OK, None, None, q.notice()).await
}

async fn change(State(console): State<Console>, headers: HeaderMap, Path(name): Path<String>, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let authed = match console.authed_post(&headers, &form).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let gate = console.gate();
    let here = format!("/console/controllers/{}", percent_encode(&name));
    match form.get("action") {
        "test" => match gate.check_controller(&name).await.map(in_console_words) {
            Ok(check) => {
                let status = if check.ok { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
                one_page(&console, &authed, &name, status, Some(check), None, None).await
            }
            Err(e) => one_page(&console, &authed, &name, StatusCode::BAD_REQUEST, None, Some(say(&e)), None).await,
        },
        "update" => {
            let timeout = match timeout(&form) {
                Ok(t) => t,
                Err(msg) => {
                    return one_page(&console, &authed, &name, StatusCode::BAD_REQUEST, None, Some(msg), None).await;
                }
            };
            let token = form.opt("token").map(SecretString::from);
            let change = ControllerUpdate {
                url: form.opt("url"),
                username: form.opt("username"),
                token: token.clone(),
                password: None,
                ca_pem: if form.checked("no_ca") { Some(None) } else { form.opt("ca_pem").map(Some) },
                system_ca: None,
                insecure: None,
                allow_private: form.0.iter().any(|(k, _)| k == "allow_private").then(|| form.lines("allow_private")),
                timeout_secs: timeout,
            };
            let username = form.opt("username").unwrap_or_default();
            match gate.update_controller(&authed.admin(), &name, change, false).await {
                Ok((_, report)) => {
                    if let Some(r) = report {
                        let mut s = gate.sanitizer(&name).await.unwrap_or_else(|_| Sanitizer::new(KnownSecrets::new()));
                        let check = ControllerCheck::from_result(&Ok(r), &mut s, &name);
                        if let Err(e) = gate.keep_check(&name, &check).await {
                            tracing::warn!(error = %e, "the connection test's result could not be kept");
                        }
                    }
                    done(&here, "updated", &name)
                }
                Err(e @ (GateError::ConnectionTest { .. } | GateError::Jenkins(_))) => {
                    let check = in_console_words(check_of(e, token.as_ref(), &username, &name));
                    one_page(&console, &authed, &name, StatusCode::UNPROCESSABLE_ENTITY, Some(check), None, None).await
                }
                Err(e) => one_page(&console, &authed, &name, StatusCode::BAD_REQUEST, None, Some(say(&e)), None).await,
            }
        }
        "remove" => match gate.remove_controller_with(&authed.admin(), &name, form.checked("with_grants")).await {
            Ok(ControllerRemoval::Removed { .. }) | Ok(ControllerRemoval::Missing) => {
                done("/console/controllers", "removed", &name)
            }
            Err(e) => {
                // The CLI's message names its flag; here the box to tick does the same.
                let msg = say(&e).replace(
                    &format!("`jgate controller remove {name} --with-grants`"),
                    "tick \"also remove its grants\" and press Remove again",
                );
                one_page(&console, &authed, &name, StatusCode::CONFLICT, None, Some(msg), None).await
            }
        },
        other => {
            let msg = format!("Unknown action '{other}'.");
            one_page(&console, &authed, &name, StatusCode::BAD_REQUEST, None, Some(msg), None).await
        }
    }
}

/// A diagnosis in the console's words: the wire client's fixes name CLI commands and flags; here
/// they name the form's fields.
fn in_console_words(mut check: ControllerCheck) -> ControllerCheck {
    let rewrite = |t: &str| -> String {
        let mut t = match COMMAND.as_ref() {
            Some(re) => re.replace_all(t, |c: &regex::Captures| field_for(&c[1])).into_owned(),
            None => t.to_string(),
        };
        for (flag, field) in FLAGS {
            t = t.replace(flag, field);
        }
        t
    };
    check.summary = rewrite(&check.summary);
    check.fix = check.fix.as_deref().map(rewrite);
    check.details = check.details.iter().map(|d| rewrite(d)).collect();
    check
}

/// `jgate controller update|add NAME --flag ...` in backticks (a constant pattern).
static COMMAND: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"`jgate controller (?:update|add) \S+(?: \.\.\.)? (--[a-z-]+)[^`]*`").ok()
});

/// Flags of the CLI and the form field that does the same.
const FLAGS: [(&str, &str); 10] = [
    ("--token-file FILE", "the API token field"),
    ("--timeout SECONDS", "the Timeout field"),
    ("--username USER", "the User field"),
    ("--ca-file FILE", "the CA bundle field"),
    ("--ca-file", "the CA bundle field"),
    ("--system-ca", "\"Also trust this machine's certificate store\""),
    ("--allow-private", "the private-network allow entries"),
    ("--insecure-skip-tls-verify", "the CLI's --insecure-skip-tls-verify"),
    ("--password", "the \"password, not an API token\" box"),
    ("--url", "the Jenkins URL field"),
];

fn field_for(flag: &str) -> String {
    let field = FLAGS.iter().find(|(f, _)| f.split(' ').next() == Some(flag)).map_or("the form", |(_, x)| x);
    format!("{field} on this page")
}

/// A path segment, percent-encoded.
pub(super) fn percent_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}
