//! Table-driven tests of the egress guard against the bypass checklist of security.md §2.6.
//!
//! Every row that can be tested offline is here: URL spellings go through `url::Url::parse` (the parser
//! reqwest uses) and then `EgressPolicy::check_url`; DNS cases go through `GuardedResolver` with a fake
//! `Lookup`; redirects go through `check_redirect`; a few rows run end to end through reqwest against a
//! local TCP server.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use jenkins::ssrf::{
    AllowEntry, EgressPolicy, GuardedResolver, IpClass, Lookup, Refusal, RefusalReason, ReservedName, check_redirect,
    classify, find_refusal, redirect_policy,
};
use reqwest::dns::Resolve;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

/// What a row expects.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// Allowed.
    Pass,
    /// Refused: not public, not allow-listed, of this class.
    Class(IpClass),
    /// Refused: always-denied class, whatever the allow-list says.
    Always(IpClass),
    /// Refused by host name.
    Name(ReservedName),
    /// Refused: scheme.
    Scheme,
    /// Refused: credentials in the URL.
    Creds,
    /// Refused: port 0.
    Port,
    /// Refused: control characters.
    Control,
    /// `url::Url::parse` itself rejects the text.
    Unparsable,
    /// Refused: DNS failed / timed out / answered nothing.
    DnsFailure,
    DnsTimeout,
    NoAddresses,
    /// Redirect refusals.
    CrossOrigin,
    Downgrade,
    TooMany,
    /// Refused, for whichever reason.
    AnyRefusal,
}

fn policy(allow: &[&str]) -> EgressPolicy {
    EgressPolicy::new(allow.iter().map(|e| e.parse().unwrap_or_else(|err| panic!("allow entry {e}: {err}"))).collect())
}

fn matches(want: Want, result: &Result<(), Refusal>) -> bool {
    let Err(refusal) = result else { return want == Want::Pass };
    match (want, &refusal.reason) {
        (Want::Class(c), RefusalReason::NotAllowListed { address, .. }) => address.class == c,
        (Want::Always(c), RefusalReason::AlwaysDenied(address)) => address.class == c,
        (Want::Name(k), RefusalReason::ReservedName { kind, .. }) => *kind == k,
        (Want::Scheme, RefusalReason::Scheme { .. }) => true,
        (Want::Creds, RefusalReason::Credentials) => true,
        (Want::Port, RefusalReason::InvalidPort) => true,
        (Want::Control, RefusalReason::ControlCharacter) => true,
        (Want::DnsFailure, RefusalReason::DnsFailure { .. }) => true,
        (Want::DnsTimeout, RefusalReason::DnsTimeout { .. }) => true,
        (Want::NoAddresses, RefusalReason::NoAddresses) => true,
        (Want::CrossOrigin, RefusalReason::CrossOriginRedirect { .. }) => true,
        (Want::Downgrade, RefusalReason::Downgrade) => true,
        (Want::TooMany, RefusalReason::TooManyRedirects { .. }) => true,
        (Want::AnyRefusal, _) => true,
        _ => false,
    }
}

use IpClass::*;
use Want::*;

/// (URL text, allow-list, expectation), for `Url::parse` + `check_url`.
const URL_TABLE: &[(&str, &[&str], Want)] = &[
    // --- Loopback spellings ---------------------------------------------------------------------------
    ("http://127.0.0.1/", &[], Class(Loopback)),
    ("http://127.1/", &[], Class(Loopback)),
    ("http://2130706433/", &[], Class(Loopback)),
    ("http://0x7f.1/", &[], Class(Loopback)),
    ("http://0x7f000001/", &[], Class(Loopback)),
    ("http://0177.0.0.1/", &[], Class(Loopback)),
    ("http://0177.0000.0000.0001/", &[], Class(Loopback)),
    ("http://%31%32%37.0.0.1/", &[], Class(Loopback)),
    ("http://①②⑦.0.0.1/", &[], Class(Loopback)),
    ("http://１２７.０.０.１/", &[], Class(Loopback)),
    ("http://127.0.0.1.:80/", &[], Class(Loopback)),
    ("http://127.255.255.254/", &[], Class(Loopback)),
    ("http://127.0.0.1:8080/", &[], Class(Loopback)),
    ("https://127.0.0.1:8443/", &[], Class(Loopback)),
    // --- Unspecified ----------------------------------------------------------------------------------
    ("http://0/", &[], Always(Unspecified)),
    ("http://0.0.0.0/", &[], Always(Unspecified)),
    ("http://0.0.0.0:8080/", &[], Always(Unspecified)),
    ("http://[::]/", &[], Always(Unspecified)),
    ("http://[::ffff:0.0.0.0]/", &[], Always(Unspecified)),
    ("http://0.1.2.3/", &[], Always(Unspecified)),
    // --- IPv6 loopback and IPv4 embedded in IPv6 --------------------------------------------------------
    ("http://[::1]/", &[], Class(Loopback)),
    ("http://[0:0:0:0:0:0:0:1]/", &[], Class(Loopback)),
    ("http://[::ffff:127.0.0.1]/", &[], Class(Loopback)),
    ("http://[::ffff:7f00:1]/", &[], Class(Loopback)),
    ("http://[::127.0.0.1]/", &[], Class(Loopback)),
    ("http://[::ffff:0:127.0.0.1]/", &[], Class(Loopback)),
    ("http://[64:ff9b::7f00:1]/", &[], Class(Loopback)),
    ("http://[64:ff9b::127.0.0.1]/", &[], Class(Loopback)),
    ("http://[2002:7f00:1::]/", &[], Class(Loopback)),
    ("http://[2002:7f00:1:1234::1]/", &[], Class(Loopback)),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", &[], Always(Teredo)),
    ("http://[2001::1]/", &[], Always(Teredo)),
    ("http://[::ffff:10.0.0.1]/", &[], Class(Private)),
    ("http://[64:ff9b::c0a8:101]/", &[], Class(Private)),
    ("http://[2002:ac10:1::]/", &[], Class(Private)),
    // --- Cloud metadata (always refused) --------------------------------------------------------------
    ("http://169.254.169.254/", &[], Always(Metadata)),
    ("http://169.254.169.254/latest/meta-data/", &[], Always(Metadata)),
    ("http://0251.0376.0251.0376/", &[], Always(Metadata)),
    ("http://0xa9fea9fe/", &[], Always(Metadata)),
    ("http://2852039166/", &[], Always(Metadata)),
    ("http://169.254.43518/", &[], Always(Metadata)),
    ("http://[::ffff:169.254.169.254]/", &[], Always(Metadata)),
    ("http://[::ffff:a9fe:a9fe]/", &[], Always(Metadata)),
    ("http://[64:ff9b::a9fe:a9fe]/", &[], Always(Metadata)),
    ("http://[2002:a9fe:a9fe::]/", &[], Always(Metadata)),
    ("http://[::169.254.169.254]/", &[], Always(Metadata)),
    ("http://[fd00:ec2::254]/", &[], Always(Metadata)),
    ("http://169.254.170.2/v2/credentials", &[], Always(Metadata)),
    ("http://100.100.100.200/", &[], Always(Metadata)),
    ("http://metadata.google.internal/", &[], Name(ReservedName::Metadata)),
    ("http://METADATA.google.internal./", &[], Name(ReservedName::Metadata)),
    ("http://metadata/", &[], Name(ReservedName::Metadata)),
    ("http://metadata.azure.internal/", &[], Name(ReservedName::Metadata)),
    ("http://169.254.1.1/", &[], Always(LinkLocal)),
    ("http://[fe80::1]/", &[], Always(LinkLocal)),
    ("http://[febf::1]/", &[], Always(LinkLocal)),
    // --- Private and special ranges -------------------------------------------------------------------
    ("http://10.0.0.1/", &[], Class(Private)),
    ("http://10.255.255.255:8080/", &[], Class(Private)),
    ("http://172.16.0.1/", &[], Class(Private)),
    ("http://172.31.255.254/", &[], Class(Private)),
    ("http://192.168.1.1/", &[], Class(Private)),
    ("http://100.64.0.1/", &[], Class(SharedCgnat)),
    ("http://100.127.255.254/", &[], Class(SharedCgnat)),
    ("http://198.18.0.1/", &[], Class(Benchmarking)),
    ("http://198.19.255.254/", &[], Class(Benchmarking)),
    ("http://192.0.2.1/", &[], Class(Documentation)),
    ("http://198.51.100.1/", &[], Class(Documentation)),
    ("http://203.0.113.1/", &[], Class(Documentation)),
    ("http://240.0.0.1/", &[], Class(Reserved)),
    ("http://192.0.0.8/", &[], Class(SpecialPurpose)),
    ("http://192.88.99.1/", &[], Class(SpecialPurpose)),
    ("http://[fc00::1]/", &[], Class(UniqueLocal)),
    ("http://[fd12:3456::1]/", &[], Class(UniqueLocal)),
    ("http://[2001:db8::1]/", &[], Class(Documentation)),
    ("http://[100::1]/", &[], Class(SpecialPurpose)),
    ("http://[fec0::1]/", &[], Class(SpecialPurpose)),
    ("http://255.255.255.255/", &[], Always(Broadcast)),
    ("http://224.0.0.1/", &[], Always(Multicast)),
    ("http://[ff02::1]/", &[], Always(Multicast)),
    // zone ids: the parser rejects them
    ("http://[fe80::1%25eth0]/", &[], Unparsable),
    ("http://[fe80::1%eth0]/", &[], Unparsable),
    // --- Names that always mean this machine -------------------------------------------------------------
    ("http://localhost/", &[], Name(ReservedName::Localhost)),
    ("http://localhost:8080/", &[], Name(ReservedName::Localhost)),
    ("http://LOCALHOST./", &[], Name(ReservedName::Localhost)),
    ("http://foo.localhost/", &[], Name(ReservedName::Localhost)),
    ("http://localhost/", &["127.0.0.0/8"], Name(ReservedName::Localhost)),
    // names pointing inside are a resolver matter: check_url passes them (see RESOLVER_TABLE)
    ("http://localtest.me/", &[], Pass),
    ("http://127.0.0.1.nip.io/", &[], Pass),
    ("http://169.254.169.254.nip.io/", &[], Pass),
    // --- Parser differentials -------------------------------------------------------------------------
    ("http://evil.com\\@127.0.0.1/", &[], Pass), // host is evil.com: `\` is a path separator
    ("http://127.0.0.1%2f@evil.com/", &[], Creds), // userinfo `127.0.0.1%2f`, host evil.com
    ("http://127.0.0.1#@evil.com", &[], Class(Loopback)),
    ("http://127.0.0.1?@evil.com/", &[], Class(Loopback)),
    ("http://a]@127.0.0.1", &[], AnyRefusal),
    ("http://evil.com@127.0.0.1/", &[], Creds),
    ("http://127.0.0.1:80@evil.com/", &[], Creds),
    ("http://127.0.0.1 @evil.com/", &[], AnyRefusal),
    // --- Credentials in the URL -----------------------------------------------------------------------
    ("http://user@jenkins.example.com/", &[], Creds),
    ("http://user:token@jenkins.example.com/", &[], Creds),
    ("http://:token@jenkins.example.com/", &[], Creds),
    ("https://admin:admin@8.8.8.8/", &[], Creds),
    ("http://user:pw@10.0.0.1/", &["10.0.0.0/8"], Creds),
    // --- Schemes --------------------------------------------------------------------------------------
    ("file:///etc/passwd", &[], Scheme),
    ("file://localhost/etc/passwd", &[], Scheme),
    ("gopher://127.0.0.1:6379/_FLUSHALL", &[], Scheme),
    ("ftp://ftp.example.com/", &[], Scheme),
    ("dict://127.0.0.1:11211/stat", &[], Scheme),
    ("ws://jenkins.example.com/", &[], Scheme),
    ("javascript:alert(1)", &[], Scheme),
    ("data:text/plain,hello", &[], Scheme),
    // --- Ports ----------------------------------------------------------------------------------------
    ("http://jenkins.example.com:0/", &[], Port),
    ("http://8.8.8.8:0/", &[], Port),
    ("http://8.8.8.8:22/", &[], Pass), // public: any port (Jenkins often runs on 8080/8443)
    ("http://8.8.8.8:50000/", &[], Pass),
    ("http://10.0.0.5:22/", &[], Class(Private)),
    ("http://10.0.0.5:25/", &[], Class(Private)),
    ("http://10.0.0.5:6379/", &[], Class(Private)),
    ("http://10.0.0.5:50000/", &[], Class(Private)),
    ("http://10.0.0.5:8080/", &["10.0.0.5:8080"], Pass),
    ("http://10.0.0.5:22/", &["10.0.0.5:8080"], Class(Private)),
    ("http://10.0.0.5:50000/", &["10.0.0.5:8080"], Class(Private)),
    ("http://10.0.0.5/", &["10.0.0.5:8080"], Class(Private)),
    ("http://10.0.0.6:8080/", &["10.0.0.5:8080"], Class(Private)),
    ("http://10.0.0.5:22/", &["10.0.0.0/8"], Pass),
    ("http://10.0.0.5:22/", &["10.0.0.0/8:8080"], Class(Private)),
    ("http://10.9.9.9:8080/", &["10.0.0.0/8:8080"], Pass),
    // the local twin: only via an explicit address entry
    ("http://127.0.0.1:8080/", &["127.0.0.1"], Pass),
    ("http://127.0.0.1:8080/", &["127.0.0.1/32:8080"], Pass),
    ("http://127.0.0.1:8081/", &["127.0.0.1/32:8080"], Class(Loopback)),
    ("http://127.0.0.2:8080/", &["127.0.0.1/32:8080"], Class(Loopback)),
    ("http://127.0.0.1:8080/", &["127.0.0.1:8080"], Pass),
    ("http://127.1:8080/", &["127.0.0.1:8080"], Pass),
    ("http://[::ffff:127.0.0.1]:8080/", &["127.0.0.1:8080"], Pass), // same address, canonical form
    ("http://[::1]:8080/", &["127.0.0.1:8080"], Class(Loopback)),
    ("http://127.0.0.1:8080/", &["10.0.0.0/8"], Class(Loopback)),
    ("http://[fd00::1]:8443/", &["[fd00::1]:8443"], Pass),
    ("http://[fd00::1]:443/", &["[fd00::1]:8443"], Class(UniqueLocal)),
    ("http://[fd00::2]:8443/", &["[fd00::1]:8443"], Class(UniqueLocal)),
    ("https://[fd00::1]/", &["fd00::/8"], Pass),
    ("https://100.64.1.1/", &["100.64.0.0/10"], Pass),
    // --- The allow-list cannot open always-denied addresses --------------------------------------------
    ("http://169.254.169.254/", &["169.254.0.0/16"], Always(Metadata)),
    ("http://169.254.169.254/", &["169.254.169.254"], Always(Metadata)),
    ("http://169.254.1.1/", &["169.254.0.0/16"], Always(LinkLocal)),
    ("http://100.100.100.200/", &["100.64.0.0/10"], Always(Metadata)),
    ("http://[fd00:ec2::254]/", &["fd00::/8"], Always(Metadata)),
    ("http://[fd00:ec2::254]/", &["fc00::/7"], Always(Metadata)),
    ("http://[fe80::1]/", &["fe80::/10"], Always(LinkLocal)),
    ("http://0.0.0.0/", &["0.0.0.0/0"], Always(Unspecified)),
    ("http://255.255.255.255/", &["0.0.0.0/0"], Always(Broadcast)),
    ("http://224.0.0.1/", &["224.0.0.0/4"], Always(Multicast)),
    ("http://[::ffff:169.254.169.254]/", &["::/0", "0.0.0.0/0"], Always(Metadata)),
    ("http://[2001::1]/", &["::/0"], Always(Teredo)),
    ("http://[::]/", &["::/0"], Always(Unspecified)),
    ("http://10.1.1.1/", &["0.0.0.0/0"], Pass), // an admin may open everything else, explicitly
    // --- Public addresses pass ------------------------------------------------------------------------
    ("http://8.8.8.8/", &[], Pass),
    ("https://1.1.1.1:8443/", &[], Pass),
    ("http://172.32.0.1/", &[], Pass),
    ("http://100.128.0.1/", &[], Pass),
    ("http://[2606:4700::1111]/", &[], Pass),
    ("http://[2606:4700:4700::1111]:8080/", &[], Pass),
    ("http://[::ffff:8.8.8.8]/", &[], Pass),
    ("http://[64:ff9b::808:808]/", &[], Pass),
    ("https://jenkins.example.com/", &[], Pass),
    ("https://jenkins.example.com:8443/job/a/", &[], Pass),
    ("HTTPS://Jenkins.Example.COM/", &[], Pass),
    // deprecated IPv6 forms of a public address stay refused
    ("http://[2002:808:808::1]/", &[], Class(SpecialPurpose)),
    ("http://[::8.8.8.8]/", &[], Class(SpecialPurpose)),
];

#[test]
fn url_table() {
    let mut failures = Vec::new();
    for (text, allow, want) in URL_TABLE {
        let policy = policy(allow);
        let result = match Url::parse(text) {
            Err(_) => {
                if *want != Unparsable {
                    failures.push(format!("{text}: url::Url::parse rejected it, wanted {want:?}"));
                }
                continue;
            }
            Ok(url) => policy.check_url(&url),
        };
        if !matches(*want, &result) {
            failures.push(format!("{text} (allow {allow:?}): wanted {want:?}, got {result:?}"));
        }
        if let Err(refusal) = &result {
            let text = refusal.to_string();
            assert!(text.starts_with("refused "), "{text}");
        }
    }
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), URL_TABLE.len(), failures.join("\n"));
}

#[test]
fn parser_differentials_see_the_host_reqwest_will_use() {
    let url = Url::parse("http://evil.com\\@127.0.0.1/").unwrap();
    assert_eq!(url.host_str(), Some("evil.com"));
    let url = Url::parse("http://127.0.0.1%2f@evil.com/").unwrap();
    assert_eq!(url.host_str(), Some("evil.com"));
    assert_eq!(url.username(), "127.0.0.1%2f");
    let url = Url::parse("http://127.0.0.1#@evil.com").unwrap();
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    let url = Url::parse("http://LOCALHOST./").unwrap();
    assert_eq!(url.host_str(), Some("localhost."));
    let url = Url::parse("http://127.0.0.1.:80/").unwrap();
    assert_eq!(url.host_str(), Some("127.0.0.1"));
}

#[test]
fn control_characters_are_refused_before_parsing() {
    let policy = EgressPolicy::default();
    // url::Url::parse silently drops CR/LF/TAB, so these must be caught on the raw text.
    let parsed = Url::parse("http://jenkins.exa\r\nmple.com/").unwrap();
    assert_eq!(parsed.host_str(), Some("jenkins.example.com"));
    for raw in [
        "http://jenkins.exa\r\nmple.com/",
        "http://jenkins.example.com/\r\nHost: 127.0.0.1",
        "http://jenkins.example.com/job\n",
        "http://jenkins.example.com/\0",
        "http://127.0.0.1\t/",
    ] {
        let result = policy.check_url_str(raw).map(|_| ());
        assert!(matches(Control, &result), "{raw:?}: {result:?}");
    }
    assert!(policy.check_url_str("https://jenkins.example.com/").is_ok());
    let bad = policy.check_url_str("http://[::1/").unwrap_err();
    assert!(matches!(bad.reason, RefusalReason::InvalidUrl { .. }), "{bad:?}");
    let creds = policy.check_url_str("https://u:secret-token@jenkins.example.com/").unwrap_err();
    assert!(!creds.to_string().contains("secret-token"), "{creds}");
}

// ---------------------------------------------------------------------------------------------------------
// Allow-list entries
// ---------------------------------------------------------------------------------------------------------

#[test]
fn allow_entry_forms() {
    let net = |s: &str, port: Option<u16>| AllowEntry::Net { net: s.parse().unwrap(), port };
    let host = |s: &str, port: Option<u16>| AllowEntry::Host { host: s.to_owned(), port };
    let good: &[(&str, AllowEntry)] = &[
        ("10.0.0.0/8", net("10.0.0.0/8", None)),
        ("10.1.2.3/8", net("10.0.0.0/8", None)),
        ("10.1.2.3", net("10.1.2.3/32", None)),
        ("10.1.2.3:8080", net("10.1.2.3/32", Some(8080))),
        ("  10.1.2.3:8080  ", net("10.1.2.3/32", Some(8080))),
        ("[fd00::1]:8443", net("fd00::1/128", Some(8443))),
        ("[fd00::1]", net("fd00::1/128", None)),
        ("fd00::1", net("fd00::1/128", None)),
        ("fd00::/8", net("fd00::/8", None)),
        ("[fd00::/8]:8443", net("fd00::/8", Some(8443))),
        ("127.0.0.1/32:8080", net("127.0.0.1/32", Some(8080))),
        ("jenkins.internal", host("jenkins.internal", None)),
        ("Jenkins.Internal.", host("jenkins.internal", None)),
        ("jenkins.internal:8080", host("jenkins.internal", Some(8080))),
        ("bücher.example", host("xn--bcher-kva.example", None)),
    ];
    for (text, want) in good {
        let got: AllowEntry = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(&got, want, "{text}");
    }
    let bad: &[(&str, &str)] = &[
        ("", "empty"),
        ("http://10.0.0.1/", "not a URL"),
        ("user@10.0.0.1", "not a URL"),
        ("*.internal", "wildcards"),
        ("10.0.0.0/33", "not a valid network"),
        ("10.0.0.1:0", "port 0"),
        ("10.0.0.1:99999", "not a port number"),
        ("10.0.0.1:http", "not a port number"),
        ("fd00::1:8443x", "brackets"),
        ("[fd00::1]8443", "`:PORT`"),
        ("[fd00::1", "missing `]`"),
        ("localhost", "127.0.0.1"),
        ("localhost:8080", "127.0.0.1"),
        ("foo.localhost", "127.0.0.1"),
        ("metadata.google.internal", "metadata"),
        ("127.1", "dotted-decimal"),
        ("0x7f000001:8080", "dotted-decimal"),
        ("jenkins internal", "not a URL"),
        ("jenkins<x>.internal", "not a valid host name"),
    ];
    for (text, needle) in bad {
        let err = text.parse::<AllowEntry>().expect_err(text);
        let msg = err.to_string();
        assert!(msg.contains(needle), "{text}: {msg}");
        assert!(
            msg.contains("accepted forms") && msg.contains("10.0.0.0/8") && msg.contains("[fd00::1]:8443"),
            "{msg}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// The resolver, with fake DNS
// ---------------------------------------------------------------------------------------------------------

/// Fixed answers; unknown names fail like NXDOMAIN; `slow.example` never answers.
struct FakeDns {
    answers: HashMap<String, Vec<IpAddr>>,
    calls: Arc<AtomicUsize>,
}

impl FakeDns {
    fn new(rows: &[(&str, &[&str])]) -> Self {
        let answers = rows
            .iter()
            .map(|(name, ips)| (name.to_string(), ips.iter().map(|ip| ip.parse().unwrap()).collect()))
            .collect();
        FakeDns { answers, calls: Arc::new(AtomicUsize::new(0)) }
    }
}

impl Lookup for FakeDns {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self.answers.get(host).cloned();
        let slow = host == "slow.example";
        let host = host.to_owned();
        Box::pin(async move {
            if slow {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            match answer {
                Some(ips) => Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect()),
                None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no such host {host}"))),
            }
        })
    }
}

fn fake_dns() -> FakeDns {
    FakeDns::new(&[
        ("localtest.me", &["127.0.0.1"]),
        ("127.0.0.1.nip.io", &["127.0.0.1"]),
        ("169.254.169.254.nip.io", &["169.254.169.254"]),
        ("10.0.0.1.nip.io", &["10.0.0.1"]),
        ("metadata.nip.io", &["fd00:ec2::254"]),
        ("public.example", &["8.8.8.8", "2606:4700::1111"]),
        ("mixed.example", &["8.8.8.8", "10.0.0.1"]),
        ("mixed-last.example", &["8.8.8.8", "1.1.1.1", "192.168.0.10"]),
        ("mixed6.example", &["2606:4700::1111", "::ffff:127.0.0.1"]),
        ("mixed-meta.example", &["10.0.0.5", "169.254.169.254"]),
        ("aaaa-only.example", &["fd12::1"]),
        ("aaaa-loop.example", &["::1"]),
        ("aaaa-nat64.example", &["64:ff9b::7f00:1"]),
        ("aaaa-6to4.example", &["2002:a00:1::1"]),
        ("aaaa-teredo.example", &["2001:0:4136:e378:8000:63bf:3fff:fdd2"]),
        ("zero.example", &["0.0.0.0"]),
        ("empty.example", &[]),
        ("jenkins.internal", &["10.0.0.5"]),
        ("other.internal", &["10.0.0.6"]),
        ("evil.internal", &["169.254.169.254"]),
        ("jenkins.corp", &["10.1.2.3", "fd00::5"]),
    ])
}

/// (host as reqwest passes it, allow-list, pinned port, expectation).
const RESOLVER_TABLE: &[(&str, &[&str], Option<u16>, Want)] = &[
    // DNS names pointing inside
    ("localtest.me", &[], None, Class(Loopback)),
    ("127.0.0.1.nip.io", &[], None, Class(Loopback)),
    ("169.254.169.254.nip.io", &[], None, Always(Metadata)),
    ("169.254.169.254.nip.io", &["169.254.0.0/16"], None, Always(Metadata)),
    ("10.0.0.1.nip.io", &[], Some(80), Class(Private)),
    ("metadata.nip.io", &["fd00::/8"], None, Always(Metadata)),
    ("zero.example", &["0.0.0.0/0"], None, Always(Unspecified)),
    // names refused before any lookup
    ("localhost", &[], None, Name(ReservedName::Localhost)),
    ("LOCALHOST.", &[], None, Name(ReservedName::Localhost)),
    ("foo.localhost", &[], None, Name(ReservedName::Localhost)),
    ("metadata.google.internal", &[], None, Name(ReservedName::Metadata)),
    ("metadata", &["0.0.0.0/0"], None, Name(ReservedName::Metadata)),
    // mixed answers: one refused address refuses the name
    ("mixed.example", &[], None, Class(Private)),
    ("mixed-last.example", &[], None, Class(Private)),
    ("mixed6.example", &[], None, Class(Loopback)),
    ("mixed-meta.example", &["10.0.0.0/8"], None, Always(Metadata)),
    ("mixed.example", &["10.0.0.0/8"], None, Pass),
    // AAAA-only private answers
    ("aaaa-only.example", &[], None, Class(UniqueLocal)),
    ("aaaa-loop.example", &[], None, Class(Loopback)),
    ("aaaa-nat64.example", &[], None, Class(Loopback)),
    ("aaaa-6to4.example", &[], None, Class(Private)),
    ("aaaa-teredo.example", &["::/0"], None, Always(Teredo)),
    // public
    ("public.example", &[], None, Pass),
    ("PUBLIC.example.", &[], None, Pass),
    // host-name allow entries: exact name, case-insensitive, trailing dot ignored
    ("jenkins.internal", &["jenkins.internal"], None, Pass),
    ("JENKINS.Internal.", &["jenkins.internal"], None, Pass),
    ("other.internal", &["jenkins.internal"], None, Class(Private)),
    ("evil.internal", &["evil.internal"], None, Always(Metadata)),
    ("jenkins.internal", &["internal"], None, Class(Private)),
    // ports: the resolver knows the port only when pinned
    ("jenkins.internal", &["jenkins.internal:8080"], Some(8080), Pass),
    ("jenkins.internal", &["jenkins.internal:8080"], Some(22), Class(Private)),
    ("jenkins.internal", &["jenkins.internal:8080"], None, Class(Private)),
    ("jenkins.internal", &["10.0.0.5:8080"], Some(8080), Pass),
    ("jenkins.internal", &["10.0.0.5:8080"], Some(6379), Class(Private)),
    ("jenkins.internal", &["10.0.0.0/8"], None, Pass),
    ("jenkins.corp", &["10.0.0.0/8"], None, Class(UniqueLocal)),
    ("jenkins.corp", &["10.0.0.0/8", "fd00::/8"], None, Pass),
    // IP literals (hyper never sends them, a direct caller might)
    ("127.0.0.1", &[], None, Class(Loopback)),
    ("[::1]", &[], None, Class(Loopback)),
    ("8.8.8.8", &[], None, Pass),
    // DNS failures
    ("nxdomain.example", &[], None, DnsFailure),
    ("empty.example", &[], None, NoAddresses),
    ("slow.example", &[], None, DnsTimeout),
];

#[tokio::test]
async fn resolver_table() {
    let mut failures = Vec::new();
    for (host, allow, port, want) in RESOLVER_TABLE {
        let policy = Arc::new(policy(allow).with_dns_timeout(Duration::from_millis(100)));
        let dns = Arc::new(fake_dns());
        let mut resolver = GuardedResolver::new(policy, dns.clone());
        if let Some(p) = port {
            resolver = resolver.with_port(*p);
        }
        let result = resolver.resolve_checked(host, *port).await;
        if let Ok(addrs) = &result {
            assert!(!addrs.is_empty(), "{host}");
        }
        if let Want::Name(_) = want {
            assert_eq!(dns.calls.load(Ordering::SeqCst), 0, "{host}: a reserved name must not be looked up");
        }
        let result = result.map(|_| ());
        if !matches(*want, &result) {
            failures.push(format!("{host} (allow {allow:?}, port {port:?}): wanted {want:?}, got {result:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        RESOLVER_TABLE.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn resolve_trait_returns_exactly_the_checked_addresses() {
    let resolver = GuardedResolver::new(Arc::new(EgressPolicy::default()), Arc::new(fake_dns()));
    let name: reqwest::dns::Name = "public.example".parse().unwrap();
    let addrs: Vec<IpAddr> = resolver.resolve(name).await.unwrap().map(|a| a.ip()).collect();
    assert_eq!(addrs, vec!["8.8.8.8".parse::<IpAddr>().unwrap(), "2606:4700::1111".parse().unwrap()]);

    let name: reqwest::dns::Name = "mixed.example".parse().unwrap();
    let err = resolver.resolve(name).await.err().unwrap();
    let refusal = find_refusal(&*err).unwrap();
    assert_eq!(refusal.class(), Some(Private));
    let text = refusal.to_string();
    assert!(
        text.contains("10.0.0.1") && text.contains("RFC 1918 private") && text.contains("--allow-private"),
        "{text}"
    );
}

/// Answers public on the first lookup and private on every later one (a TTL-0 rebinding name).
struct Rebinding {
    calls: AtomicUsize,
}

impl Lookup for Rebinding {
    fn lookup(&self, _host: &str, port: u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let first = self.calls.fetch_add(1, Ordering::SeqCst) == 0;
        let ip: IpAddr = if first { Ipv4Addr::new(8, 8, 4, 4).into() } else { Ipv4Addr::new(127, 0, 0, 1).into() };
        Box::pin(async move { Ok(vec![SocketAddr::new(ip, port)]) })
    }
}

#[tokio::test]
async fn dns_rebinding_is_checked_on_every_resolution() {
    let resolver =
        GuardedResolver::new(Arc::new(EgressPolicy::default()), Arc::new(Rebinding { calls: AtomicUsize::new(0) }));
    let first = resolver.resolve("rebind.example".parse().unwrap()).await.unwrap();
    let first: Vec<SocketAddr> = first.collect();
    assert_eq!(first, vec![SocketAddr::new(Ipv4Addr::new(8, 8, 4, 4).into(), 0)]);
    let second = resolver.resolve("rebind.example".parse().unwrap()).await.err().unwrap();
    let refusal = find_refusal(&*second).unwrap();
    assert_eq!(refusal.class(), Some(Loopback));
    assert!(refusal.to_string().contains("`rebind.example` resolves to 127.0.0.1"), "{refusal}");
}

// ---------------------------------------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------------------------------------

/// (original URL, next URL, hops already followed, allow-list, expectation), with a cap of 3 hops.
const REDIRECT_TABLE: &[(&str, &str, usize, &[&str], Want)] = &[
    ("https://jenkins.example.com/job/a", "https://jenkins.example.com/job/a/", 0, &[], Pass),
    ("https://jenkins.example.com/", "https://jenkins.example.com:443/login", 0, &[], Pass),
    ("https://jenkins.example.com/", "https://JENKINS.example.com./", 0, &[], Pass),
    ("https://jenkins.example.com/", "https://jenkins.example.com/x", 2, &[], Pass),
    ("https://jenkins.example.com/", "https://jenkins.example.com/x", 3, &[], TooMany),
    ("https://jenkins.example.com/", "https://jenkins.example.com/", 10, &[], TooMany),
    ("https://jenkins.example.com/", "http://jenkins.example.com/", 0, &[], Downgrade),
    ("https://jenkins.example.com/", "http://127.0.0.1/", 0, &[], Downgrade),
    ("https://jenkins.example.com/", "https://evil.example.com/", 0, &[], CrossOrigin),
    ("https://jenkins.example.com/", "https://jenkins.example.com:8443/", 0, &[], CrossOrigin),
    ("https://jenkins.example.com/", "https://127.0.0.1/", 0, &[], CrossOrigin),
    ("https://jenkins.example.com/", "https://169.254.169.254/latest/meta-data/", 0, &[], CrossOrigin),
    ("https://jenkins.example.com/", "https://localtest.me/", 0, &[], CrossOrigin),
    ("https://jenkins.example.com/", "file:///etc/passwd", 0, &[], CrossOrigin),
    ("https://jenkins.example.com/", "gopher://127.0.0.1:6379/_x", 0, &[], CrossOrigin),
    ("https://jenkins.example.com/", "ftp://jenkins.example.com/", 0, &[], CrossOrigin),
    ("http://jenkins.example.com/", "https://jenkins.example.com/", 0, &[], CrossOrigin),
    ("https://jenkins.example.com/", "https://user:pw@jenkins.example.com/", 0, &[], Creds),
    // every hop is re-checked against the policy
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/login", 0, &["127.0.0.1:8080"], Pass),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/login", 0, &[], Class(Loopback)),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8081/", 0, &["127.0.0.1"], CrossOrigin),
    ("http://169.254.169.254/", "http://169.254.169.254/x", 0, &["0.0.0.0/0"], Always(Metadata)),
];

#[test]
fn redirect_table() {
    let mut failures = Vec::new();
    for (original, next, hops, allow, want) in REDIRECT_TABLE {
        let policy = policy(allow);
        let original = Url::parse(original).unwrap();
        let next = Url::parse(next).unwrap();
        // previous = the original request plus `hops` followed redirects
        let previous: Vec<Url> = std::iter::repeat_n(original.clone(), hops + 1).collect();
        let result = check_redirect(&policy, &next, &previous, 3);
        if !matches(*want, &result) {
            failures.push(format!("{original} -> {next} after {hops} hops: wanted {want:?}, got {result:?}"));
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
    let none = check_redirect(&EgressPolicy::default(), &Url::parse("https://a.example/").unwrap(), &[], 3);
    assert!(none.is_err(), "no original URL: refuse");
}

// ---------------------------------------------------------------------------------------------------------
// Property-style: private IPv4 under every IPv6 embedding is never public
// ---------------------------------------------------------------------------------------------------------

fn embeddings(v4: Ipv4Addr) -> [(&'static str, Ipv6Addr); 5] {
    let [a, b, c, d] = v4.octets();
    let hi = u16::from_be_bytes([a, b]);
    let lo = u16::from_be_bytes([c, d]);
    [
        ("mapped", v4.to_ipv6_mapped()),
        ("compatible", Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo)),
        ("translated", Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo)),
        ("nat64", Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo)),
        ("6to4", Ipv6Addr::new(0x2002, hi, lo, 0x1234, 0, 0, 0, 1)),
    ]
}

fn samples() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for x in (0..=255u8).step_by(3) {
        for y in (0..=255u8).step_by(17) {
            for z in [0u8, 1, 127, 254, 255] {
                out.push(Ipv4Addr::new(127, x, y, z));
                out.push(Ipv4Addr::new(10, x, y, z));
                out.push(Ipv4Addr::new(172, 16 + (x % 16), y, z));
                out.push(Ipv4Addr::new(192, 168, y, z));
                out.push(Ipv4Addr::new(169, 254, y, z));
                out.push(Ipv4Addr::new(100, 64 + (x % 64), y, z));
                out.push(Ipv4Addr::new(0, x, y, z));
                out.push(Ipv4Addr::new(198, 18 + (x % 2), y, z));
            }
        }
    }
    out
}

#[test]
fn embedded_private_ipv4_is_never_public() {
    let policy = EgressPolicy::default();
    let samples = samples();
    assert!(samples.len() > 10_000);
    for v4 in &samples {
        let plain = classify(IpAddr::V4(*v4));
        assert_ne!(plain, Public, "{v4}");
        assert!(policy.check_ip(None, IpAddr::V4(*v4), 8080).is_err(), "{v4}");
        for (form, v6) in embeddings(*v4) {
            let class = classify(IpAddr::V6(v6));
            assert_ne!(class, Public, "{v4} as {form} {v6}");
            if form != "compatible" || v4.octets()[..3] != [0, 0, 0] || v4.octets()[3] > 1 {
                // `::` and `::1` are themselves, not embeddings; everything else keeps the inner class
                assert_eq!(class, plain, "{v4} as {form} {v6}");
            }
            assert!(policy.check_ip(Some("x.example"), IpAddr::V6(v6), 443).is_err(), "{v4} as {form} {v6}");
        }
    }
}

#[test]
fn embedded_metadata_stays_refused_even_with_allow_all() {
    let policy = policy(&["0.0.0.0/0", "::/0"]);
    for v4 in [Ipv4Addr::new(169, 254, 169, 254), Ipv4Addr::new(100, 100, 100, 200), Ipv4Addr::new(169, 254, 7, 7)] {
        for (form, v6) in embeddings(v4) {
            let refusal = policy.check_ip(None, IpAddr::V6(v6), 80).unwrap_err();
            assert!(refusal.is_always_denied(), "{v4} as {form}: {refusal:?}");
            assert!(refusal.to_string().contains("no allow-list entry can open it"), "{refusal}");
        }
    }
}

#[test]
fn public_addresses_pass_on_any_port() {
    let policy = EgressPolicy::default();
    for ip in ["8.8.8.8", "1.1.1.1", "140.82.112.3", "2606:4700::1111", "2a00:1450:4001:82b::200e", "::ffff:8.8.8.8"] {
        for port in [80, 443, 8080, 8443, 22, 50000] {
            assert!(policy.check_ip(None, ip.parse().unwrap(), port).is_ok(), "{ip}:{port}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Messages a person can act on
// ---------------------------------------------------------------------------------------------------------

#[test]
fn refusal_messages_name_the_address_the_class_and_the_fix() {
    let check = |url: &str, allow: &[&str]| policy(allow).check_url(&Url::parse(url).unwrap()).unwrap_err().to_string();
    let m = check("http://10.1.2.3:8080/", &[]);
    assert!(m.contains("10.1.2.3") && m.contains("RFC 1918 private"), "{m}");
    assert!(m.contains("add it to the private-access allow-list (e.g. --allow-private 10.0.0.0/8"), "{m}");
    let m = check("http://[::ffff:127.0.0.1]/", &[]);
    assert!(m.contains("IPv4-mapped form of 127.0.0.1, a loopback address"), "{m}");
    let m = check("http://169.254.169.254/", &["169.254.0.0/16"]);
    assert!(m.contains("cloud metadata") && m.contains("no allow-list entry can open it"), "{m}");
    assert!(!m.contains("--allow-private"), "{m}");
    let m = check("http://169.254.3.3/", &[]);
    assert!(m.contains("link-local / cloud metadata") && m.contains("no allow-list entry can open it"), "{m}");
    let m = check("http://100.70.0.1/", &[]);
    assert!(m.contains("CGNAT 100.64.0.0/10"), "{m}");
    let m = check("http://[fd12::1]/", &[]);
    assert!(m.contains("unique local (ULA)"), "{m}");
    let m = check("http://10.0.0.5:22/", &["10.0.0.5:8080"]);
    assert!(m.contains("only on port(s) 8080") && m.contains("port 22"), "{m}");
    let m = check("http://localhost:8080/", &[]);
    assert!(m.contains("127.0.0.1") && m.contains("--allow-private"), "{m}");
    let m = check("http://metadata.google.internal/", &[]);
    assert!(m.contains("no allow-list entry can open it"), "{m}");
    let m = check("gopher://127.0.0.1:6379/", &[]);
    assert!(m.contains("`gopher`") && m.contains("http"), "{m}");
}

// ---------------------------------------------------------------------------------------------------------
// End to end through reqwest, against a local server
// ---------------------------------------------------------------------------------------------------------

/// A tiny HTTP/1.1 server on 127.0.0.1: `/ok` → 200, `/same` → 302 `/ok`, `/cross` → 302 to another
/// origin, `/loop` → 302 `/loop`.
async fn serve() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, location) = match path.as_str() {
                    "/ok" => ("200 OK", None),
                    "/same" => ("302 Found", Some("/ok".to_owned())),
                    "/cross" => ("302 Found", Some(format!("http://other.test:{port}/ok"))),
                    "/loop" => ("302 Found", Some("/loop".to_owned())),
                    _ => ("404 Not Found", None),
                };
                let location = location.map(|l| format!("Location: {l}\r\n")).unwrap_or_default();
                let resp = format!("HTTP/1.1 {status}\r\n{location}Content-Length: 2\r\nConnection: close\r\n\r\nok");
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

fn client(policy: EgressPolicy, port: u16) -> reqwest::Client {
    let policy = Arc::new(policy);
    let dns = Arc::new(FakeDns::new(&[("jenkins.test", &["127.0.0.1"]), ("other.test", &["127.0.0.1"])]));
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(policy.clone(), dns).with_port(port)))
        .no_proxy()
        .redirect(redirect_policy(policy, 3))
        .build()
        .unwrap()
}

#[tokio::test]
async fn end_to_end_allowed_name_connects_to_the_checked_address() {
    let port = serve().await;
    let http = client(policy(&[&format!("127.0.0.1/32:{port}")]), port);
    let resp = http.get(format!("http://jenkins.test:{port}/ok")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.remote_addr(), Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)));
    // same-origin redirect is followed
    let resp = http.get(format!("http://jenkins.test:{port}/same")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.url().path(), "/ok");
}

#[tokio::test]
async fn end_to_end_name_pointing_at_loopback_is_refused() {
    let port = serve().await;
    for allow in [vec![], vec![format!("127.0.0.1/32:{}", port.wrapping_add(1))]] {
        let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
        let http = client(policy(&allow), port);
        let err = http.get(format!("http://jenkins.test:{port}/ok")).send().await.unwrap_err();
        let refusal = find_refusal(&err).unwrap_or_else(|| panic!("no Refusal in {err:?}"));
        assert_eq!(refusal.class(), Some(Loopback), "{refusal}");
    }
}

#[tokio::test]
async fn end_to_end_redirects_cross_origin_and_loops_are_refused() {
    let port = serve().await;
    let http = client(policy(&["127.0.0.1"]), port);
    let err = http.get(format!("http://jenkins.test:{port}/cross")).send().await.unwrap_err();
    let refusal = find_refusal(&err).unwrap_or_else(|| panic!("no Refusal in {err:?}"));
    assert!(matches!(refusal.reason, RefusalReason::CrossOriginRedirect { .. }), "{refusal:?}");
    let err = http.get(format!("http://jenkins.test:{port}/loop")).send().await.unwrap_err();
    let refusal = find_refusal(&err).unwrap_or_else(|| panic!("no Refusal in {err:?}"));
    assert!(matches!(refusal.reason, RefusalReason::TooManyRedirects { max: 3 }), "{refusal:?}");
}

#[tokio::test]
async fn end_to_end_ip_literal_needs_check_url() {
    // hyper connects to IP literals without the resolver, so check_url is the guard for them.
    let port = serve().await;
    let url = Url::parse(&format!("http://127.0.0.1:{port}/ok")).unwrap();
    assert!(EgressPolicy::default().check_url(&url).is_err());
    let allowed = policy(&[&format!("127.0.0.1/32:{port}")]);
    assert!(allowed.check_url(&url).is_ok());
    let resp = client(allowed, port).get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
