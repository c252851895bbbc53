//! The client: transport, authentication and crumbs, error diagnosis, and one typed method per
//! Jenkins operation.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cache::{CacheOptions, Fetched, Found, Keep, Wire};
use crate::error::{Error, first_error_line, permission_title};
use crate::model::*;
use crate::path::{BaseUrl, JobPath};
use crate::ssrf::{AllowEntry, EgressPolicy, GuardedResolver, IpClass, Lookup, RefusalReason, SystemLookup};
use crate::tree::Tree;
use url::Url;

/// How the secret authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// An API token: preferred; Jenkins needs no CSRF crumb for it.
    ApiToken,
    /// A password: each POST needs a crumb bound to the HTTP session.
    Password,
}

/// A Jenkins user and its secret. The secret is never shown by `Debug`, errors or logs.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub secret: SecretString,
    pub kind: SecretKind,
}

impl Credentials {
    pub fn api_token(username: impl Into<String>, token: SecretString) -> Self {
        Credentials { username: username.into(), secret: token, kind: SecretKind::ApiToken }
    }
    pub fn password(username: impl Into<String>, password: SecretString) -> Self {
        Credentials { username: username.into(), secret: password, kind: SecretKind::Password }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("kind", &self.kind)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// TLS settings of a controller connection.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM certificates to trust in addition to the system roots (a private CA).
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// DANGEROUS: accept any certificate, including forged ones. Only for throwaway test
    /// controllers; anyone on the network path can then read the API token.
    pub danger_accept_invalid_certs: bool,
}

/// Limits and timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    pub connect_timeout: Duration,
    /// Whole-request timeout for API calls (not for console streams, which use `read_timeout`).
    pub request_timeout: Duration,
    /// Idle time allowed between two reads of a console stream.
    pub read_timeout: Duration,
    /// Largest API response body read into memory.
    pub max_body_bytes: usize,
    /// Attempts for idempotent reads that fail transiently (503, connection errors, timeouts).
    pub read_attempts: u32,
    pub retry_base_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_body_bytes: 32 * 1024 * 1024,
            read_attempts: 3,
            retry_base_delay: Duration::from_millis(250),
        }
    }
}

impl Limits {
    /// The default limits with one timeout for connecting and for each API request
    /// (`--timeout SECONDS`).
    pub fn with_timeout(timeout: Duration) -> Limits {
        Limits { connect_timeout: timeout, request_timeout: timeout, ..Limits::default() }
    }
}

/// Builds a [`JenkinsClient`].
pub struct ClientBuilder {
    base: String,
    credentials: Option<Credentials>,
    allow: Vec<AllowEntry>,
    tls: TlsOptions,
    limits: Limits,
    lookup: Option<Arc<dyn Lookup>>,
    cache: CacheOptions,
    system_ca: bool,
}

impl ClientBuilder {
    /// Authenticates every request as this user (without credentials, requests are anonymous).
    pub fn credentials(mut self, c: Credentials) -> Self {
        self.credentials = Some(c);
        self
    }
    /// Adds a private-access allow-list entry: the only way to reach a controller on a private
    /// network (or the twin on 127.0.0.1). Cloud metadata addresses stay refused.
    pub fn allow_private(mut self, entry: AllowEntry) -> Self {
        self.allow.push(entry);
        self
    }
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }
    /// Also trusts the operating system's certificate store (`--system-ca`: corporate CAs
    /// installed on this machine). The built-in Mozilla roots and the CA bundle are trusted always.
    pub fn system_ca(mut self, on: bool) -> Self {
        self.system_ca = on;
        self
    }
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
    /// Replaces DNS resolution (tests: scripted answers, rebinding).
    pub fn lookup(mut self, lookup: Arc<dyn Lookup>) -> Self {
        self.lookup = Some(lookup);
        self
    }
    /// Limits of the cache of finished builds' answers (on by default: 60 s, 256 answers, 16 MiB).
    pub fn cache(mut self, cache: CacheOptions) -> Self {
        self.cache = cache;
        self
    }

    pub fn build(self) -> Result<JenkinsClient, Error> {
        let base = BaseUrl::parse(&self.base)?;
        check_root_path(&base)?;
        let policy = Arc::new(EgressPolicy::new(self.allow));
        policy.check_url(base.as_url())?;
        let lookup: Arc<dyn Lookup> = self.lookup.unwrap_or_else(|| Arc::new(SystemLookup));
        let trust = crate::tls::Trust {
            ca_bundle_pem: self.tls.ca_bundle_pem.clone(),
            system_ca: self.system_ca,
            insecure: self.tls.danger_accept_invalid_certs,
        };
        if trust.insecure {
            tracing::warn!(base = %base, "TLS certificate verification is disabled for this controller");
        }
        let sessions = needs_crumb(self.credentials.as_ref());
        let http = http_client(&base, &policy, &lookup, &self.limits, &trust, sessions)?;
        Ok(JenkinsClient {
            base,
            credentials: self.credentials,
            http,
            policy,
            lookup,
            limits: self.limits,
            crumb: Arc::new(tokio::sync::Mutex::new(None)),
            wire: Arc::new(Wire::new(self.cache)),
        })
    }
}

/// The HTTP client of a controller: the guarded resolver, no proxy, no redirects, timeouts, the
/// cookie store when the client sends crumbs (`sessions`: a crumb is bound to the HTTP session,
/// jenkins-wire.md §8.6; API-token requests need neither, and reading every answer's
/// `Set-Cookie` into a jar costs each call) and the TLS trust of [`crate::tls`].
fn http_client(
    base: &BaseUrl,
    policy: &Arc<EgressPolicy>,
    lookup: &Arc<dyn Lookup>,
    limits: &Limits,
    trust: &crate::tls::Trust,
    sessions: bool,
) -> Result<reqwest::Client, Error> {
    let http = reqwest::Client::builder()
        .dns_resolver(Arc::new(
            // The resolver sees host names only: pin the origin's port for port-scoped entries.
            GuardedResolver::new(policy.clone(), lookup.clone())
                .with_port(base.as_url().port_or_known_default().unwrap_or(443)),
        ))
        // Proxies from the environment would resolve names themselves, bypassing the guard.
        .no_proxy()
        // Jenkins answers writes with 201/302/303 + Location: read them, never follow.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(limits.connect_timeout)
        .read_timeout(limits.read_timeout)
        .cookie_store(sessions)
        .user_agent(concat!("jgate/", env!("CARGO_PKG_VERSION")))
        .use_preconfigured_tls(crate::tls::client_config(trust)?);
    http.build().map_err(|e| Error::Config {
        problem: format!("cannot build the HTTP client: {e}"),
        fix: "check the TLS options (--ca-file, --system-ca)".into(),
    })
}

/// Refuses a base URL that is a page inside Jenkins (a job, view, build or manage page pasted
/// from the browser) rather than the controller's root.
fn check_root_path(base: &BaseUrl) -> Result<(), Error> {
    let url = base.as_url();
    let segs: Vec<&str> = url.path_segments().map(|s| s.filter(|x| !x.is_empty()).collect()).unwrap_or_default();
    let page = ["job", "view", "manage", "computer", "user", "me", "blue", "queue", "configure", "pluginManager"];
    let Some(at) = segs.iter().position(|s| page.contains(s)) else { return Ok(()) };
    let mut root = url.clone();
    root.set_path(&format!("/{}", segs[..at].iter().map(|s| format!("{s}/")).collect::<String>()));
    let kind = match segs[at] {
        "job" | "blue" => "a job page",
        "view" => "a view page",
        "manage" | "configure" | "pluginManager" => "a Manage Jenkins page",
        "computer" => "a node page",
        "queue" => "the queue page",
        _ => "a user page",
    };
    Err(Error::NotJenkinsRoot {
        url: url.to_string(),
        problem: format!("this looks like {kind}, not the controller's root URL"),
        fix: format!("use the controller's root URL: {root}"),
    })
}

/// A client for one controller. Clones share the connection pool, the crumb and session, the
/// in-flight reads and the cache.
#[derive(Clone)]
pub struct JenkinsClient {
    base: BaseUrl,
    credentials: Option<Credentials>,
    http: reqwest::Client,
    policy: Arc<EgressPolicy>,
    /// The resolver behind the guard (the connection test's probes use it too).
    lookup: Arc<dyn Lookup>,
    limits: Limits,
    crumb: Arc<tokio::sync::Mutex<Option<Crumb>>>,
    wire: Arc<Wire>,
}

/// How a wait reads a resource many waiters may be polling: an answer whose read began less than
/// `within` ago is shared (one upstream request per resource per interval, however many wait);
/// after an event, `not_before` asks for a read begun since.
#[derive(Debug, Clone, Copy)]
pub struct Poll {
    pub within: Duration,
    pub not_before: Option<std::time::Instant>,
}

impl Poll {
    /// Always a new read (still shared with identical reads in flight).
    pub const FRESH: Poll = Poll { within: Duration::ZERO, not_before: None };
}

/// A wait's pause between polls. Returns when it woke early for a reason to look again (an
/// event), so the next read is one begun after that moment.
pub trait Pause: Send {
    fn pause(&mut self, d: Duration) -> futures_util::future::BoxFuture<'_, Option<std::time::Instant>>;
}

/// A pause that only sleeps.
pub struct Sleep;

impl Pause for Sleep {
    fn pause(&mut self, d: Duration) -> futures_util::future::BoxFuture<'_, Option<std::time::Instant>> {
        Box::pin(async move {
            tokio::time::sleep(d).await;
            None
        })
    }
}

impl std::fmt::Debug for JenkinsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JenkinsClient").field("base", &self.base).field("credentials", &self.credentials).finish()
    }
}

/// A request body.
enum Body {
    Form(Vec<(String, String)>),
    Xml(String),
    /// `multipart/form-data`: text fields and files (a trigger with file parameters).
    Multipart(Vec<(String, String)>, Vec<FilePart>),
}

/// A file sent as a build's file parameter.
#[derive(Clone, PartialEq, Eq)]
pub struct FilePart {
    /// The parameter's name.
    pub name: String,
    /// The file's name as the client gave it (Jenkins shows it as the parameter's value).
    pub file_name: String,
    pub content: Vec<u8>,
}

impl std::fmt::Debug for FilePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A file's content may be anything (a key file): never in logs.
        f.debug_struct("FilePart")
            .field("name", &self.name)
            .field("file_name", &self.file_name)
            .field("bytes", &self.content.len())
            .finish()
    }
}

/// What a call accepts besides 2xx.
#[derive(Clone, Copy, PartialEq)]
enum Accept {
    Success,
    /// 2xx or 3xx: Jenkins answers many writes with a redirect.
    SuccessOrRedirect,
}

/// Which build of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildSelector {
    Number(u64),
    LastBuild,
    LastCompletedBuild,
    LastSuccessfulBuild,
    LastStableBuild,
    LastFailedBuild,
    LastUnstableBuild,
    LastUnsuccessfulBuild,
}

impl BuildSelector {
    fn segment(&self) -> String {
        match self {
            BuildSelector::Number(n) => n.to_string(),
            BuildSelector::LastBuild => "lastBuild".into(),
            BuildSelector::LastCompletedBuild => "lastCompletedBuild".into(),
            BuildSelector::LastSuccessfulBuild => "lastSuccessfulBuild".into(),
            BuildSelector::LastStableBuild => "lastStableBuild".into(),
            BuildSelector::LastFailedBuild => "lastFailedBuild".into(),
            BuildSelector::LastUnstableBuild => "lastUnstableBuild".into(),
            BuildSelector::LastUnsuccessfulBuild => "lastUnsuccessfulBuild".into(),
        }
    }
}

impl From<u64> for BuildSelector {
    fn from(n: u64) -> Self {
        BuildSelector::Number(n)
    }
}

/// One piece of a progressive console read.
#[derive(Debug, Clone)]
pub struct LogChunk {
    pub text: Bytes,
    /// The offset to ask for next (`X-Text-Size`, or less if this chunk was cut at the limit).
    pub next_start: u64,
    /// The build is still writing (`X-More-Data: true`) or this chunk was cut.
    pub more: bool,
}

/// The end of a console, as read by [`JenkinsClient::tail_from_end`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTail {
    /// The last `n` lines (fewer if the log is shorter), oldest first.
    pub lines: Vec<TailLine>,
    /// The log's line count: known when the whole log was read, or when only its end was read
    /// and this client remembers the count from an earlier read of the same complete log. When
    /// `scan_stopped`, the lines read so far (the log has more).
    pub total_lines: Option<u64>,
    /// The log's size as `X-Text-Size` (Jenkins' byte offsets) when it was read through
    /// progressiveText; `None` when the whole `consoleText` was streamed.
    pub log_size: Option<u64>,
    /// Jenkins was still writing the log (`X-More-Data`); always `false` when `consoleText` was
    /// streamed, which does not say.
    pub more: bool,
    /// Console bytes read from Jenkins for this answer.
    pub bytes_read: u64,
    /// The streamed `consoleText` was cut after `max_scan` bytes: `lines` are not the log's last.
    pub scan_stopped: bool,
}

/// One line of an [`EndTail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailLine {
    /// 1-based position in the log; `None` when only the end of the log was read and its line
    /// count is not known.
    pub number: Option<u64>,
    pub text: String,
    /// The line was longer than `max_line_bytes`; `text` holds only its beginning.
    pub truncated: bool,
}

/// What `test_connection` found.
#[derive(Debug, Clone)]
pub struct ConnectionReport {
    pub base_url: String,
    /// From the `X-Jenkins` header.
    pub version: Option<String>,
    pub who_am_i: WhoAmI,
    /// Whether this connection must send crumbs (password authentication on a controller with
    /// CSRF protection).
    pub crumbs_required: bool,
    pub use_security: bool,
    pub quieting_down: bool,
    /// `quietDownReason` (Jenkins 2.267+), when quieting down with a reason.
    pub quiet_down_reason: Option<String>,
    pub capabilities: Capabilities,
    /// Things that work but deserve the administrator's attention, each a sentence naming the
    /// cause and the fix: quiet-down, a user who sees no jobs or cannot list plugins, a token
    /// sent in clear text, security off.
    pub warnings: Vec<String>,
    /// How long the test took.
    pub elapsed: Duration,
}

/// Plugins that change what the client can do. `None` = unknown (the user cannot list plugins).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Capabilities {
    pub plugins_visible: bool,
    pub pipeline_rest_api: Option<bool>,
    pub notification: Option<bool>,
    pub junit: Option<bool>,
    pub folders: Option<bool>,
    pub multibranch: Option<bool>,
    pub git: Option<bool>,
    pub plugins: Vec<Plugin>,
}

impl JenkinsClient {
    /// Starts building a client for the controller at `base_url`.
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: base_url.into(),
            credentials: None,
            allow: Vec::new(),
            tls: TlsOptions::default(),
            limits: Limits::default(),
            lookup: None,
            cache: CacheOptions::default(),
            system_ca: false,
        }
    }

    pub fn base_url(&self) -> &BaseUrl {
        &self.base
    }

    fn user(&self) -> &str {
        self.credentials.as_ref().map_or("anonymous", |c| c.username.as_str())
    }

    // -----------------------------------------------------------------------------------------
    // transport

    /// The URL of `path` (relative to the base URL) with `query`, built once per request and
    /// used for every attempt.
    fn request_url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, Error> {
        let mut url = self.base.join(path)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_once(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Body>,
        what: &str,
        accept: Accept,
        timeout: Option<Duration>,
        crumb: Option<&Crumb>,
    ) -> Result<reqwest::Response, Error> {
        // IP-literal hosts skip the resolver: check every request's URL as well.
        self.policy.check_url(url)?;
        let mut req = self.http.request(method.clone(), url.clone());
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(c) = &self.credentials {
            req = req.basic_auth(&c.username, Some(c.secret.expose_secret()));
        }
        if let Some(crumb) = crumb {
            req = req.header(crumb.crumb_request_field.as_str(), crumb.crumb.as_str());
        }
        req = match body {
            None => req,
            Some(Body::Form(pairs)) => req.form(pairs),
            Some(Body::Xml(xml)) => req.header("Content-Type", "application/xml; charset=utf-8").body(xml.clone()),
            Some(Body::Multipart(fields, files)) => {
                // Built for each attempt: a multipart form is consumed by sending it.
                let mut form = reqwest::multipart::Form::new();
                for (k, v) in fields {
                    form = form.text(k.clone(), v.clone());
                }
                for f in files {
                    let part = reqwest::multipart::Part::bytes(f.content.clone()).file_name(f.file_name.clone());
                    form = form.part(f.name.clone(), part);
                }
                req.multipart(form)
            }
        };
        let resp = req.send().await.map_err(|e| transport_error(e, url, self.limits.request_timeout))?;
        let status = resp.status();
        if status.is_success() || (accept == Accept::SuccessOrRedirect && status.is_redirection()) {
            return Ok(resp);
        }
        Err(self.diagnose(resp, what).await)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Body>,
        what: &str,
        accept: Accept,
    ) -> Result<reqwest::Response, Error> {
        self.send_to(method, &self.request_url(path, query)?, body, what, accept).await
    }

    /// [`Self::send`] to a URL already built.
    async fn send_to(
        &self,
        method: Method,
        url: &Url,
        body: Option<Body>,
        what: &str,
        accept: Accept,
    ) -> Result<reqwest::Response, Error> {
        let idempotent = method == Method::GET || method == Method::HEAD;
        let attempts = if idempotent { self.limits.read_attempts.max(1) } else { 1 };
        let mut attempt = 0;
        let started = Instant::now();
        loop {
            attempt += 1;
            let crumb = if method == Method::POST && self.needs_crumb() { self.crumb().await? } else { None };
            let r = self
                .send_once(
                    method.clone(),
                    url,
                    body.as_ref(),
                    what,
                    accept,
                    Some(self.limits.request_timeout),
                    crumb.as_ref(),
                )
                .await;
            match r {
                // A crumb can expire with its session: fetch a fresh one and try the write once more.
                Err(Error::Crumb) if method == Method::POST && attempt == 1 && self.needs_crumb() => {
                    *self.crumb.lock().await = None;
                    let fresh = self.crumb().await?;
                    return match self
                        .send_once(
                            method.clone(),
                            url,
                            body.as_ref(),
                            what,
                            accept,
                            Some(self.limits.request_timeout),
                            fresh.as_ref(),
                        )
                        .await
                    {
                        Err(Error::Crumb) => Err(Error::Crumb),
                        other => other,
                    };
                }
                Err(e) if idempotent && e.is_transient() && attempt < attempts => {
                    let backoff = self.limits.retry_base_delay * 2u32.saturating_pow(attempt - 1);
                    let jitter = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2 + 1));
                    tracing::debug!(what, attempt, error = %e, "retrying a transient failure");
                    tokio::time::sleep(backoff + jitter).await;
                }
                // The wait stated is the wait there was, over every attempt.
                Err(Error::Timeout { url, during, .. }) => {
                    return Err(Error::Timeout { url, seconds: whole_seconds(started.elapsed()), during });
                }
                other => return other,
            }
        }
    }

    fn needs_crumb(&self) -> bool {
        needs_crumb(self.credentials.as_ref())
    }

    async fn crumb(&self) -> Result<Option<Crumb>, Error> {
        let mut guard = self.crumb.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(Some(c.clone()));
        }
        let r = self
            .send_once(
                Method::GET,
                &self.request_url("crumbIssuer/api/json", &[])?,
                None,
                "the CSRF crumb",
                Accept::Success,
                Some(self.limits.request_timeout),
                None,
            )
            .await;
        match r {
            Ok(resp) => {
                let crumb: Crumb = self.json(resp).await?;
                *guard = Some(crumb.clone());
                Ok(Some(crumb))
            }
            // No crumb issuer: CSRF protection is off.
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read_capped(&self, resp: reqwest::Response, limit: usize) -> Result<Bytes, Error> {
        let request_url = resp.url().clone();
        let url = request_url.to_string();
        if resp.content_length().is_some_and(|n| n as usize > limit) {
            return Err(Error::TooLarge { url, limit });
        }
        let mut buf = BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport_error(e, &request_url, self.limits.request_timeout))?;
            if buf.len() + chunk.len() > limit {
                return Err(Error::TooLarge { url, limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    async fn json<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, Error> {
        let url = resp.url().to_string();
        let body = self.read_capped(resp, self.limits.max_body_bytes).await?;
        serde_json::from_slice(&body).map_err(|e| Error::Protocol {
            url,
            detail: format!("the body is not the expected JSON ({e}); it starts with {:?}", snippet(&body)),
        })
    }

    /// A JSON GET, shared with identical reads in flight; never cached.
    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&'static str, String)],
        what: &str,
    ) -> Result<T, Error> {
        self.get_json_keep(path, query, what, Keep::Never).await
    }

    async fn get_json_keep<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&'static str, String)],
        what: &str,
        keep: Keep,
    ) -> Result<T, Error> {
        let (url, f) = self.shared_get(path, query, what, Read::Buffered, keep).await?;
        decode_json(&url, &f.body)
    }

    /// A buffered GET made once for every identical read in flight at the same moment, or
    /// answered from the cache of immutable answers. The read is driven by whichever of its
    /// callers polls it (no task of its own: on a quiet server that hop was a cross-thread
    /// wake-up on every read), so a caller that gives up does not cancel it for the others; when
    /// every caller has given up, the read stops (nobody waits for it).
    async fn shared_get(
        &self,
        path: &str,
        query: &[(&'static str, String)],
        what: &str,
        read: Read,
        keep: Keep,
    ) -> Result<(String, Fetched), Error> {
        let url = self.request_url(path, query)?;
        let shown = {
            let mut u = url.clone();
            u.set_query(None);
            u.to_string()
        };
        let key = match read {
            Read::Buffered => format!("GET {url}"),
            Read::Progressive { max_bytes } => format!("GET/{max_bytes} {url}"),
        };
        let found = self.wire.join_or_start(&key, || {
            let me = self.clone();
            let (what, key, shown) = (what.to_string(), key.clone(), shown.clone());
            let read = async move {
                let mut guard = Abandon { wire: me.wire.clone(), key, armed: true };
                let out = me.fetch(&url, &what, read).await;
                me.wire.complete(&guard.key, &keep, &out);
                guard.armed = false;
                out
            };
            // A panic in the read is its waiters' error, as it was when the read had a task.
            AssertUnwindSafe(read)
                .catch_unwind()
                .map(move |r| {
                    r.unwrap_or_else(|_| Err(Error::Protocol { url: shown, detail: "the shared read failed".into() }))
                })
                .boxed()
                .shared()
        });
        let f = match found {
            Found::Cached(f) => f,
            Found::Join(shared) => shared.await?,
        };
        Ok((shown, f))
    }

    /// The upstream read behind [`Self::shared_get`].
    async fn fetch(&self, url: &Url, what: &str, read: Read) -> Result<Fetched, Error> {
        match read {
            Read::Buffered => {
                let resp = self.send_to(Method::GET, url, None, what, Accept::Success).await?;
                let version = version_header(resp.headers());
                let body = self.read_capped(resp, self.limits.max_body_bytes).await?;
                Ok(Fetched { body, version, text_size: None, more_data: false, cut: false })
            }
            Read::Progressive { max_bytes } => {
                let resp = self.send_stream(url, what).await?;
                let (text_size, more_data) = progressive_headers(&resp)?;
                let url = resp.url().clone();
                let mut stream = resp.bytes_stream();
                let mut buf = BytesMut::new();
                let mut cut = false;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| transport_error(e, &url, self.limits.read_timeout))?;
                    let room = max_bytes.saturating_sub(buf.len());
                    if chunk.len() > room {
                        buf.extend_from_slice(&chunk[..room]);
                        cut = true;
                        break;
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(Fetched { body: buf.freeze(), version: None, text_size: Some(text_size), more_data, cut })
            }
        }
    }

    /// Turns a non-success response into the error that explains it.
    async fn diagnose(&self, resp: reqwest::Response, what: &str) -> Error {
        let status = resp.status();
        let url = resp.url().to_string();
        let headers = resp.headers().clone();
        let body = self.read_capped(resp, 256 * 1024).await.unwrap_or_default();
        diagnose_status(
            status,
            &headers,
            &String::from_utf8_lossy(&body),
            what,
            &url,
            self.user(),
            &self.base,
            self.credentials.is_none(),
        )
    }

    // -----------------------------------------------------------------------------------------
    // controller

    /// `GET /api/json` with an optional tree; also returns the `X-Jenkins` version header.
    pub async fn root_info(&self, tree: Option<&Tree>) -> Result<(RootInfo, Option<String>), Error> {
        let q = tree_query(tree);
        let (url, f) =
            self.shared_get("api/json", &q, "the controller's root API", Read::Buffered, Keep::Never).await?;
        Ok((decode_json(&url, &f.body)?, f.version))
    }

    /// The Jenkins version (`X-Jenkins`).
    pub async fn version(&self) -> Result<Option<String>, Error> {
        let (_, v) = self.root_info(Some(&Tree::new().field("_class"))).await?;
        Ok(v)
    }

    /// Who the controller thinks we are.
    pub async fn who_am_i(&self) -> Result<WhoAmI, Error> {
        self.get_json("whoAmI/api/json", &[], "whoAmI").await
    }

    /// Installed plugins (needs Overall/SystemRead or Administer).
    pub async fn plugins(&self) -> Result<Vec<Plugin>, Error> {
        let tree = Tree::new()
            .nested("plugins", Tree::new().fields(&["shortName", "longName", "version", "active", "enabled"]));
        let list: PluginList =
            self.get_json("pluginManager/api/json", &tree_query(Some(&tree)), "the plugin list").await?;
        Ok(list.plugins)
    }

    /// Which optional plugins are there. Users who may not list plugins get `None`s, not an error.
    pub async fn capabilities(&self) -> Result<Capabilities, Error> {
        match self.plugins().await {
            Ok(plugins) => {
                let has = |n: &str| Some(plugins.iter().any(|p| p.short_name == n && p.active));
                Ok(Capabilities {
                    plugins_visible: true,
                    pipeline_rest_api: has("pipeline-rest-api"),
                    notification: has("notification"),
                    junit: has("junit"),
                    folders: has("cloudbees-folder"),
                    multibranch: has("workflow-multibranch"),
                    git: has("git"),
                    plugins,
                })
            }
            Err(Error::Forbidden { .. }) => Ok(Capabilities::default()),
            Err(e) => Err(e),
        }
    }

    /// The connection test: version, identity, the kind of secret, crumb need, plugins and what
    /// the user can see — or the diagnosis of why not, naming the cause and the fix.
    ///
    /// Each request is tried once (no retries): a controller that does not answer costs exactly
    /// one timeout (`Limits::request_timeout`), and a timeout error states the time really waited.
    pub async fn test_connection(&self) -> Result<ConnectionReport, Error> {
        let started = Instant::now();
        let mut once = self.clone();
        once.limits.read_attempts = 1;
        match once.test_connection_once(started).await {
            Err(Error::Timeout { url, during, .. }) => {
                Err(Error::Timeout { url, seconds: whole_seconds(started.elapsed()), during })
            }
            other => other,
        }
    }

    async fn test_connection_once(&self, started: Instant) -> Result<ConnectionReport, Error> {
        let tree = Tree::new()
            .fields(&["useCrumbs", "useSecurity", "quietingDown", "quietDownReason", "url"])
            .nested_range("jobs", Tree::new().field("name"), crate::tree::Range::first(1));
        let resp = match self
            .send(Method::GET, "api/json", &tree_query(Some(&tree)), None, "the controller's root API", Accept::Success)
            .await
        {
            Ok(r) => r,
            Err(Error::NotFound { url, .. }) => {
                return Err(Error::NotJenkinsRoot {
                    url,
                    problem: "no Jenkins at this path: the controller's root API answered 404".into(),
                    fix: "check the context path: Jenkins often lives below one (e.g. https://host:8443/jenkins); open the URL in a browser and use the address of the Jenkins dashboard".into(),
                });
            }
            // A TLS port answers plain HTTP with a TLS alert (not HTTP), by closing, or — nginx,
            // some proxies — with "400 The plain HTTP request was sent to HTTPS port".
            Err(
                e @ (Error::Connect { .. } | Error::Protocol { .. } | Error::Tls { .. } | Error::BadRequest { .. }),
            ) if self.base.as_url().scheme() == "http" => {
                return Err(match self.https_url_if_tls().await {
                    Some(https_url) => Error::PlainHttpToTls { url: self.base.to_string(), https_url },
                    None => e,
                });
            }
            Err(e) => return Err(e),
        };
        let version = version_header(resp.headers());
        let root: RootInfo = self.json(resp).await?;
        if version.is_none() {
            return Err(Error::Protocol {
                url: self.base.to_string(),
                detail: "the answer has no X-Jenkins header, so it does not come from Jenkins".into(),
            });
        }
        let who = self.who_am_i().await?;
        if self.credentials.is_some() && who.anonymous {
            return Err(Error::Protocol {
                url: self.base.to_string(),
                detail: "Jenkins treated the request as anonymous although credentials were sent (a proxy may strip the Authorization header)".into(),
            });
        }
        if root.use_crumbs && !self.needs_crumb() && self.refuses_crumbless_post().await? {
            let user = self.user().to_string();
            return Err(Error::PasswordNotToken {
                token_url: format!("{}user/{}/security", self.base, crate::path::raw_encode(&user)),
                user,
            });
        }
        let capabilities = self.capabilities().await?;
        let mut warnings = Vec::new();
        if root.quieting_down {
            warnings.push(format!(
                "Jenkins is in quiet-down mode{}: it starts no new builds, so triggers will wait in the queue. Fix: cancel quiet-down in Jenkins (Manage Jenkins → Cancel Quiet Down) once the maintenance is over",
                root.quiet_down_reason.as_deref().filter(|r| !r.is_empty()).map(|r| format!(" ({r})")).unwrap_or_default()
            ));
        }
        let user = self.user().to_string();
        if root.jobs.is_empty() {
            warnings.push(format!(
                "user '{user}' can see no jobs: it lacks Job/Read (Overall/Read alone shows none), or the controller has no jobs yet. Fix: grant '{user}' Job/Read in Jenkins (Manage Jenkins → Security) on the jobs agents should reach"
            ));
        }
        if !capabilities.plugins_visible {
            warnings.push(format!(
                "user '{user}' cannot list plugins (needs Overall/SystemRead or Administer), so optional features (Pipeline stages, test reports) are unknown and are tried when used. Fix: grant '{user}' Overall/SystemRead in Jenkins if you want them detected"
            ));
        }
        if !root.use_security {
            warnings.push("security is off on this controller: anyone who can reach it may do anything, whatever jgate allows. Fix: enable security in Jenkins (Manage Jenkins → Security)".into());
        }
        if self.base.as_url().scheme() == "http" && self.host_is_public().await {
            warnings.push(format!(
                "the URL is plain http:// to a public address: the API token travels in clear text with every request. Fix: serve Jenkins over https and change the URL (`jgate controller update NAME --url {}`)",
                https_of(self.base.as_url())
            ));
        }
        Ok(ConnectionReport {
            base_url: self.base.to_string(),
            version,
            who_am_i: who,
            crumbs_required: root.use_crumbs && self.needs_crumb(),
            use_security: root.use_security,
            quieting_down: root.quieting_down,
            quiet_down_reason: root.quiet_down_reason,
            capabilities,
            warnings,
            elapsed: started.elapsed(),
        })
    }

    /// Whether Jenkins refuses a harmless POST sent without a crumb: it does for passwords and
    /// never for API tokens (`ApiCrumbExclusion`, jenkins-wire.md §8.6). The POST is to the root
    /// API (`Api.doJson` answers any method and changes nothing).
    async fn refuses_crumbless_post(&self) -> Result<bool, Error> {
        let q = [("tree", "_class".to_string())];
        let timeout = Some(self.limits.request_timeout);
        let url = self.request_url("api/json", &q)?;
        match self.send_once(Method::POST, &url, None, "a test POST", Accept::Success, timeout, None).await {
            Err(Error::Crumb) => Ok(true),
            Err(e @ Error::Timeout { .. }) => Err(e),
            // Anything else (a proxy refusing POSTs, ...) says nothing about the secret.
            _ => Ok(false),
        }
    }

    /// For an `http://` base URL whose request failed below HTTP: whether the same port completes
    /// a TLS handshake. The probe sends no credentials, goes through the same egress guard, and
    /// accepts any certificate (it only asks whether the port speaks TLS).
    async fn https_url_if_tls(&self) -> Option<String> {
        let https = https_of(self.base.as_url());
        let base = BaseUrl::parse(&https).ok()?;
        let trust = crate::tls::Trust { insecure: true, ..Default::default() };
        let limits = Limits::with_timeout(self.limits.request_timeout.min(Duration::from_secs(5)));
        let http = http_client(&base, &self.policy, &self.lookup, &limits, &trust, false).ok()?;
        let resp = http.get(base.as_url().clone()).timeout(limits.request_timeout).send().await;
        resp.is_ok().then_some(https)
    }

    /// Whether the base URL's host is (or resolves to) a public address.
    async fn host_is_public(&self) -> bool {
        let url = self.base.as_url();
        let port = url.port_or_known_default().unwrap_or(80);
        match url.host() {
            Some(url::Host::Ipv4(ip)) => crate::ssrf::classify(ip.into()) == IpClass::Public,
            Some(url::Host::Ipv6(ip)) => crate::ssrf::classify(ip.into()) == IpClass::Public,
            Some(url::Host::Domain(name)) => self
                .lookup
                .lookup(name, port)
                .await
                .is_ok_and(|addrs| addrs.iter().any(|a| crate::ssrf::classify(a.ip()) == IpClass::Public)),
            None => false,
        }
    }

    // -----------------------------------------------------------------------------------------
    // jobs

    /// Items directly in a folder (or at the root), or the whole tree down to `depth` levels with
    /// one request.
    pub async fn list_items(&self, folder: Option<&JobPath>, depth: usize) -> Result<Vec<ItemRef>, Error> {
        let tree = Tree::jobs_recursive(&["_class", "name", "url", "color", "fullName"], depth.max(1));
        let path = format!("{}api/json", folder.map(JobPath::url_path).unwrap_or_default());
        let what = folder.map_or_else(|| "the root folder".to_string(), |f| format!("folder {f}"));
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Jobs {
            jobs: Vec<ItemRef>,
        }
        let r: Jobs = self.get_json(&path, &tree_query(Some(&tree)), &what).await?;
        Ok(r.jobs)
    }

    /// A job or folder: the fields of [`Job`] (`tree=`; depth 0 would also bring its actions
    /// and every build's reference).
    pub async fn job(&self, job: &JobPath) -> Result<Job, Error> {
        self.get_json(&format!("{}api/json", job.url_path()), &tree_query(Some(&job_tree())), &format!("job {job}"))
            .await
    }

    /// Any object of a job with a `tree=` selection, as raw JSON.
    pub async fn job_tree(&self, job: &JobPath, tree: &Tree) -> Result<Value, Error> {
        self.job_tree_as(job, tree).await
    }

    /// [`Self::job_tree`] read straight into `T` (no `Value` in between); a body that does not
    /// read as `T` is a protocol error naming the mismatch.
    pub async fn job_tree_as<T: DeserializeOwned>(&self, job: &JobPath, tree: &Tree) -> Result<T, Error> {
        self.get_json(&format!("{}api/json", job.url_path()), &tree_query(Some(tree)), &format!("job {job}")).await
    }

    /// A build. A finished build's answer is cached for a short while (it cannot change);
    /// permalinks and running builds always go to Jenkins.
    pub async fn build(&self, job: &JobPath, which: BuildSelector) -> Result<Build, Error> {
        let path = format!("{}{}/api/json", job.url_path(), which.segment());
        let keep = Keep::BuildJson { job_prefix: job.url_path(), numbered: matches!(which, BuildSelector::Number(_)) };
        self.get_json_keep(&path, &[], &describe_build(job, which), keep).await
    }

    /// Triggers a build, with parameters (`buildWithParameters`) or without (`build`), and
    /// returns the queue item id from the `Location` header — the only exact link to the build.
    pub async fn trigger(&self, job: &JobPath, params: &[(String, String)]) -> Result<u64, Error> {
        Ok(self.trigger_detailed(job, params).await?.0)
    }

    /// [`JenkinsClient::trigger`], also telling whether Jenkins merged the trigger into an
    /// identical item already waiting in the queue (HTTP 303, Jenkins 2.308+): then no new build
    /// will start for it.
    pub async fn trigger_detailed(&self, job: &JobPath, params: &[(String, String)]) -> Result<(u64, bool), Error> {
        self.trigger_with_files(job, params, &[]).await
    }

    /// [`JenkinsClient::trigger_detailed`] with file parameters: sent as `multipart/form-data`
    /// (the parameters as text fields, the files as file parts), as Jenkins' own form posts them.
    pub async fn trigger_with_files(
        &self,
        job: &JobPath,
        params: &[(String, String)],
        files: &[FilePart],
    ) -> Result<(u64, bool), Error> {
        let (path, body) = if !files.is_empty() {
            (format!("{}buildWithParameters", job.url_path()), Some(Body::Multipart(params.to_vec(), files.to_vec())))
        } else if params.is_empty() {
            (format!("{}build", job.url_path()), None)
        } else {
            (format!("{}buildWithParameters", job.url_path()), Some(Body::Form(params.to_vec())))
        };
        let what = format!("triggering {job}");
        let resp = self.send(Method::POST, &path, &[], body, &what, Accept::SuccessOrRedirect).await?;
        let status = resp.status();
        let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
        match (status, location) {
            (StatusCode::CREATED | StatusCode::SEE_OTHER, Some(loc)) => queue_id_from_location(&loc)
                .map(|id| (id, status == StatusCode::SEE_OTHER))
                .ok_or_else(|| Error::Protocol {
                    url: self.base.to_string(),
                    detail: format!("the trigger answered Location: {loc}, which is not a queue item URL"),
                }),
            (s, loc) => Err(Error::Protocol {
                url: self.base.to_string(),
                detail: format!(
                    "the trigger answered HTTP {} without a queue item (Location: {}); Jenkins did not schedule the build",
                    s.as_u16(),
                    loc.unwrap_or_else(|| "none".into())
                ),
            }),
        }
    }

    /// A queue item, live or left (left items are kept for 5 minutes).
    pub async fn queue_item(&self, id: u64) -> Result<QueueItem, Error> {
        self.get_json(&format!("queue/item/{id}/api/json"), &[], &format!("queue item {id}")).await
    }

    /// The whole queue.
    pub async fn queue(&self) -> Result<Vec<QueueItem>, Error> {
        let tree = Tree::new().nested("items", queue_item_tree());
        let q: Queue = self.get_json("queue/api/json", &tree_query(Some(&tree)), "the build queue").await?;
        Ok(q.items)
    }

    /// The queue with a `tree=` selection, as raw JSON (never cached: the queue changes).
    pub async fn queue_tree(&self, tree: &Tree) -> Result<Value, Error> {
        self.get_json("queue/api/json", &tree_query(Some(tree)), "the build queue").await
    }

    /// Cancels a queued item (`POST /queue/cancelItem`, 204).
    pub async fn cancel_queue_item(&self, id: u64) -> Result<(), Error> {
        self.send(
            Method::POST,
            "queue/cancelItem",
            &[("id", id.to_string())],
            None,
            &format!("queue item {id}"),
            Accept::SuccessOrRedirect,
        )
        .await
        .map(drop)
    }

    /// Where a queue item of `job` stands, from Jenkins' own answer: the build it became (found by
    /// its `queueId` once the left item has expired), cancelled, still waiting, or gone.
    pub async fn queue_item_fate(&self, job: &JobPath, queue_id: u64) -> Result<QueueFate, Error> {
        self.queue_item_fate_polled(job, queue_id, Poll::FRESH).await
    }

    async fn queue_item_fate_polled(&self, job: &JobPath, queue_id: u64, poll: Poll) -> Result<QueueFate, Error> {
        match self.queue_item_polled(queue_id, poll).await {
            Ok(item) => Ok(if let Some(b) = item.executable.filter(|b| b.number > 0) {
                QueueFate::Started(b)
            } else if item.cancelled == Some(true) {
                QueueFate::Cancelled
            } else {
                QueueFate::Waiting(item.why)
            }),
            Err(Error::NotFound { .. }) => {
                Ok(self.find_build_by_queue_id(job, queue_id).await?.map_or(QueueFate::Gone, QueueFate::Started))
            }
            Err(e) => Err(e),
        }
    }

    /// Follows a queue item until it becomes a build (the exact build, never "lastBuild").
    /// After the left item has expired, the build is found by its `queueId`. Transient failures
    /// (Jenkins restarting, a refused or dropped connection) do not end the wait: it goes on until
    /// `timeout`, polling every `poll` at first and less often the longer the item waits (up to
    /// every 2 s).
    pub async fn wait_for_build(
        &self,
        job: &JobPath,
        queue_id: u64,
        timeout: Duration,
        poll: Duration,
    ) -> Result<BuildRef, Error> {
        self.wait_for_build_with(job, queue_id, timeout, poll, Duration::ZERO, &mut Sleep).await
    }

    /// [`JenkinsClient::wait_for_build`], pausing with `pause` (which may end early, e.g. on a
    /// build event) and coalesced: a queue item read by any caller less than `coalesce` ago is
    /// used instead of asking again (after an early wake-up, only a read begun since).
    pub async fn wait_for_build_with(
        &self,
        job: &JobPath,
        queue_id: u64,
        timeout: Duration,
        poll: Duration,
        coalesce: Duration,
        pause_with: &mut dyn Pause,
    ) -> Result<BuildRef, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = poll;
        let mut read = Poll { within: coalesce, not_before: None };
        loop {
            match self.queue_item_fate_polled(job, queue_id, read).await {
                Ok(QueueFate::Started(b)) => return Ok(b),
                Ok(QueueFate::Cancelled) => {
                    return Err(Error::Conflict {
                        what: format!("queue item {queue_id} of {job}"),
                        detail: "it was cancelled before it started".into(),
                        fix: "trigger the job again if the build is still wanted".into(),
                    });
                }
                Ok(QueueFate::Gone) => {
                    return Err(Error::NotFound {
                        what: format!("queue item {queue_id}"),
                        url: self.base.to_string(),
                        fix: "the item left the queue more than 5 minutes ago and no build of the job has this queueId; it may have been cancelled".into(),
                    });
                }
                Ok(QueueFate::Waiting(_)) => {}
                Err(e) if e.is_transient() => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::WaitTimeout {
                    what: format!("queue item {queue_id} of {job} to start"),
                    seconds: timeout.as_secs(),
                    fix: "look at the item's 'why' (no free executor? an offline node?) with the queue call".into(),
                });
            }
            read.not_before = pause_with.pause(pause).await;
            pause = (pause * 3 / 2).clamp(poll, Duration::from_secs(2).max(poll));
        }
    }

    /// A queue item, as a wait reads it (see [`Poll`]).
    pub async fn queue_item_polled(&self, id: u64, poll: Poll) -> Result<QueueItem, Error> {
        self.get_json_polled(&format!("queue/item/{id}/api/json"), &format!("queue item {id}"), Keep::Never, poll).await
    }

    /// A build by number, as a wait reads it (see [`Poll`]); a finished build's answer is kept
    /// as [`JenkinsClient::build`] keeps it.
    pub async fn build_polled(&self, job: &JobPath, number: u64, poll: Poll) -> Result<Build, Error> {
        let which = BuildSelector::Number(number);
        let path = format!("{}{}/api/json", job.url_path(), which.segment());
        let keep = Keep::BuildJson { job_prefix: job.url_path(), numbered: true };
        self.get_json_polled(&path, &describe_build(job, which), keep, poll).await
    }

    /// A GET shared by every waiter: the answer of a read begun less than `poll.within` ago
    /// (and not before `poll.not_before`) by anyone, else one read for all in flight.
    async fn get_json_polled<T: DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
        keep: Keep,
        poll: Poll,
    ) -> Result<T, Error> {
        let key = format!("GET {}", self.base.join(path)?);
        if let Some(f) = self.wire.polled(&key, poll.within, poll.not_before) {
            return decode_json(&key[4..], &f.body);
        }
        let began = std::time::Instant::now();
        let (url, f) = self.shared_get(path, &[], what, Read::Buffered, keep).await?;
        self.wire.remember_polled(&key, began, &f);
        decode_json(&url, &f.body)
    }

    /// The build of `job` created from queue item `queue_id`, if any.
    pub async fn find_build_by_queue_id(&self, job: &JobPath, queue_id: u64) -> Result<Option<BuildRef>, Error> {
        let tree = Tree::new().nested("allBuilds", Tree::new().fields(&["_class", "number", "url", "queueId"]));
        let v = self.job_tree(job, &tree).await?;
        let found = v
            .get("allBuilds")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|b| b.get("queueId").and_then(Value::as_u64) == Some(queue_id)).cloned());
        Ok(found.and_then(|b| serde_json::from_value(b).ok()))
    }

    /// Stops a running build (`POST .../stop`; Jenkins answers 302 whether or not it ran).
    pub async fn stop_build(&self, job: &JobPath, number: u64) -> Result<(), Error> {
        let path = format!("{}{number}/stop", job.url_path());
        self.send(Method::POST, &path, &[], None, &format!("build #{number} of {job}"), Accept::SuccessOrRedirect)
            .await
            .map(drop)
    }

    /// The job's config.xml as stored.
    pub async fn config_xml(&self, job: &JobPath) -> Result<String, Error> {
        let path = format!("{}config.xml", job.url_path());
        let (_, f) = self.shared_get(&path, &[], &format!("job {job}"), Read::Buffered, Keep::Never).await?;
        Ok(String::from_utf8_lossy(&f.body).into_owned())
    }

    /// Replaces the job's config.xml.
    pub async fn update_config_xml(&self, job: &JobPath, xml: &str) -> Result<(), Error> {
        let path = format!("{}config.xml", job.url_path());
        self.send(Method::POST, &path, &[], Some(Body::Xml(xml.to_string())), &format!("job {job}"), Accept::Success)
            .await
            .map(drop)
    }

    /// Creates `name` in `folder` (or the root) from a config.xml.
    pub async fn create_job(&self, folder: Option<&JobPath>, name: &str, xml: &str) -> Result<(), Error> {
        let path = format!("{}createItem", folder.map(JobPath::url_path).unwrap_or_default());
        self.send(
            Method::POST,
            &path,
            &[("name", name.to_string())],
            Some(Body::Xml(xml.to_string())),
            &format!("creating {name}"),
            Accept::Success,
        )
        .await?;
        // The name may belong to a job deleted elsewhere whose finished builds this client cached.
        self.wire.clear();
        Ok(())
    }

    /// Copies `from` (a name in the same folder, or `/full/path`) to `name`.
    pub async fn copy_job(&self, folder: Option<&JobPath>, name: &str, from: &str) -> Result<(), Error> {
        let path = format!("{}createItem", folder.map(JobPath::url_path).unwrap_or_default());
        let q = [("name", name.to_string()), ("mode", "copy".to_string()), ("from", from.to_string())];
        self.send(Method::POST, &path, &q, None, &format!("copying {from} to {name}"), Accept::SuccessOrRedirect)
            .await?;
        self.wire.clear();
        Ok(())
    }

    /// Deletes a job or folder.
    pub async fn delete_job(&self, job: &JobPath) -> Result<(), Error> {
        let path = format!("{}doDelete", job.url_path());
        let r = self.send(Method::POST, &path, &[], None, &format!("job {job}"), Accept::SuccessOrRedirect).await;
        // A job created later under this name numbers its builds from 1 again.
        self.wire.clear();
        r.map(drop)
    }

    /// Enables or disables a job.
    pub async fn set_enabled(&self, job: &JobPath, enabled: bool) -> Result<(), Error> {
        let path = format!("{}{}", job.url_path(), if enabled { "enable" } else { "disable" });
        self.send(Method::POST, &path, &[], None, &format!("job {job}"), Accept::SuccessOrRedirect).await.map(drop)
    }

    /// Deletes one build (`POST .../N/doDelete`; Jenkins answers 302 to the job, 400 while it runs).
    pub async fn delete_build(&self, job: &JobPath, number: u64) -> Result<(), Error> {
        let path = format!("{}{number}/doDelete", job.url_path());
        let r = self
            .send(Method::POST, &path, &[], None, &format!("build #{number} of {job}"), Accept::SuccessOrRedirect)
            .await;
        // A finished build's cached JSON and log must not outlive it (its number is never reused,
        // but its permalinks move).
        self.wire.clear();
        r.map(drop)
    }

    /// Renames a job inside its folder (`POST .../confirmRename?newName=`; 302 to the new URL).
    pub async fn rename_job(&self, job: &JobPath, new_name: &str) -> Result<(), Error> {
        let path = format!("{}confirmRename", job.url_path());
        let q = [("newName", new_name.to_string())];
        let r = self.send(Method::POST, &path, &q, None, &format!("job {job}"), Accept::SuccessOrRedirect).await;
        self.wire.clear();
        r.map(drop)
    }

    /// Sets the description of a job, or of one of its builds (`submitDescription`).
    pub async fn set_description(&self, job: &JobPath, build: Option<u64>, description: &str) -> Result<(), Error> {
        let (path, what) = match build {
            Some(n) => (format!("{}{n}/submitDescription", job.url_path()), format!("build #{n} of {job}")),
            None => (format!("{}submitDescription", job.url_path()), format!("job {job}")),
        };
        let form = Body::Form(vec![("description".into(), description.to_string())]);
        let r = self.send(Method::POST, &path, &[], Some(form), &what, Accept::SuccessOrRedirect).await;
        // A finished build's JSON (with its description) may be cached.
        if build.is_some() {
            self.wire.clear();
        }
        r.map(drop)
    }

    /// Sets the number of the job's next build (the Next Build Number plugin's
    /// `nextbuildnumber/submit`, which reads its structured `json` form field).
    pub async fn set_next_build_number(&self, job: &JobPath, number: u64) -> Result<(), Error> {
        let path = format!("{}nextbuildnumber/submit", job.url_path());
        let form = Body::Form(vec![
            ("nextBuildNumber".into(), number.to_string()),
            ("json".into(), serde_json::json!({ "nextBuildNumber": number }).to_string()),
        ]);
        match self.send(Method::POST, &path, &[], Some(form), &format!("job {job}"), Accept::SuccessOrRedirect).await {
            Err(Error::NotFound { url, .. }) => Err(Error::NotFound {
                what: format!("job {job}, or the Next Build Number plugin's action"),
                url,
                fix: "check the job name, and that the 'next-build-number' plugin is installed".into(),
            }),
            other => other.map(drop),
        }
    }

    /// Wipes out the job's workspace (`doWipeOutWorkspace`; 302 to the job).
    pub async fn wipe_workspace(&self, job: &JobPath) -> Result<(), Error> {
        let path = format!("{}doWipeOutWorkspace", job.url_path());
        self.send(Method::POST, &path, &[], None, &format!("job {job}"), Accept::SuccessOrRedirect).await.map(drop)
    }

    /// Creates an empty item of a type (`createItem?name=&mode=<descriptor id>`, the "new item" form),
    /// e.g. a folder: `com.cloudbees.hudson.plugins.folder.Folder`.
    pub async fn create_item_of_type(&self, folder: Option<&JobPath>, name: &str, mode: &str) -> Result<(), Error> {
        let path = format!("{}createItem", folder.map(JobPath::url_path).unwrap_or_default());
        let form = Body::Form(vec![("name".into(), name.to_string()), ("mode".into(), mode.to_string())]);
        let q = [("name", name.to_string())];
        self.send(Method::POST, &path, &q, Some(form), &format!("creating {name}"), Accept::SuccessOrRedirect).await?;
        self.wire.clear();
        Ok(())
    }

    /// The pending input steps of a Pipeline run (`wfapi/pendingInputActions`).
    pub async fn pending_inputs(&self, job: &JobPath, number: u64) -> Result<Value, Error> {
        let path = format!("{}{number}/wfapi/pendingInputActions", job.url_path());
        self.wfapi(job, &path).await
    }

    /// Answers a Pipeline input step: proceed (with parameters, if it asks for any) or abort.
    pub async fn answer_input(
        &self,
        job: &JobPath,
        number: u64,
        input_id: &str,
        proceed: bool,
        params: &[(String, String)],
    ) -> Result<(), Error> {
        let base = format!("{}{number}/input/{}/", job.url_path(), crate::path::raw_encode(input_id));
        let (path, body) = match (proceed, params.is_empty()) {
            (false, _) => (format!("{base}abort"), None),
            (true, true) => (format!("{base}proceedEmpty"), None),
            (true, false) => {
                let parameter: Vec<Value> =
                    params.iter().map(|(k, v)| serde_json::json!({ "name": k, "value": v })).collect();
                let json = serde_json::json!({ "parameter": parameter }).to_string();
                (format!("{base}proceed"), Some(Body::Form(vec![("json".into(), json)])))
            }
        };
        let what = format!("input step {input_id} of build #{number} of {job}");
        self.send(Method::POST, &path, &[], body, &what, Accept::SuccessOrRedirect).await.map(drop)
    }

    /// Replays Pipeline run `number` of `job` with `main_script` in place of its script
    /// (workflow-cps' `ReplayAction.doRun`: `POST <build>/replay/run`, the submitted form
    /// `json={"mainScript": ...}`; scripts the run loaded keep their originals). Jenkins answers
    /// with a redirect to the job and names no queue item: `Ok` means it accepted the replay.
    /// No error quotes the script. Sent once: a caller must not resend it blindly (a second POST
    /// is a second run).
    pub async fn replay(&self, job: &JobPath, number: u64, main_script: &str) -> Result<(), Error> {
        let path = format!("{}{number}/replay/run", job.url_path());
        let json = serde_json::json!({ "mainScript": main_script }).to_string();
        let what = format!("the replay of build #{number} of {job}");
        let resp = self
            .send(
                Method::POST,
                &path,
                &[],
                Some(Body::Form(vec![("json".into(), json)])),
                &what,
                Accept::SuccessOrRedirect,
            )
            .await
            .map_err(|e| replay_error(e, job, number))?;
        let status = resp.status();
        if status.is_redirection() {
            return Ok(());
        }
        // A 2xx page is not the plugin's answer (a proxy's, or an unknown plugin version's): the
        // replay's fate is not known from it.
        Err(Error::Protocol {
            url: self.base.to_string(),
            detail: format!(
                "{what} answered HTTP {} instead of the redirect to the job; whether Jenkins scheduled it is unknown",
                status.as_u16()
            ),
        })
    }

    // -----------------------------------------------------------------------------------------
    // nodes, views

    pub async fn nodes(&self) -> Result<ComputerSet, Error> {
        let tree = Tree::new().fields(&["busyExecutors", "totalExecutors"]).nested("computer", computer_tree());
        self.get_json("computer/api/json", &tree_query(Some(&tree)), "the node list").await
    }

    /// One node; the controller is `(built-in)`.
    pub async fn node(&self, name: &str) -> Result<Computer, Error> {
        let seg = if name.is_empty() || name == "Built-In Node" || name == "built-in" {
            "(built-in)".to_string()
        } else {
            crate::path::raw_encode(name)
        };
        self.get_json(&format!("computer/{seg}/api/json"), &tree_query(Some(&computer_tree())), &format!("node {name}"))
            .await
    }

    pub async fn views(&self) -> Result<Vec<ViewRef>, Error> {
        let (root, _) =
            self.root_info(Some(&Tree::new().nested("views", Tree::new().fields(&["_class", "name", "url"])))).await?;
        Ok(root.views)
    }

    pub async fn view(&self, name: &str) -> Result<View, Error> {
        self.get_json(&format!("view/{}/api/json", crate::path::raw_encode(name)), &[], &format!("view {name}")).await
    }

    /// A view's URL path: `view/V/` at the root, `job/F/view/V/` in a folder.
    fn view_path(folder: Option<&JobPath>, name: &str) -> String {
        format!("{}view/{}/", folder.map(JobPath::url_path).unwrap_or_default(), crate::path::raw_encode(name))
    }

    /// Creates a view from its config.xml (`createView?name=`), at the root or in a folder.
    pub async fn create_view(&self, folder: Option<&JobPath>, name: &str, xml: &str) -> Result<(), Error> {
        let path = format!("{}createView", folder.map(JobPath::url_path).unwrap_or_default());
        let q = [("name", name.to_string())];
        let body = Some(Body::Xml(xml.to_string()));
        self.send(Method::POST, &path, &q, body, &format!("creating view {name}"), Accept::SuccessOrRedirect)
            .await
            .map(drop)
    }

    /// Creates an empty view of a type (`createView` as its form posts it: `name`, `mode` and the
    /// same two in the `json` field), e.g. `hudson.model.ListView`.
    pub async fn create_view_of_type(&self, folder: Option<&JobPath>, name: &str, mode: &str) -> Result<(), Error> {
        let path = format!("{}createView", folder.map(JobPath::url_path).unwrap_or_default());
        let json = serde_json::json!({ "name": name, "mode": mode }).to_string();
        let form = Body::Form(vec![
            ("name".into(), name.to_string()),
            ("mode".into(), mode.to_string()),
            ("json".into(), json),
        ]);
        self.send(Method::POST, &path, &[], Some(form), &format!("creating view {name}"), Accept::SuccessOrRedirect)
            .await
            .map(drop)
    }

    /// A view's config.xml.
    pub async fn view_config_xml(&self, folder: Option<&JobPath>, name: &str) -> Result<String, Error> {
        let path = format!("{}config.xml", Self::view_path(folder, name));
        let (_, f) = self.shared_get(&path, &[], &format!("view {name}"), Read::Buffered, Keep::Never).await?;
        Ok(String::from_utf8_lossy(&f.body).into_owned())
    }

    /// Replaces a view's config.xml.
    pub async fn update_view_config(&self, folder: Option<&JobPath>, name: &str, xml: &str) -> Result<(), Error> {
        let path = format!("{}config.xml", Self::view_path(folder, name));
        let body = Some(Body::Xml(xml.to_string()));
        self.send(Method::POST, &path, &[], body, &format!("view {name}"), Accept::Success).await.map(drop)
    }

    /// Deletes a view (`doDelete`; 302 to the owner).
    pub async fn delete_view(&self, folder: Option<&JobPath>, name: &str) -> Result<(), Error> {
        let path = format!("{}doDelete", Self::view_path(folder, name));
        self.send(Method::POST, &path, &[], None, &format!("view {name}"), Accept::SuccessOrRedirect).await.map(drop)
    }

    /// Adds an item of the view's owner to a list view, or removes it (`addJobToView` /
    /// `removeJobFromView?name=`, the item's name relative to the owner).
    pub async fn view_membership(
        &self,
        folder: Option<&JobPath>,
        name: &str,
        item: &str,
        add: bool,
    ) -> Result<(), Error> {
        let action = if add { "addJobToView" } else { "removeJobFromView" };
        let path = format!("{}{action}", Self::view_path(folder, name));
        let q = [("name", item.to_string())];
        self.send(Method::POST, &path, &q, None, &format!("view {name}"), Accept::SuccessOrRedirect).await.map(drop)
    }

    // -----------------------------------------------------------------------------------------
    // tests, pipelines

    /// The junit report of a build; `None` if the build recorded no tests.
    /// Cached for a short while once the build is known to be finished (its JSON was read).
    pub async fn test_report(&self, job: &JobPath, number: u64) -> Result<Option<Value>, Error> {
        let path = format!("{}{number}/testReport/api/json", job.url_path());
        let keep = Keep::IfFinished { build: format!("{}{number}/", job.url_path()) };
        // The counts and each case's identity, status and error: not the stack traces and
        // captured output, which make most of a large report's bytes.
        let tree = Tree::new().fields(&["failCount", "passCount", "skipCount"]).nested(
            "suites",
            Tree::new().fields(&["name"]).nested(
                "cases",
                Tree::new().fields(&["className", "name", "status", "errorDetails", "age", "duration"]),
            ),
        );
        match self.get_json_keep(&path, &tree_query(Some(&tree)), "the test report", keep).await {
            Ok(v) => Ok(Some(v)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Each test case of a build as (class.name, status) with `tree=` (no error texts or
    /// stack traces); `None` if the build recorded no tests.
    pub async fn test_statuses(&self, job: &JobPath, number: u64) -> Result<Option<Vec<(String, String)>>, Error> {
        let path = format!("{}{number}/testReport/api/json", job.url_path());
        let tree = Tree::new()
            .nested("suites", Tree::new().nested("cases", Tree::new().fields(&["className", "name", "status"])));
        let keep = Keep::IfFinished { build: format!("{}{number}/", job.url_path()) };
        let v: Value = match self.get_json_keep(&path, &tree_query(Some(&tree)), "the test report", keep).await {
            Ok(v) => v,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for suite in v.get("suites").and_then(Value::as_array).into_iter().flatten() {
            for case in suite.get("cases").and_then(Value::as_array).into_iter().flatten() {
                let s = |k: &str| case.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                out.push((format!("{}.{}", s("className"), s("name")), s("status")));
            }
        }
        Ok(Some(out))
    }

    /// A build's facts for comparisons and deployments, with `tree=`: number, result, timing,
    /// parameters, causes and changes.
    pub async fn build_facts(&self, job: &JobPath, which: BuildSelector) -> Result<Build, Error> {
        let path = format!("{}{}/api/json", job.url_path(), which.segment());
        let change = Tree::new()
            .fields(&["commitId", "id", "msg", "comment", "authorEmail"])
            .nested("author", Tree::new().field("fullName"));
        let set = Tree::new().field("kind").nested("items", change);
        let tree = Tree::new()
            .fields(&["_class", "number", "url", "result", "building", "duration", "timestamp", "displayName"])
            .nested(
                "actions",
                Tree::new()
                    .field("_class")
                    .nested("parameters", Tree::new().fields(&["name", "value"]))
                    .nested(
                        "causes",
                        Tree::new().fields(&[
                            "_class",
                            "shortDescription",
                            "userId",
                            "upstreamProject",
                            "upstreamBuild",
                            "upstreamUrl",
                        ]),
                    )
                    .fields(&["failCount", "skipCount", "totalCount", "urlName"]),
            )
            .nested("changeSet", set.clone())
            .nested("changeSets", set);
        self.get_json(&path, &tree_query(Some(&tree)), &describe_build(job, which)).await
    }

    /// Recent Pipeline runs (at most 10, newest first) from the Pipeline REST API.
    pub async fn pipeline_runs(&self, job: &JobPath) -> Result<Vec<PipelineRun>, Error> {
        let path = format!("{}wfapi/runs", job.url_path());
        self.wfapi(job, &path).await
    }

    /// One Pipeline run with its stages.
    pub async fn pipeline_run(&self, job: &JobPath, number: u64) -> Result<PipelineRun, Error> {
        let path = format!("{}{number}/wfapi/describe", job.url_path());
        self.wfapi(job, &path).await
    }

    /// One flow node (a stage with its steps, or a step).
    pub async fn pipeline_node(&self, job: &JobPath, number: u64, node: &str) -> Result<Stage, Error> {
        let path =
            format!("{}{number}/execution/node/{}/wfapi/describe", job.url_path(), crate::path::raw_encode(node));
        self.wfapi(job, &path).await
    }

    /// The log of one flow node (the last ≤ 10 KiB, HTML-escaped as Jenkins sends it).
    pub async fn pipeline_node_log(&self, job: &JobPath, number: u64, node: &str) -> Result<NodeLog, Error> {
        let path = format!("{}{number}/execution/node/{}/wfapi/log", job.url_path(), crate::path::raw_encode(node));
        self.wfapi(job, &path).await
    }

    /// A Pipeline run's artifacts with their sizes (`wfapi/artifacts`, jenkins-wire.md §12.4).
    pub async fn pipeline_artifacts(&self, job: &JobPath, number: u64) -> Result<Vec<PipelineArtifact>, Error> {
        let path = format!("{}{number}/wfapi/artifacts", job.url_path());
        self.wfapi(job, &path).await
    }

    /// The whole log of one flow node as a byte stream (the node's `consoleUrl`,
    /// `execution/node/ID/log`, jenkins-wire.md §12.4): never held in memory.
    pub async fn node_log_stream(
        &self,
        job: &JobPath,
        number: u64,
        node: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, Error>> + Unpin + use<>, Error> {
        let path = format!("{}{number}/execution/node/{}/log", job.url_path(), crate::path::raw_encode(node));
        self.stream_of(&path, format!("the log of flow node {node} of build #{number} of {job}")).await
    }

    // -----------------------------------------------------------------------------------------
    // artifacts

    /// A build's archived artifacts as the build API lists them (`tree=artifacts[...]`).
    pub async fn artifacts(&self, job: &JobPath, number: u64) -> Result<Vec<Artifact>, Error> {
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Arts {
            artifacts: Vec<Artifact>,
        }
        let tree = Tree::new().nested("artifacts", Tree::new().fields(&["displayPath", "fileName", "relativePath"]));
        let path = format!("{}{number}/api/json", job.url_path());
        let a: Arts = self
            .get_json(&path, &tree_query(Some(&tree)), &format!("the artifacts of build #{number} of {job}"))
            .await?;
        Ok(a.artifacts)
    }

    /// One artifact's bytes (`N/artifact/<relative path>`), streamed. `relative` must be a path
    /// Jenkins listed for the build; each segment is encoded on its own, so a `/` inside a
    /// segment cannot be sent.
    pub async fn artifact_stream(
        &self,
        job: &JobPath,
        number: u64,
        relative: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, Error>> + Unpin + use<>, Error> {
        let encoded: Vec<String> = relative.split('/').map(crate::path::raw_encode).collect();
        let path = format!("{}{number}/artifact/{}", job.url_path(), encoded.join("/"));
        self.stream_of(&path, format!("artifact {relative} of build #{number} of {job}")).await
    }

    /// A GET answered as a byte stream (the read timeout guards an idle stream).
    async fn stream_of(
        &self,
        path: &str,
        what: String,
    ) -> Result<impl Stream<Item = Result<Bytes, Error>> + Unpin + use<>, Error> {
        let url = self.request_url(path, &[])?;
        let resp = self.send_stream(&url, &what).await?;
        let timeout = self.limits.read_timeout;
        Ok(resp.bytes_stream().map(move |r| r.map_err(|e| transport_error(e, &url, timeout))))
    }

    /// One node with its executors and what they run (`computer/NAME/api/json` with `tree=`,
    /// jenkins-wire.md §5.8), as raw JSON.
    pub async fn node_detail(&self, name: &str) -> Result<Value, Error> {
        let seg = if name.is_empty() || name == "Built-In Node" || name == "built-in" || name == "(built-in)" {
            "(built-in)".to_string()
        } else {
            crate::path::raw_encode(name)
        };
        let running = Tree::new().fields(&["url", "number", "fullDisplayName"]);
        let executor = Tree::new().fields(&["idle", "number", "likelyStuck"]).nested("currentExecutable", running);
        let tree = Tree::new()
            .fields(&[
                "displayName",
                "description",
                "idle",
                "numExecutors",
                "offline",
                "temporarilyOffline",
                "offlineCauseReason",
            ])
            .nested("offlineCause", Tree::new().field("description"))
            .nested("assignedLabels", Tree::new().field("name"))
            .nested("executors", executor.clone())
            .nested("oneOffExecutors", executor);
        self.get_json(&format!("computer/{seg}/api/json"), &tree_query(Some(&tree)), &format!("node {name}")).await
    }

    /// wfapi calls: a 404 is explained — missing job, not a Pipeline job, or the plugin is absent.
    async fn wfapi<T: DeserializeOwned>(&self, job: &JobPath, path: &str) -> Result<T, Error> {
        match self.get_json(path, &[], &format!("the Pipeline REST API of {job}")).await {
            Err(Error::NotFound { url, .. }) => {
                let class = self.job_tree(job, &Tree::new().field("_class")).await?;
                let class = class.get("_class").and_then(Value::as_str).unwrap_or_default().to_string();
                if !class.ends_with("WorkflowJob") {
                    return Err(Error::BadRequest {
                        message: format!("{job} is a {class}, not a Pipeline job; it has no stages"),
                        fix: "use the build and console calls for non-Pipeline jobs".into(),
                    });
                }
                match self.capabilities().await {
                    Ok(c) if c.pipeline_rest_api == Some(true) => Err(Error::NotFound {
                        what: "the Pipeline run".into(),
                        url,
                        fix: "check the build number".into(),
                    }),
                    _ => Err(Error::PluginMissing {
                        plugin: "pipeline-rest-api",
                        feature: "Pipeline stages (wfapi)",
                        alternative: "the console log, which shows [Pipeline] stage markers",
                    }),
                }
            }
            other => other,
        }
    }

    // -----------------------------------------------------------------------------------------
    // consoles

    /// The whole console (`consoleText`) as a byte stream: never held in memory. Combine with
    /// [`crate::logs`] for head, tail, ranges and grep.
    pub async fn console_stream(
        &self,
        job: &JobPath,
        number: u64,
    ) -> Result<impl Stream<Item = Result<Bytes, Error>> + Unpin + use<>, Error> {
        let path = format!("{}{number}/consoleText", job.url_path());
        self.stream_of(&path, format!("the console of build #{number} of {job}")).await
    }

    /// A streaming GET: no whole-request timeout (the read timeout guards idle streams).
    async fn send_stream(&self, url: &Url, what: &str) -> Result<reqwest::Response, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(Method::GET, url, None, what, Accept::Success, None, None).await {
                Err(e) if e.is_transient() && attempt < self.limits.read_attempts.max(1) => {
                    tokio::time::sleep(self.limits.retry_base_delay * attempt).await;
                }
                other => return other,
            }
        }
    }

    /// A GET of `path` (relative to the base URL) with `query`, answered as it comes: for the
    /// governed proxy, which forwards requests it has classified and rebuilt itself. Retried like
    /// every read; any status but 2xx is an error diagnosed as usual.
    pub async fn forward_get(&self, path: &str, query: &[(String, String)]) -> Result<reqwest::Response, Error> {
        let pairs: Vec<(&str, String)> = query.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        self.send_stream(&self.request_url(path, &pairs)?, &format!("{}{path}", self.base)).await
    }

    /// One progressive read from byte `start` (`logText/progressiveText`), at most `max_bytes`.
    pub async fn progressive_text(
        &self,
        job: &JobPath,
        number: u64,
        start: u64,
        max_bytes: usize,
    ) -> Result<LogChunk, Error> {
        let path = format!("{}{number}/logText/progressiveText", job.url_path());
        let what = format!("the console of build #{number} of {job}");
        // A complete log's chunks are immutable: cached; the build's final size is remembered
        // for tail_from_end.
        let keep = Keep::Log { build: format!("{}{number}/", job.url_path()) };
        let read = Read::Progressive { max_bytes };
        let (_, f) = self.shared_get(&path, &[("start", start.to_string())], &what, read, keep).await?;
        let size = f.text_size.unwrap_or_default();
        // Jenkins restarts from 0 when start is past the end; the size tells where this chunk began.
        let began = if start > size { 0 } else { start };
        let next_start = if f.cut { began + f.body.len() as u64 } else { size };
        Ok(LogChunk { text: f.body, next_start, more: f.more_data || f.cut })
    }

    /// The last `n` lines of a console, reading only its end when the log's size is known.
    ///
    /// Jenkins offers no cheap way to learn a log's size (jenkins-wire.md §10.6: a `start` past
    /// the end restarts from 0, and `X-Text-Size` comes with the answer's body). The size is known
    /// when the caller passes one (`known_size`, e.g. the `next_start` of an earlier
    /// [`Self::progressive_text`]) or when this client has already seen the finished build's
    /// complete size. Then only a suffix is read (`progressiveText?start=size-window`, the window
    /// growing until it holds `n` whole lines), and its lines are numbered when this client also
    /// knows the complete log's line count (learnt by an earlier tail). Otherwise the whole
    /// `consoleText` is streamed, as [`crate::logs::tail`] does, at most `max_scan` bytes of it;
    /// after a streamed tail of a big finished log, its size and line count are learnt with one
    /// more request whose headers alone are read, so the next tail reads only the end. Memory is
    /// bounded by `n × max_line_bytes` either way.
    pub async fn tail_from_end(
        &self,
        job: &JobPath,
        number: u64,
        n: usize,
        max_line_bytes: usize,
        known_size: Option<u64>,
        max_scan: u64,
    ) -> Result<EndTail, Error> {
        let spec = TailSpec { lines: n, max_line_bytes, max_scan };
        let build = format!("{}{number}/", job.url_path());
        let remembered = self.wire.final_log(&build);
        let Some(size) = known_size.or(remembered.map(|f| f.size)) else {
            let t = self.tail_streamed(job, number, spec).await?;
            if t.bytes_read >= SIZE_PROBE_FROM && !t.scan_stopped {
                self.learn_final_size(&build, job, number, t.bytes_read, t.total_lines).await;
            }
            return Ok(t);
        };
        // The line count belongs to the remembered size; it numbers the suffix only if Jenkins
        // still reports that size.
        let lines_of_size = remembered.filter(|f| f.size == size).and_then(|f| f.lines);
        self.tail_progressive(job, number, spec, Some((size, lines_of_size))).await
    }

    /// The last `n` lines of a console together with the offset that follows them, for the first
    /// page of a follow ("tail, then follow"): `log_size` is the `start` of the next
    /// [`Self::progressive_text`], exact because both come from one progressiveText answer. A
    /// finished log whose size this client knows is read from its end; otherwise progressiveText
    /// is read from 0 (at most `max_scan` bytes), which is what a follow from the start asks of
    /// Jenkins too.
    pub async fn tail_to_follow(
        &self,
        job: &JobPath,
        number: u64,
        n: usize,
        max_line_bytes: usize,
        max_scan: u64,
    ) -> Result<EndTail, Error> {
        let spec = TailSpec { lines: n, max_line_bytes, max_scan };
        let known = self.wire.final_log(&format!("{}{number}/", job.url_path())).map(|f| (f.size, f.lines));
        self.tail_progressive(job, number, spec, known).await
    }

    /// A tail read through progressiveText: from `size - window` when `known` gives the log's
    /// size (with its line count, if known, to number the lines from the end), the window
    /// growing until it holds `n` whole lines; from 0 otherwise.
    async fn tail_progressive(
        &self,
        job: &JobPath,
        number: u64,
        spec: TailSpec,
        known: Option<(u64, Option<u64>)>,
    ) -> Result<EndTail, Error> {
        let TailSpec { lines: n, max_line_bytes, max_scan } = spec;
        let build = format!("{}{number}/", job.url_path());
        let path = format!("{build}logText/progressiveText");
        let what = format!("the console of build #{number} of {job}");
        let (size, lines_of_size) = known.unwrap_or((0, None));
        let mut window = (n as u64).saturating_mul(256).max(16 * 1024);
        let mut bytes_read = 0u64;
        loop {
            let start = size.saturating_sub(window);
            let resp = self.send_stream(&self.request_url(&path, &[("start", start.to_string())])?, &what).await?;
            let (text_size, more) = progressive_headers(&resp)?;
            // Jenkins restarts from 0 when start is past the end (the log is shorter than
            // the size said): then this answer is the whole log.
            let whole = start == 0 || text_size < start;
            let url = resp.url().clone();
            let timeout = self.limits.read_timeout;
            let counted = std::sync::atomic::AtomicU64::new(0);
            let stream = resp.bytes_stream().map(|r| {
                let r = r.map_err(|e| transport_error(e, &url, timeout));
                if let Ok(b) = &r {
                    counted.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                r
            });
            let (stream, stopped) = crate::logs::scan_limited(stream, max_scan);
            let t = if whole {
                crate::logs::tail(stream, n, max_line_bytes).await?
            } else {
                crate::logs::tail(crate::logs::skip_partial_line(stream), n, max_line_bytes).await?
            };
            let scan_stopped = stopped.load(std::sync::atomic::Ordering::Relaxed);
            bytes_read += counted.into_inner();
            if !more {
                self.wire.finished_log(&build, text_size, (whole && !scan_stopped).then_some(t.total_lines));
            }
            if whole || t.total_lines >= n as u64 || scan_stopped {
                let shown = t.lines.len() as u64;
                let total = if whole {
                    Some(t.total_lines)
                } else {
                    lines_of_size.filter(|total| !more && text_size == size && *total >= shown)
                };
                // Numbered from the end when only the end was read and the total is known.
                let first = total.map(|total| total + 1 - shown);
                let lines = t
                    .lines
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| TailLine {
                        number: if whole { Some(l.number) } else { first.map(|f| f + i as u64) },
                        text: l.text,
                        truncated: l.truncated,
                    })
                    .collect();
                return Ok(EndTail {
                    lines,
                    total_lines: total,
                    log_size: Some(text_size),
                    more,
                    bytes_read,
                    scan_stopped,
                });
            }
            window = window.saturating_mul(4);
        }
    }

    /// After a streamed tail of `streamed` bytes and `lines` lines: learns the log's size for the
    /// next tail, if the build has finished. `consoleText` has console notes removed, so its
    /// length is at most the log's (`progressiveText` offsets count the notes): a read from there
    /// never restarts from 0, and Jenkins spools only what follows — the notes' worth, not the
    /// log. Only its headers are read (`X-Text-Size`, `X-More-Data`). Best effort: a failure
    /// only means the next tail streams again.
    /// `build` is the build's path (`job/.../N/`), as the wire cache keys it.
    async fn learn_final_size(&self, build: &str, job: &JobPath, number: u64, streamed: u64, lines: Option<u64>) {
        let path = format!("{build}logText/progressiveText");
        let what = format!("the size of the console of build #{number} of {job}");
        let sent =
            async { self.send_stream(&self.request_url(&path, &[("start", streamed.to_string())])?, &what).await };
        match sent.await {
            Ok(resp) => match progressive_headers(&resp) {
                Ok((size, false)) if size >= streamed => self.wire.finished_log(build, size, lines),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "could not learn a console's size"),
            },
            Err(e) => tracing::debug!(error = %e, "could not learn a console's size"),
        }
    }

    /// [`Self::tail_from_end`] without a known size: the whole `consoleText`, at most `max_scan`
    /// bytes of it.
    async fn tail_streamed(&self, job: &JobPath, number: u64, spec: TailSpec) -> Result<EndTail, Error> {
        let (stream, stopped) = crate::logs::scan_limited(self.console_stream(job, number).await?, spec.max_scan);
        let t = crate::logs::tail(stream, spec.lines, spec.max_line_bytes).await?;
        Ok(EndTail {
            lines: t
                .lines
                .into_iter()
                .map(|l| TailLine { number: Some(l.number), text: l.text, truncated: l.truncated })
                .collect(),
            total_lines: Some(t.total_lines),
            log_size: None,
            more: false,
            bytes_read: t.total_bytes,
            scan_stopped: stopped.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Follows a running build's console from `start` until Jenkins says there is no more data,
    /// polling every `poll`. Yields text as it arrives; memory is bounded by `chunk_bytes`.
    pub fn follow_console<'a>(
        &'a self,
        job: &'a JobPath,
        number: u64,
        start: u64,
        poll: Duration,
        chunk_bytes: usize,
    ) -> impl Stream<Item = Result<Bytes, Error>> + 'a {
        futures_util::stream::unfold(Some(start), move |state| async move {
            let start = state?;
            let mut pos = start;
            loop {
                match self.progressive_text(job, number, pos, chunk_bytes).await {
                    Err(e) => return Some((Err(e), None)),
                    Ok(chunk) => {
                        let next = chunk.more.then_some(chunk.next_start);
                        if !chunk.text.is_empty() {
                            return Some((Ok(chunk.text), next));
                        }
                        let n = next?;
                        pos = n;
                        tokio::time::sleep(poll).await;
                    }
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// helpers

/// The fields of [`crate::model::Computer`] (`tree=`: a node's answer at depth 0 also carries its executors,
/// monitor data and load statistics, which nothing here reads).
fn computer_tree() -> Tree {
    Tree::new()
        .fields(&[
            "_class",
            "displayName",
            "description",
            "idle",
            "numExecutors",
            "offline",
            "temporarilyOffline",
            "offlineCauseReason",
        ])
        .nested("assignedLabels", Tree::new().field("name"))
}

/// The fields of [`Job`], its parameter definitions (`property`) as [`Job::parameters`] reads them.
fn job_tree() -> Tree {
    let build_ref = || Tree::new().fields(&["_class", "number", "url"]);
    let mut t = Tree::new()
        .fields(&[
            "_class",
            "name",
            "fullName",
            "displayName",
            "fullDisplayName",
            "description",
            "url",
            "buildable",
            "color",
            "disabled",
            "inQueue",
            "concurrentBuild",
            "nextBuildNumber",
        ])
        .nested("builds", build_ref());
    for permalink in [
        "firstBuild",
        "lastBuild",
        "lastCompletedBuild",
        "lastFailedBuild",
        "lastStableBuild",
        "lastSuccessfulBuild",
        "lastUnstableBuild",
        "lastUnsuccessfulBuild",
    ] {
        t = t.nested(permalink, build_ref());
    }
    t.nested("healthReport", Tree::new().fields(&["description", "score"]))
        .nested(
            "property",
            Tree::new().field("_class").nested(
                "parameterDefinitions",
                Tree::new()
                    .fields(&["_class", "name", "type", "description", "choices"])
                    .nested("defaultParameterValue", Tree::new().fields(&["_class", "name", "value"])),
            ),
        )
        .nested("queueItem", queue_item_tree())
        .nested("jobs", Tree::new().fields(&["_class", "name", "url", "color", "fullName"]))
}

/// The fields of a queue item in the queue's listing ([`crate::model::QueueItem`] without its actions).
fn queue_item_tree() -> Tree {
    Tree::new()
        .fields(&["_class", "id", "blocked", "buildable", "stuck", "why", "inQueueSince", "params", "url", "cancelled"])
        .nested("task", Tree::new().fields(&["_class", "name", "url", "color", "fullName"]))
        .nested("executable", Tree::new().fields(&["_class", "number", "url"]))
}

fn tree_query(tree: Option<&Tree>) -> Vec<(&'static str, String)> {
    match tree {
        Some(t) if !t.is_empty() => vec![("tree", t.to_string())],
        _ => Vec::new(),
    }
}

/// How a shared read is buffered.
#[derive(Debug, Clone, Copy)]
enum Read {
    /// The whole body, up to `Limits::max_body_bytes`.
    Buffered,
    /// A progressiveText answer, cut at `max_bytes`.
    Progressive { max_bytes: usize },
}

/// Removes the in-flight entry of a shared read whose task ended without completing.
struct Abandon {
    wire: Arc<Wire>,
    key: String,
    armed: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if self.armed {
            self.wire.abandon(&self.key);
        }
    }
}

fn decode_json<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Protocol {
        url: url.to_string(),
        detail: format!("the body is not the expected JSON ({e}); it starts with {:?}", snippet(body)),
    })
}

/// A streamed tail at least this long is followed by a request that learns the log's size
/// ([`JenkinsClient::learn_final_size`]); below it, streaming the log again costs little.
const SIZE_PROBE_FROM: u64 = 1 << 20;

/// What a tail reads: the last `lines` lines, each up to `max_line_bytes`, from at most
/// `max_scan` bytes of the log.
#[derive(Debug, Clone, Copy)]
struct TailSpec {
    lines: usize,
    max_line_bytes: usize,
    max_scan: u64,
}

/// `X-Text-Size` and `X-More-Data` of a progressiveText answer (jenkins-wire.md §10.6).
fn progressive_headers(resp: &reqwest::Response) -> Result<(u64, bool), Error> {
    let size =
        resp.headers().get("X-Text-Size").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let more_data = resp.headers().get("X-More-Data").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    let Some(size) = size else {
        let mut url = resp.url().clone();
        url.set_query(None);
        return Err(Error::Protocol {
            url: url.to_string(),
            detail: "progressiveText answered without X-Text-Size".into(),
        });
    };
    Ok((size, more_data))
}

/// Whether requests made with `credentials` need a CSRF crumb: API-token requests are exempt
/// from CSRF checks (Jenkins 2.96+); anonymous and password sessions are not.
fn needs_crumb(credentials: Option<&Credentials>) -> bool {
    credentials.is_none_or(|c| c.kind == SecretKind::Password)
}

/// A duration in whole seconds, rounded to the nearest.
fn whole_seconds(d: Duration) -> u64 {
    (d.as_millis() as u64 + 500) / 1000
}

/// The `https://` twin of an `http://` URL, on the same port.
fn https_of(url: &url::Url) -> String {
    let mut u = url.clone();
    let port = u.port_or_known_default();
    if u.set_scheme("https").is_ok() {
        let _ = u.set_port(port.filter(|p| *p != 443));
    }
    u.to_string()
}

fn version_header(h: &HeaderMap) -> Option<String> {
    h.get("X-Jenkins").and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn describe_build(job: &JobPath, which: BuildSelector) -> String {
    match which {
        BuildSelector::Number(n) => format!("build #{n} of {job}"),
        other => format!("the {} of {job}", other.segment()),
    }
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned()
}

/// `/queue/item/N/` → N.
pub fn queue_id_from_location(location: &str) -> Option<u64> {
    let path = location.split(['?', '#']).next().unwrap_or(location);
    let mut segs = path.trim_end_matches('/').rsplit('/');
    let id = segs.next()?.parse().ok()?;
    (segs.next() == Some("item") && segs.next() == Some("queue")).then_some(id)
}

fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        // reqwest's wrappers repeat the URL (with its query) and say nothing of the cause.
        if !text.starts_with("error sending request for url") && !text.starts_with("client error (") {
            parts.push(text);
        }
        cur = err.source();
    }
    if parts.is_empty() { e.to_string() } else { parts.join(": ") }
}

/// Explains a failure below HTTP: refused by the SSRF guard, DNS, TLS, connect, timeout.
fn transport_error(e: reqwest::Error, url: &url::Url, timeout: Duration) -> Error {
    if let Some(r) = crate::ssrf::find_refusal(&e) {
        // The guard resolves names itself, so its lookup failures are DNS problems, not refusals.
        let host = r.target.rsplit_once(':').map_or(r.target.as_str(), |(h, _)| h).to_string();
        return match &r.reason {
            RefusalReason::DnsFailure { detail } => Error::Dns { host, detail: detail.clone() },
            RefusalReason::DnsTimeout { .. } => Error::Dns { host, detail: "the lookup timed out".into() },
            RefusalReason::NoAddresses => Error::Dns { host, detail: "the name has no addresses".into() },
            _ => Error::Refused(r.clone()),
        };
    }
    let mut shown = url.clone();
    shown.set_query(None);
    let text = chain_text(&e);
    let lower = text.to_ascii_lowercase();
    let host = url.host_str().unwrap_or_default().to_string();
    if e.is_timeout() {
        return Error::Timeout {
            url: shown.to_string(),
            seconds: timeout.as_secs(),
            during: if e.is_connect() { "connecting" } else { "waiting for the answer" },
        };
    }
    if lower.contains("dns error")
        || lower.contains("failed to lookup address")
        || lower.contains("name or service not known")
        || lower.contains("no addresses")
    {
        return Error::Dns { host, detail: text };
    }
    if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("invalidcontenttype")
        || lower.contains("corrupt message")
    {
        let fix = if lower.contains("unknownissuer")
            || lower.contains("unknown issuer")
            || lower.contains("self-signed")
            || lower.contains("self signed")
            || lower.contains("causedasendentity")
        {
            "the controller's certificate is signed by a CA this machine does not trust, or is self-signed: give that CA's certificate, or the self-signed certificate itself, as a PEM file with --ca-file FILE; for a corporate CA installed on this machine, add --system-ca (--insecure-skip-tls-verify only for a throwaway test controller: anyone on the path can then read the token)"
        } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
            "the certificate does not name this host: use the host name the certificate was issued for in the URL (--url), or reissue the certificate with this name in its subject alternative names"
        } else if lower.contains("expired") || lower.contains("notvalidyet") || lower.contains("not valid yet") {
            "the controller's certificate is outside its validity period: renew it on the Jenkins side (or check this machine's clock)"
        } else if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
            "the server did not answer with TLS: it serves plain http on this port, so use http:// (or the controller's https port) in --url"
        } else {
            "check that the URL's scheme matches the port (https on an http port fails), and the controller's certificate (--ca-file, --system-ca)"
        };
        return Error::Tls { url: shown.to_string(), detail: text, fix: fix.into() };
    }
    Error::Connect { url: shown.to_string(), detail: text }
}

/// The replay's refusals, with the fix that applies to a replay (the generic ones speak of
/// names and disabled jobs).
fn replay_error(e: Error, job: &JobPath, number: u64) -> Error {
    match e {
        Error::NotFound { what, url, .. } => Error::NotFound {
            what,
            url,
            fix: format!(
                "Jenkins offers replay only on a Pipeline run of an enabled job, to a user with Job/Build or Run/Replay: check that {job} is a Pipeline job that is not disabled and that build #{number} exists"
            ),
        },
        Error::Forbidden { message, permission, .. } => Error::Forbidden {
            message,
            permission,
            fix: "the connected user needs Run/Replay on the job (implied by Job/Configure); a run outside the Groovy sandbox also needs Overall/Administer".into(),
        },
        Error::Conflict { what, detail, .. } => Error::Conflict {
            what,
            detail,
            fix: "Jenkins could not schedule the replay (the job is not buildable, or the run's execution could not be loaded): enable the job or pick another build".into(),
        },
        e => e,
    }
}

/// Explains an HTTP error status (jenkins-wire.md §6, §8, §11).
#[allow(clippy::too_many_arguments)]
fn diagnose_status(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    what: &str,
    url: &str,
    user: &str,
    base: &BaseUrl,
    anonymous: bool,
) -> Error {
    // Jenkins sends UTF-8 in some headers (X-Error: A job already exists with the name ‘x’).
    let header =
        |name: &str| headers.get(name).map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let url = url::Url::parse(url)
        .map(|mut u| {
            u.set_query(None);
            u.to_string()
        })
        .unwrap_or_else(|_| url.to_string());
    match status.as_u16() {
        401 => Error::Unauthorized {
            user: user.to_string(),
            token_url: format!("{base}user/{}/security", crate::path::raw_encode(user)),
        },
        403 if body.contains("No valid crumb") => Error::Crumb,
        403 => {
            let permission = header("X-Required-Permission");
            let as_anonymous = anonymous || header("X-You-Are-Authenticated-As").as_deref() == Some("anonymous");
            match (&permission, as_anonymous) {
                (Some(p), true) => Error::Forbidden {
                    message: format!(
                        "Jenkins refused anonymous access to {what} (HTTP 403): anonymous users lack {} ({p})",
                        permission_title(p)
                    ),
                    permission: permission.clone(),
                    fix: "anonymous read access is off on this controller: configure a user name and API token".into(),
                },
                (Some(p), false) => Error::Forbidden {
                    message: format!(
                        "user '{user}' lacks the {} permission ({p}) needed for {what} (HTTP 403)",
                        permission_title(p)
                    ),
                    permission: permission.clone(),
                    fix: format!(
                        "grant {} to '{user}' in Jenkins (Manage Jenkins → Security), or connect as a user that has it",
                        permission_title(p)
                    ),
                },
                (None, _) => Error::Forbidden {
                    message: format!(
                        "Jenkins refused {what} for user '{user}' (HTTP 403){}",
                        first_error_line(body).map(|l| format!(": {l}")).unwrap_or_default()
                    ),
                    permission: None,
                    fix: "check the user's permissions in Jenkins (the /whoAmI page shows what Jenkins sees)".into(),
                },
            }
        }
        404 => Error::NotFound {
            what: what.to_string(),
            url,
            fix: format!(
                "check the name: folders are addressed by full name a/b (URL /job/a/job/b/); Jenkins also answers 404 when user '{user}' may not see the item (it lacks Job/Read)"
            ),
        },
        409 => Error::Conflict {
            what: what.to_string(),
            detail: first_error_line(body).unwrap_or_else(|| "Jenkins refused it".into()),
            fix: "the job is probably disabled: enable it first".into(),
        },
        400 => {
            let message = header("X-Error").or_else(|| first_error_line(body)).unwrap_or_else(|| "Bad Request".into());
            let fix = if message.contains("is not parameterized") {
                "trigger the job without parameters".to_string()
            } else if message.contains("Nothing is submitted") || message.contains("expects a form submission") {
                "this job takes parameters: trigger it with parameters".to_string()
            } else if message.contains("already exists") {
                "choose another name, or update the existing item instead".to_string()
            } else {
                "correct the request as the message says".to_string()
            };
            Error::BadRequest { message, fix }
        }
        503 => {
            let detail = if body.contains("getting ready to work") {
                "Jenkins is starting up".to_string()
            } else if body.to_ascii_lowercase().contains("quiet") || body.contains("shut down") {
                "Jenkins is in quiet-down mode (preparing to shut down)".to_string()
            } else {
                "Jenkins or a proxy in front of it is temporarily unavailable".to_string()
            };
            Error::Unavailable { detail }
        }
        300..=399 => Error::Redirected {
            url,
            status: status.as_u16(),
            location: header("Location").unwrap_or_else(|| "(none)".into()),
        },
        s @ 500..=599 => Error::Server {
            what: what.to_string(),
            status: s,
            first_line: first_error_line(body)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("server error").to_string()),
        },
        s => Error::Protocol { url, detail: format!("unexpected HTTP {s} for {what}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_from_locations() {
        assert_eq!(queue_id_from_location("http://ci:8080/queue/item/42/"), Some(42));
        assert_eq!(queue_id_from_location("https://ci/jenkins/queue/item/7"), Some(7));
        assert_eq!(queue_id_from_location("http://ci/job/x/42/"), None);
        assert_eq!(queue_id_from_location("garbage"), None);
    }

    #[test]
    fn credentials_never_debug_the_secret() {
        let c = Credentials::api_token("alice", SecretString::from("s3cr3t-token".to_string()));
        let shown = format!("{c:?}");
        assert!(shown.contains("alice") && !shown.contains("s3cr3t"), "{shown}");
    }
}
