//! The connection test is right in every case an administrator meets when adding a controller:
//! one table, each row a real situation (the twin, or a local stand-in: a TLS front with a
//! self-signed certificate, a socket that accepts and never answers, a server without Jenkins at
//! the path), each checked for the cause AND the flag or step that fixes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use jenkins::ssrf::{AllowEntry, Lookup};
use jenkins::{ConnectionReport, Credentials, Error, JenkinsClient, Limits, TlsOptions};
use jenkins_twin::TwinServer;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::SecretString;

const TOKEN: &str = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const READER_TOKEN: &str = "11cccccccccccccccccccccccccccccccc";

const SCENARIO: &str = r#"
[[users]]
name = "reader"
password = "readerpass"
token = "11cccccccccccccccccccccccccccccccc"
permissions = ["Overall/Read"]

[[jobs]]
path = "api"
script = "echo hi"
"#;

async fn twin(toml: &str) -> TwinServer {
    jenkins_twin::start(toml, &[("admin".into(), "adminpass".into(), TOKEN.into())]).await.expect("twin").1
}

fn allow(addr: SocketAddr) -> AllowEntry {
    format!("127.0.0.1/32:{}", addr.port()).parse().expect("allow entry")
}

fn token(user: &str, secret: &str) -> Credentials {
    Credentials::api_token(user, SecretString::from(secret.to_string()))
}

/// A self-signed certificate as `openssl req -x509` makes it: `basicConstraints CA:TRUE`, the
/// subject also the issuer, for `names` (IP addresses become IP SANs).
struct SelfSigned {
    pem: String,
    der: CertificateDer<'static>,
    key: Vec<u8>,
}

fn self_signed(names: &[&str], expired: bool) -> SelfSigned {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.self_signed(&key).expect("certificate");
    SelfSigned { pem: cert.pem(), der: cert.der().clone(), key: key.serialize_der() }
}

/// A TLS front for `backend` (a TLS-terminating proxy, as Jenkins behind nginx, or Jetty's own
/// https port): completes the handshake with `cert`, then relays bytes.
async fn tls_front(backend: SocketAddr, cert: &SelfSigned) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone())))
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else { return };
                let Ok(mut back) = tokio::net::TcpStream::connect(backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
            });
        }
    });
    addr
}

/// A socket that accepts connections and never answers.
async fn black_hole() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    addr
}

/// DNS as a split-horizon setup answers: the name has a public address, and the first answer is
/// this machine (where the test's Jenkins listens).
struct PublicName(SocketAddr);

impl Lookup for PublicName {
    fn lookup(&self, _host: &str, port: u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let first = SocketAddr::new(self.0.ip(), port);
        Box::pin(async move { Ok(vec![first, SocketAddr::from(([93, 184, 215, 14], port))]) })
    }
}

/// What a row expects.
enum Expect {
    /// The test passes; each warning text is found (and no others when the list is empty).
    Pass { warnings: Vec<&'static str> },
    /// The test fails; the message names each text (cause and fix) and none of `absent`.
    Fail { texts: Vec<&'static str>, absent: Vec<&'static str> },
}

struct Case {
    name: &'static str,
    client: Result<JenkinsClient, Error>,
    expect: Expect,
    /// The test must end within this time (no retries multiplying a timeout).
    within: Duration,
}

/// The error as `jgate` prints it (`{:#}`: the message, then each source's).
fn printed(e: &Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts.join(": ")
}

#[tokio::test]
async fn every_connection_case_names_its_cause_and_fix() {
    let s = twin(SCENARIO).await;
    let quiet = twin("[controller]\nquiet_down = \"maintenance\"\n[[jobs]]\npath = \"api\"\n").await;
    let pinned = self_signed(&["127.0.0.1"], false);
    let tls = tls_front(s.addr(), &pinned).await;
    let wrong_name = self_signed(&["jenkins.example.com"], false);
    let tls_wrong_name = tls_front(s.addr(), &wrong_name).await;
    let expired = self_signed(&["127.0.0.1"], true);
    let tls_expired = tls_front(s.addr(), &expired).await;
    let hole = black_hole().await;

    let admin = |url: String, addr: SocketAddr| {
        JenkinsClient::builder(url).credentials(token("admin", TOKEN)).allow_private(allow(addr))
    };
    let with_ca = |addr: SocketAddr, pem: &str| {
        admin(format!("https://127.0.0.1:{}", addr.port()), addr)
            .tls(TlsOptions { ca_bundle_pem: Some(pem.as_bytes().to_vec()), danger_accept_invalid_certs: false })
    };
    let quick = Duration::from_secs(10);

    let cases = vec![
        Case {
            name: "the twin, as it should be",
            client: admin(s.url(), s.addr()).build(),
            expect: Expect::Pass { warnings: vec![] },
            within: quick,
        },
        Case {
            name: "self-signed certificate with CA:TRUE (openssl req -x509), given with --ca-file",
            client: with_ca(tls, &pinned.pem).build(),
            expect: Expect::Pass { warnings: vec![] },
            within: quick,
        },
        Case {
            name: "the same certificate, also with --system-ca",
            client: with_ca(tls, &pinned.pem).system_ca(true).build(),
            expect: Expect::Pass { warnings: vec![] },
            within: quick,
        },
        Case {
            name: "self-signed certificate without --ca-file",
            client: admin(format!("https://127.0.0.1:{}", tls.port()), tls).build(),
            expect: Expect::Fail { texts: vec!["TLS", "self-signed", "--ca-file", "--system-ca"], absent: vec![] },
            within: quick,
        },
        Case {
            name: "pinned certificate for another host name: the name is still checked",
            client: with_ca(tls_wrong_name, &wrong_name.pem).build(),
            expect: Expect::Fail { texts: vec!["does not name this host", "--url"], absent: vec![] },
            within: quick,
        },
        Case {
            name: "pinned certificate that expired: validity is still checked",
            client: with_ca(tls_expired, &expired.pem).build(),
            expect: Expect::Fail { texts: vec!["validity period", "renew"], absent: vec![] },
            within: quick,
        },
        Case {
            name: "http:// to a TLS port",
            client: admin(format!("http://127.0.0.1:{}", tls.port()), tls).build(),
            expect: Expect::Fail {
                texts: vec![
                    "this port speaks TLS",
                    "use https://",
                    &*format!("https://127.0.0.1:{}/", tls.port()).leak(),
                ],
                absent: vec![],
            },
            within: quick,
        },
        Case {
            name: "404 at the root: Jenkins lives under a context path",
            client: admin(format!("{}/jenkins", s.url()), s.addr()).build(),
            expect: Expect::Fail { texts: vec!["no Jenkins at this path", "context path", "/jenkins"], absent: vec![] },
            within: quick,
        },
        Case {
            name: "a pasted job URL",
            client: admin(format!("{}/job/api/", s.url()), s.addr()).build(),
            expect: Expect::Fail {
                texts: vec!["looks like a job page", "use the controller's root URL", &*format!("{}/", s.url()).leak()],
                absent: vec![],
            },
            within: quick,
        },
        Case {
            name: "a pasted manage URL",
            client: admin(format!("{}/manage", s.url()), s.addr()).build(),
            expect: Expect::Fail { texts: vec!["Manage Jenkins page", "root URL"], absent: vec![] },
            within: quick,
        },
        Case {
            name: "a socket that accepts and never answers, --timeout 2: one wait of 2 s, stated",
            client: admin(format!("http://127.0.0.1:{}", hole.port()), hole)
                .limits(Limits::with_timeout(Duration::from_secs(2)))
                .build(),
            expect: Expect::Fail {
                texts: vec!["did not answer", "after waiting 2 s", "--timeout SECONDS"],
                absent: vec!["30 s", "6 s"],
            },
            within: Duration::from_millis(3500),
        },
        Case {
            name: "quiet-down is reported",
            client: admin(quiet.url(), quiet.addr()).build(),
            expect: Expect::Pass { warnings: vec!["quiet-down mode (maintenance)", "Cancel Quiet Down"] },
            within: quick,
        },
        Case {
            name: "a user who sees no jobs and cannot list plugins: warnings, not \"0 plugins\"",
            client: JenkinsClient::builder(s.url())
                .credentials(token("reader", READER_TOKEN))
                .allow_private(allow(s.addr()))
                .build(),
            expect: Expect::Pass {
                warnings: vec!["can see no jobs", "Job/Read", "cannot list plugins", "Overall/SystemRead"],
            },
            within: quick,
        },
        Case {
            name: "a password given where an API token is expected",
            client: JenkinsClient::builder(s.url())
                .credentials(token("admin", "adminpass"))
                .allow_private(allow(s.addr()))
                .build(),
            expect: Expect::Fail {
                texts: vec!["is a password, not an API token", "user/admin/security", "--token-file", "--password"],
                absent: vec!["adminpass"],
            },
            within: quick,
        },
        Case {
            name: "the same password, declared with --password",
            client: JenkinsClient::builder(s.url())
                .credentials(Credentials::password("admin", SecretString::from("adminpass".to_string())))
                .allow_private(allow(s.addr()))
                .build(),
            expect: Expect::Pass { warnings: vec![] },
            within: quick,
        },
        Case {
            name: "a revoked token: the fix is a command that exists",
            client: admin(s.url(), s.addr()).credentials(token("admin", "11dddddddddddddddddddddddddddddddd")).build(),
            expect: Expect::Fail {
                texts: vec!["HTTP 401", "user/admin/security", "jgate controller update NAME --token-file"],
                absent: vec!["11dddd"],
            },
            within: quick,
        },
        Case {
            name: "plain http:// to a host with a public address: the token travels in clear text",
            client: JenkinsClient::builder(format!("http://ci.example.com:{}", s.addr().port()))
                .credentials(token("admin", TOKEN))
                .allow_private(format!("ci.example.com:{}", s.addr().port()).parse().expect("entry"))
                .lookup(Arc::new(PublicName(s.addr())))
                .build(),
            expect: Expect::Pass { warnings: vec!["clear text", "https://ci.example.com:"] },
            within: quick,
        },
        Case {
            name: "a private address without an allow-list entry: refused once, allow-list suggested once",
            client: JenkinsClient::builder("http://10.1.2.3:8080").credentials(token("admin", TOKEN)).build(),
            expect: Expect::Fail { texts: vec!["10.1.2.3", "--allow-private"], absent: vec![] },
            within: quick,
        },
        Case {
            name: "a cloud metadata address: refused once, no allow-list suggested",
            client: JenkinsClient::builder("http://169.254.169.254/").credentials(token("admin", TOKEN)).build(),
            expect: Expect::Fail {
                texts: vec!["169.254.169.254", "no allow-list entry can open it"],
                absent: vec!["--allow-private"],
            },
            within: quick,
        },
        Case {
            name: "a metadata host name: refused once, no allow-list suggested",
            client: JenkinsClient::builder("http://metadata.google.internal/")
                .credentials(token("admin", TOKEN))
                .build(),
            expect: Expect::Fail {
                texts: vec!["metadata", "no allow-list entry can open it"],
                absent: vec!["--allow-private"],
            },
            within: quick,
        },
    ];

    let mut failures = Vec::new();
    for case in cases {
        let started = Instant::now();
        let outcome: Result<ConnectionReport, Error> = match case.client {
            Ok(c) => c.test_connection().await,
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        // Shown with --nocapture: every message, for reading.
        match &outcome {
            Ok(r) => eprintln!("[{}] {took:.1?} pass; warnings: {:?}", case.name, r.warnings),
            Err(e) => eprintln!("[{}] {took:.1?} {}", case.name, printed(e)),
        }
        if took > case.within {
            failures.push(format!("{}: took {took:?}, more than {:?}", case.name, case.within));
        }
        match (&case.expect, &outcome) {
            (Expect::Pass { warnings }, Ok(report)) => {
                let all = report.warnings.join("\n");
                if warnings.is_empty() && !report.warnings.is_empty() {
                    failures.push(format!("{}: unexpected warnings: {all}", case.name));
                }
                for w in warnings {
                    if !all.contains(w) {
                        failures.push(format!("{}: no warning containing {w:?} in: {all}", case.name));
                    }
                }
            }
            (Expect::Fail { texts, absent }, Err(e)) => {
                let text = printed(e);
                for t in texts {
                    if !text.contains(t) {
                        failures.push(format!("{}: message lacks {t:?}: {text}", case.name));
                    }
                }
                for t in absent {
                    if text.contains(t) {
                        failures.push(format!("{}: message should not contain {t:?}: {text}", case.name));
                    }
                }
                // Printed once: no sentence of the message appears twice.
                if let Some(first) = e.to_string().split(". ").next().filter(|f| f.len() > 20)
                    && text.matches(first).count() > 1
                {
                    failures.push(format!("{}: message printed twice: {text}", case.name));
                }
                if text.contains(TOKEN) || text.contains(READER_TOKEN) {
                    failures.push(format!("{}: a token is in the message", case.name));
                }
            }
            (Expect::Pass { .. }, Err(e)) => {
                failures.push(format!("{}: expected a pass, got: {}", case.name, printed(e)))
            }
            (Expect::Fail { .. }, Ok(r)) => {
                failures.push(format!("{}: expected a failure, passed with warnings {:?}", case.name, r.warnings))
            }
        }
    }
    assert!(failures.is_empty(), "{} case(s) wrong:\n{}", failures.len(), failures.join("\n"));
}
