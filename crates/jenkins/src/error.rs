//! One error type whose every variant says what happened and what to do about it.
//!
//! The text is meant to be shown as is — to an administrator in `jgate controller test`, or to
//! an agent as a tool error it can act on. It never contains a credential.

use crate::ssrf::Refusal;

/// Everything that can go wrong talking to a controller.
/// Cloneable: one failed read shared by several waiters gives each of them the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("invalid Jenkins URL {url}: {problem}. Fix: {fix}")]
    InvalidUrl { url: String, problem: String, fix: String },

    #[error("invalid job path '{path}': {problem}. Fix: {fix}")]
    InvalidJobPath { path: String, problem: String, fix: String },

    /// Transparent: the refusal's own sentence (with its fix) is the whole message, and an error
    /// chain printer (`{:#}`) does not print it twice.
    #[error(transparent)]
    Refused(#[from] Refusal),

    #[error(
        "cannot resolve the host name {host}: {detail}. Fix: check the spelling of the URL and that this machine's DNS can resolve it"
    )]
    Dns { host: String, detail: String },

    #[error(
        "cannot connect to {url}: {detail}. Fix: check that Jenkins is running and reachable from this machine (host, port, firewall)"
    )]
    Connect { url: String, detail: String },

    /// `seconds` is the time really waited (all attempts together), measured, not the setting.
    #[error(
        "{url} did not answer: gave up after waiting {seconds} s ({during}). Fix: check that Jenkins is running and that the network path to it is open (a firewall that drops packets looks like this); a controller that is merely slow gets more time with --timeout SECONDS (`jgate controller update NAME --timeout SECONDS`)"
    )]
    Timeout { url: String, seconds: u64, during: &'static str },

    #[error("TLS failed for {url}: {detail}. Fix: {fix}")]
    Tls { url: String, detail: String, fix: String },

    #[error(
        "Jenkins rejected the credentials of user '{user}' (HTTP 401): the API token was revoked or the user name is misspelled. Fix: generate a new API token at {token_url} (signed in as '{user}'), then store it with `jgate controller update NAME --token-file FILE` (add --username USER if the user name was wrong)"
    )]
    Unauthorized { user: String, token_url: String },

    #[error("{message}. Fix: {fix}")]
    Forbidden {
        message: String,
        /// The Java permission id from `X-Required-Permission`, if Jenkins named it.
        permission: Option<String>,
        fix: String,
    },

    #[error(
        "No valid crumb was included in the request (HTTP 403) even after fetching a fresh one. Fix: use an API token instead of a password (API-token requests need no crumb), or check that a proxy in front of Jenkins keeps the session cookie"
    )]
    Crumb,

    #[error("{what} was not found (HTTP 404) at {url}. Fix: {fix}")]
    NotFound { what: String, url: String, fix: String },

    /// The base URL does not lead to a Jenkins root: a 404 at the root (wrong context path), or a
    /// pasted job, view or manage page.
    #[error("{problem} ({url}). Fix: {fix}")]
    NotJenkinsRoot { url: String, problem: String, fix: String },

    /// An `http://` URL whose port answered with TLS.
    #[error(
        "{url}: this port speaks TLS, not plain HTTP: use https:// (e.g. {https_url}). Fix: change the controller's URL to https:// (`jgate controller update NAME --url {https_url}`)"
    )]
    PlainHttpToTls { url: String, https_url: String },

    /// The secret authenticates, but POSTs without a crumb are refused: Jenkins treats it as a
    /// password (API-token requests are exempt from the crumb check, jenkins-wire.md §8.6).
    #[error(
        "the secret given for user '{user}' is a password, not an API token: Jenkins asks for a CSRF crumb on its requests, which it never does for API tokens. Fix: create an API token at {token_url} and give that instead (`--token-file FILE`), or, if you mean to use the password, add --password"
    )]
    PasswordNotToken { user: String, token_url: String },

    #[error(
        "the {plugin} plugin is not installed on this controller, so {feature} is not available. Fix: install the '{plugin}' plugin in Jenkins, or use {alternative}"
    )]
    PluginMissing { plugin: &'static str, feature: &'static str, alternative: &'static str },

    #[error(
        "Jenkins is unavailable (HTTP 503): {detail}. Fix: wait until Jenkins has started or leaves quiet-down mode, then retry"
    )]
    Unavailable { detail: String },

    #[error("{what} conflicts with the job's state (HTTP 409): {detail}. Fix: {fix}")]
    Conflict { what: String, detail: String, fix: String },

    #[error("Jenkins refused the request (HTTP 400): {message}. Fix: {fix}")]
    BadRequest { message: String, fix: String },

    #[error(
        "Jenkins failed while handling {what} (HTTP {status}): {first_line}. Fix: this is an error inside Jenkins; check its system log for the stack trace, then retry"
    )]
    Server { what: String, status: u16, first_line: String },

    #[error(
        "the response from {url} is larger than the {limit} byte limit. Fix: ask for less (a tree= filter, a smaller range) or raise the limit"
    )]
    TooLarge { url: String, limit: usize },

    #[error(
        "unexpected response from {url}: {detail}. Fix: check that the URL points at a Jenkins controller (not a proxy or login page)"
    )]
    Protocol { url: String, detail: String },

    #[error(
        "{url} answered with a redirect to {location} (HTTP {status}). Fix: use the controller's canonical URL as the base URL (scheme, host, port and context path exactly as Jenkins serves them)"
    )]
    Redirected { url: String, status: u16, location: String },

    #[error("timed out after {seconds} s waiting for {what}. Fix: {fix}")]
    WaitTimeout { what: String, seconds: u64, fix: String },

    #[error("invalid configuration: {problem}. Fix: {fix}")]
    Config { problem: String, fix: String },
}

impl Error {
    /// Whether repeating the same idempotent read may succeed (503, connection errors, timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Connect { .. } | Error::Timeout { .. })
    }

    /// The HTTP status this error came from, if any.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            Error::Unauthorized { .. } => 401,
            Error::Forbidden { .. } | Error::Crumb => 403,
            Error::NotFound { .. } | Error::PluginMissing { .. } => 404,
            Error::Conflict { .. } => 409,
            Error::BadRequest { .. } => 400,
            Error::Unavailable { .. } => 503,
            Error::Server { status, .. } | Error::Redirected { status, .. } => *status,
            _ => return None,
        })
    }
}

/// Title of a Java permission id (`hudson.model.Item.Build` → `Job/Build`), as the matrix UI
/// names it.
pub fn permission_title(java_id: &str) -> String {
    let known = [
        ("hudson.model.Hudson.Administer", "Overall/Administer"),
        ("hudson.model.Hudson.Read", "Overall/Read"),
        ("hudson.model.Hudson.SystemRead", "Overall/SystemRead"),
        ("hudson.model.Item.Read", "Job/Read"),
        ("hudson.model.Item.Discover", "Job/Discover"),
        ("hudson.model.Item.Build", "Job/Build"),
        ("hudson.model.Item.Cancel", "Job/Cancel"),
        ("hudson.model.Item.Configure", "Job/Configure"),
        ("hudson.model.Item.Create", "Job/Create"),
        ("hudson.model.Item.Delete", "Job/Delete"),
        ("hudson.model.Item.ExtendedRead", "Job/ExtendedRead"),
        ("hudson.model.Item.Workspace", "Job/Workspace"),
        ("hudson.model.Run.Update", "Run/Update"),
        ("hudson.model.Run.Delete", "Run/Delete"),
        ("hudson.model.View.Read", "View/Read"),
        ("hudson.model.View.Create", "View/Create"),
        ("hudson.model.View.Configure", "View/Configure"),
        ("hudson.model.View.Delete", "View/Delete"),
        ("hudson.model.Computer.Connect", "Agent/Connect"),
        ("hudson.model.Computer.Configure", "Agent/Configure"),
    ];
    known.iter().find(|(id, _)| *id == java_id).map_or_else(|| java_id.to_string(), |(_, t)| t.to_string())
}

/// The first line worth showing from a Jenkins error page: the exception line of a stack trace
/// (`java.lang.X: message`), else the page's message, else the status text.
pub fn first_error_line(body: &str) -> Option<String> {
    let text = strip_tags(body);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut fallback = None;
    for (i, l) in lines.iter().enumerate() {
        let looks_like_exception = l.split(':').next().is_some_and(|head| {
            head.contains('.') && !head.contains(' ') && (head.ends_with("Exception") || head.ends_with("Error"))
        });
        if looks_like_exception {
            return Some(truncate(l, 300));
        }
        if fallback.is_some() {
            continue;
        }
        // Jetty's error page: "HTTP ERROR 400 message" and a MESSAGE: row.
        if let Some(rest) = l.strip_prefix("HTTP ERROR ") {
            let msg = rest.split_once(' ').map_or("", |(_, m)| m).trim();
            if !msg.is_empty() {
                fallback = Some(truncate(msg, 300));
            }
        } else if *l == "MESSAGE:" {
            fallback = lines.get(i + 1).map(|m| truncate(m, 300));
        } else if let Some(m) = l.strip_prefix("MESSAGE:") {
            fallback = Some(truncate(m.trim(), 300));
        } else if l.starts_with("A problem occurred") {
            fallback = Some(truncate(l, 300));
        }
    }
    fallback
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}…", s.chars().take(max).collect::<String>()) }
}

/// Removes HTML tags and decodes the few entities error pages use.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push('\n');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_of_stack_trace_pages() {
        let oops = "<html><body><h2>A problem occurred while processing the request</h2><pre>java.lang.NullPointerException: Cannot invoke &quot;x&quot;\n\tat a.b(C.java:1)</pre></body></html>";
        assert_eq!(first_error_line(oops).as_deref(), Some("java.lang.NullPointerException: Cannot invoke \"x\""));
        let jetty = "<table><tr><th>MESSAGE:</th><td>team/api is not buildable</td></tr></table>";
        assert_eq!(first_error_line(jetty).as_deref(), Some("team/api is not buildable"));
        assert_eq!(permission_title("hudson.model.Item.Build"), "Job/Build");
    }
}
