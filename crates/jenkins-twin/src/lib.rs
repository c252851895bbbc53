//! # jenkins-twin: a simulated Jenkins controller, faithful on the wire
//!
//! The twin answers the Jenkins remote access API the way a real controller does — status codes,
//! headers, JSON key order, the `_class` rule, `depth=`/`tree=`, crumbs and permissions, the queue
//! life cycle, console streams, Pipeline REST API (`wfapi`) — following
//! `shared/reference/jenkins-wire.md`. Builds really run, on the twin's clock: a documented
//! subset of the shell builder and the Jenkinsfile is *interpreted* (nothing runs on the host).
//!
//! It is for tests, benchmarks and demos: jgate's own suites, and anyone who wants to point a
//! Jenkins client or an agent at something that behaves like Jenkins. It is not a Jenkins: no
//! plugins run, no agents connect, no SCM is polled. docs/twin.md says what is and is not modelled.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let scenario = jenkins_twin::scenario::parse(jenkins_twin::scenario::DEMO)?;
//! let twin = jenkins_twin::Twin::new(&scenario, &[("admin".into(), "admin".into(), "11aa".into())])?;
//! let server = twin.serve("127.0.0.1:0".parse()?).await?;
//! println!("twin listening on {}", server.url());
//! # Ok(()) }
//! ```

pub mod api;
pub mod config_xml;
pub mod engine;
pub mod export;
mod http;
pub mod log;
pub mod model;
mod notify;
mod pages;
pub mod plan;
pub mod scenario;
pub mod script;
mod wfapi;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::engine::Clock;
use crate::model::State;
use crate::scenario::{FaultSpec, Scenario, ScenarioError};

/// A running twin controller's shared state.
pub struct Twin {
    pub(crate) state: Mutex<State>,
    pub(crate) clock: Clock,
    /// Wakes the queue scheduler.
    pub(crate) wake: Notify,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) http: reqwest::Client,
    /// `http://ADDR/`, set when serving: the request-independent root URL (notifications).
    pub(crate) listen_base: OnceLock<String>,
    started: std::time::Instant,
    /// Requests received (faulted ones included): lets tests prove what a client retried.
    pub(crate) requests: std::sync::atomic::AtomicU64,
    /// Requests per path (without the query), for tests that count what a client fetched.
    pub(crate) requests_by_path: Mutex<HashMap<String, u64>>,
    /// Log bytes sent (consoles, progressive text, `execution/node/ID/log`), for tests that bound
    /// what a call read.
    pub(crate) log_bytes_sent: Arc<std::sync::atomic::AtomicU64>,
}

/// Fault injection settings plus the seeded generator that decides each request's fate.
pub struct Faults {
    pub spec: FaultSpec,
    rng: fastrand::Rng,
    /// Answer 503 "getting ready to work" until this long after start.
    pub starting_for: Duration,
}

impl Faults {
    fn roll(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.f64() < rate
    }
}

impl Twin {
    /// Builds a twin from a scenario; `admins` are `(name, password, api token)` users with
    /// Overall/Administer (the `--user` flag).
    pub fn new(scenario: &Scenario, admins: &[(String, String, String)]) -> Result<Arc<Twin>, ScenarioError> {
        let clock = Clock::new(scenario.controller.start_time_ms, scenario.controller.time_scale);
        let state = scenario::build_state(scenario, admins, clock.now_ms())?;
        let seed = scenario.faults.seed.unwrap_or(0x5eed);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| ScenarioError::Invalid(format!("cannot create the notification HTTP client: {e}")))?;
        Ok(Arc::new(Twin {
            state: Mutex::new(state),
            clock,
            wake: Notify::new(),
            faults: Mutex::new(Faults {
                spec: scenario.faults.clone(),
                rng: fastrand::Rng::with_seed(seed),
                starting_for: Duration::ZERO,
            }),
            http,
            listen_base: OnceLock::new(),
            started: std::time::Instant::now(),
            requests: std::sync::atomic::AtomicU64::new(0),
            requests_by_path: Mutex::new(HashMap::new()),
            log_bytes_sent: Arc::default(),
        }))
    }

    /// Replaces the fault settings (e.g. from command-line flags).
    pub fn set_faults(&self, spec: FaultSpec, starting_for: Duration) {
        if let Ok(mut f) = self.faults.lock() {
            f.rng = fastrand::Rng::with_seed(spec.seed.unwrap_or(0x5eed));
            f.spec = spec;
            f.starting_for = starting_for;
        }
    }

    pub(crate) fn root_url(&self, st: &State) -> String {
        st.settings
            .root_url
            .clone()
            .or_else(|| self.listen_base.get().cloned())
            .unwrap_or_else(|| "http://localhost:8080/".into())
    }

    /// How many HTTP requests the twin has received (faulted ones included).
    pub fn requests_received(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many requests the twin has received for paths ending with `suffix` (e.g.
    /// `"/7/consoleText"`), queries aside.
    pub fn requests_to(&self, suffix: &str) -> u64 {
        match self.requests_by_path.lock() {
            Ok(map) => map.iter().filter(|(p, _)| p.ends_with(suffix)).map(|(_, n)| n).sum(),
            Err(_) => 0,
        }
    }

    /// How many bytes of logs (consoles, progressive text, `execution/node/ID/log`) the twin has sent.
    pub fn log_bytes_sent(&self) -> u64 {
        self.log_bytes_sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Current time on the twin clock (epoch ms).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Binds `addr` and serves until the returned handle is dropped or the process ends.
    pub async fn serve(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<TwinServer> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let _ = self.listen_base.set(format!("http://{local}/"));
        let app = http::router(self.clone());
        let scheduler = tokio::spawn(engine::scheduler(self.clone()));
        let listener = FaultyListener { inner: listener, twin: self.clone() };
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app.into_make_service_with_connect_info::<RemoteAddr>()).await {
                tracing::error!(error = %e, "twin server stopped");
            }
        });
        Ok(TwinServer { addr: local, server, scheduler })
    }
}

/// Builds a twin from scenario TOML and serves it on a free loopback port: the one call tests,
/// benchmarks and examples need. `admins` are `(name, password, api token)`.
pub async fn start(
    scenario_toml: &str,
    admins: &[(String, String, String)],
) -> Result<(Arc<Twin>, TwinServer), ScenarioError> {
    let sc = scenario::parse(scenario_toml)?;
    let twin = Twin::new(&sc, admins)?;
    let server = twin.serve(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    Ok((twin, server))
}

/// A serving twin. Dropping it stops the server.
pub struct TwinServer {
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    scheduler: tokio::task::JoinHandle<()>,
}

impl TwinServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://ADDR` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// Waits until the server task ends (it normally never does).
    pub async fn wait(mut self) {
        let _ = (&mut self.server).await;
    }
}

impl Drop for TwinServer {
    fn drop(&mut self) {
        self.server.abort();
        self.scheduler.abort();
    }
}

/// The client address of a connection accepted by [`FaultyListener`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct RemoteAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, FaultyListener>> for RemoteAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, FaultyListener>) -> Self {
        RemoteAddr(*stream.remote_addr())
    }
}

/// A listener that resets a configured fraction of connections right after accepting them
/// (SO_LINGER 0 + close sends a TCP RST), so clients see a real "connection reset by peer".
struct FaultyListener {
    inner: TcpListener,
    twin: Arc<Twin>,
}

impl axum::serve::Listener for FaultyListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let reset = self.twin.faults.lock().map(|mut f| {
                        let rate = f.spec.reset_rate;
                        f.roll(rate)
                    });
                    if reset.unwrap_or(false) {
                        // Linger 0 does not block: the kernel discards the socket with an RST.
                        #[allow(deprecated)]
                        let _ = stream.set_linger(Some(Duration::ZERO));
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    return (stream, addr);
                }
                Err(e) => {
                    // Accept errors (EMFILE...) are transient; back off briefly like axum does.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
