//! # Egress guard: keeping the Jenkins client away from places it must not reach
//!
//! jgate makes HTTP requests on behalf of AI agents. Without a guard, a Jenkins URL (or a redirect, or a
//! DNS answer) could point the client at `127.0.0.1`, at a database on the private network, or at the
//! cloud metadata service that hands out instance credentials. This module is the one place that decides
//! which addresses the client may talk to. It is used at four points, and all four are needed:
//!
//! 1. **Before every request**: [`EgressPolicy::check_url`] checks the scheme (http/https only), refuses
//!    credentials in the URL, refuses host names that always mean "this machine" or "metadata service",
//!    and classifies IP-literal hosts. The last part matters because hyper connects to an IP-literal host
//!    directly, without asking the resolver.
//! 2. **In the resolver**: [`GuardedResolver`] replaces reqwest's DNS resolution. It resolves a name once,
//!    checks *every* address of the answer, and hands reqwest only checked addresses. reqwest connects
//!    only to what the resolver returned, so the addresses checked are the addresses connected to, and a
//!    DNS-rebinding name cannot switch to a private address between check and connect.
//! 3. **On redirects**: [`redirect_policy`] follows only same-origin hops, refuses https→http, caps the
//!    number of hops and runs [`EgressPolicy::check_url`] on each one.
//! 4. **In the client builder** (not in this module): call `.no_proxy()`, because with a proxy the proxy
//!    resolves names and the resolver above is never asked.
//!
//! ## How an address is judged
//!
//! [`classify`] first *canonicalises* the address: IPv6 forms that carry an IPv4 address (IPv4-mapped
//! `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, NAT64
//! `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the IPv4 address inside. Then, in this order:
//!
//! 1. **Always refused**, whatever the allow-list says: link-local (`169.254.0.0/16`, `fe80::/10`), the
//!    cloud metadata addresses (`169.254.169.254`, `fd00:ec2::254`, `100.100.100.200`, ...), unspecified
//!    (`0.0.0.0/8`, `::`), multicast, broadcast and Teredo (`2001::/32`, whose IPv4 part is obfuscated).
//! 2. **The admin allow-list** ([`AllowEntry`]): a network (CIDR) or a host name, each optionally limited
//!    to one port.
//! 3. **Refused unless allow-listed**: loopback, RFC 1918 private, CGNAT `100.64.0.0/10`, unique local
//!    `fc00::/7`, benchmarking, documentation, `240.0.0.0/4` and the rest of the IANA special-purpose
//!    registries.
//! 4. Everything else is **public** and allowed on any port (Jenkins often listens on 8080 or 8443).
//!
//! Host names `localhost`, `*.localhost`, `metadata`, `metadata.google.internal` and
//! `metadata.azure.internal` are refused by name, and no allow-list entry can name them. To use a Jenkins
//! on this machine, address it by IP and allow-list that address: `http://127.0.0.1:8080/` with
//! `--allow-private 127.0.0.1:8080`.
//!
//! ## Wiring it into reqwest
//!
//! ```no_run
//! use std::sync::Arc;
//! use jenkins::ssrf::{EgressPolicy, GuardedResolver, SystemLookup, redirect_policy};
//!
//! # fn build() -> Result<(), Box<dyn std::error::Error>> {
//! let base = url::Url::parse("https://jenkins.example.com/")?;
//! let policy = Arc::new(EgressPolicy::new(vec!["10.20.0.0/16".parse()?]));
//! policy.check_url(&base)?;
//! let port = base.port_or_known_default().unwrap_or(443);
//! let resolver = GuardedResolver::new(policy.clone(), Arc::new(SystemLookup)).with_port(port);
//! let client = reqwest::Client::builder()
//!     .dns_resolver(Arc::new(resolver))
//!     .no_proxy()
//!     .redirect(redirect_policy(policy.clone(), 3))
//!     .build()?;
//! // Before every request: policy.check_url(&url)?
//! # let _ = client; Ok(()) }
//! ```
//!
//! A refusal raised inside reqwest (by the resolver or the redirect policy) comes back wrapped in a
//! `reqwest::Error`; [`find_refusal`] digs it out of the error's source chain.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use ipnet::IpNet;
use url::{Host, Url};

/// The advice printed with every refusal that an allow-list entry could lift.
pub const ALLOW_LIST_HINT: &str = "If this Jenkins is on a private network, add it to the private-access allow-list \
     (e.g. --allow-private 10.0.0.0/8 or --allow-private HOST:PORT).";

/// The accepted spellings of an allow-list entry, quoted in parse errors.
const ACCEPTED_FORMS: &str = "accepted forms: a network `10.0.0.0/8` or `fd00::/8`, an address `10.1.2.3` or \
     `fd00::1`, an address with a port `10.1.2.3:8080` or `[fd00::1]:8443`, a network with a port \
     `127.0.0.1/32:8080`, a host name `jenkins.internal`, or a host name with a port `jenkins.internal:8080`";

// ---------------------------------------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------------------------------------

/// What kind of address this is, after canonicalisation (see [`classify`]).
///
/// Only [`IpClass::Public`] is reachable without an allow-list entry. The classes for which
/// [`IpClass::is_always_denied`] is true are never reachable, allow-list or not.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpClass {
    /// A globally routable address: allowed on any port.
    Public,
    /// `127.0.0.0/8` or `::1`: this machine.
    Loopback,
    /// RFC 1918 private networks: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// Link-local `169.254.0.0/16` or `fe80::/10`. Always refused: the cloud metadata service lives here.
    LinkLocal,
    /// A known cloud metadata address (`169.254.169.254`, `fd00:ec2::254`, `100.100.100.200`, ...).
    /// Always refused.
    Metadata,
    /// Shared address space `100.64.0.0/10` (carrier-grade NAT, Tailscale).
    SharedCgnat,
    /// IPv6 unique local addresses `fc00::/7`.
    UniqueLocal,
    /// `0.0.0.0/8` ("this network") or `::`. Always refused.
    Unspecified,
    /// `224.0.0.0/4` or `ff00::/8`. Always refused.
    Multicast,
    /// `255.255.255.255`. Always refused.
    Broadcast,
    /// Teredo tunnelling `2001::/32`; its IPv4 part is obfuscated, so it cannot be judged. Always refused.
    Teredo,
    /// Benchmarking networks `198.18.0.0/15` and `2001:2::/48`.
    Benchmarking,
    /// Documentation networks (`192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`,
    /// `3fff::/20`).
    Documentation,
    /// Reserved for future use: `240.0.0.0/4`.
    Reserved,
    /// Another entry of the IANA special-purpose registries (e.g. `192.0.0.0/24`, `100::/64`,
    /// `2001::/23`, deprecated site-local `fec0::/10`, 6to4 relays), or a deprecated IPv6 form that
    /// embeds an otherwise public IPv4 address (IPv4-compatible, IPv4-translated, 6to4).
    SpecialPurpose,
}

impl IpClass {
    /// True for the classes no allow-list entry can open: link-local, metadata, unspecified, multicast,
    /// broadcast and Teredo.
    pub fn is_always_denied(self) -> bool {
        matches!(
            self,
            IpClass::LinkLocal
                | IpClass::Metadata
                | IpClass::Unspecified
                | IpClass::Multicast
                | IpClass::Broadcast
                | IpClass::Teredo
        )
    }

    /// True only for [`IpClass::Public`].
    pub fn is_public(self) -> bool {
        self == IpClass::Public
    }

    /// A short human description, as used in refusal messages ("loopback", "RFC 1918 private", ...).
    pub fn label(self) -> &'static str {
        match self {
            IpClass::Public => "public",
            IpClass::Loopback => "loopback",
            IpClass::Private => "RFC 1918 private",
            IpClass::LinkLocal => "link-local / cloud metadata",
            IpClass::Metadata => "cloud metadata",
            IpClass::SharedCgnat => "CGNAT 100.64.0.0/10",
            IpClass::UniqueLocal => "unique local (ULA)",
            IpClass::Unspecified => "unspecified",
            IpClass::Multicast => "multicast",
            IpClass::Broadcast => "broadcast",
            IpClass::Teredo => "Teredo 2001::/32",
            IpClass::Benchmarking => "benchmarking",
            IpClass::Documentation => "documentation",
            IpClass::Reserved => "reserved 240.0.0.0/4",
            IpClass::SpecialPurpose => "IANA special-purpose",
        }
    }
}

impl fmt::Display for IpClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// An IPv6 form that carries an IPv4 address; see [`canonicalize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Embedding {
    /// `::ffff:a.b.c.d`: the usual way a dual-stack socket spells an IPv4 peer.
    Ipv4Mapped,
    /// `::a.b.c.d` (deprecated), except `::` and `::1` themselves.
    Ipv4Compatible,
    /// `::ffff:0:a.b.c.d` (SIIT, RFC 2765).
    Ipv4Translated,
    /// NAT64 well-known prefix `64:ff9b::/96`.
    Nat64,
    /// 6to4 `2002:AABB:CCDD::/48`, embedding `AA.BB.CC.DD` (deprecated).
    SixToFour,
}

impl Embedding {
    /// A short human description ("IPv4-mapped", "NAT64", ...).
    pub fn label(self) -> &'static str {
        match self {
            Embedding::Ipv4Mapped => "IPv4-mapped",
            Embedding::Ipv4Compatible => "IPv4-compatible",
            Embedding::Ipv4Translated => "IPv4-translated",
            Embedding::Nat64 => "NAT64",
            Embedding::SixToFour => "6to4",
        }
    }
}

/// The IPv4 address found inside an IPv6 address, and the form it was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Embedded {
    /// Which IPv6 form carried it.
    pub kind: Embedding,
    /// The IPv4 address inside.
    pub v4: Ipv4Addr,
}

/// Finds the IPv4 address inside an IPv6 address, if it has one of the forms of [`Embedding`].
///
/// This is written out by hand on purpose: `Ipv6Addr::to_ipv4()` also treats `::1` as the compatible
/// form of `0.0.0.1`, which would turn IPv6 loopback into an "unspecified" IPv4 address.
pub fn embedded_ipv4(v6: Ipv6Addr) -> Option<Embedded> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    let kind = if s[..5] == [0; 5] && s[5] == 0xffff {
        Embedding::Ipv4Mapped
    } else if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        Embedding::Ipv4Translated
    } else if s[..6] == [0; 6] {
        if v6.is_unspecified() || v6.is_loopback() {
            return None;
        }
        Embedding::Ipv4Compatible
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        Embedding::Nat64
    } else if s[0] == 0x2002 {
        return Some(Embedded { kind: Embedding::SixToFour, v4: Ipv4Addr::new(o[2], o[3], o[4], o[5]) });
    } else {
        return None;
    };
    Some(Embedded { kind, v4: tail })
}

/// Canonicalises an address: an IPv6 address that embeds an IPv4 address becomes that IPv4 address.
///
/// Returns the address to judge and, when something was unwrapped, how it was embedded.
pub fn canonicalize(ip: IpAddr) -> (IpAddr, Option<Embedded>) {
    match ip {
        IpAddr::V4(_) => (ip, None),
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some(e) => (IpAddr::V4(e.v4), Some(e)),
            None => (ip, None),
        },
    }
}

/// Classifies an address, canonicalising it first (see [`canonicalize`]).
///
/// An embedded IPv4 address is judged by itself. If it is public, IPv4-mapped and NAT64 forms stay
/// public (a dual-stack socket or a DNS64 network produces them for ordinary public hosts), while the
/// deprecated IPv4-compatible, IPv4-translated and 6to4 forms are [`IpClass::SpecialPurpose`].
pub fn classify(ip: IpAddr) -> IpClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some(e) => match (classify_v4(e.v4), e.kind) {
                (IpClass::Public, Embedding::Ipv4Mapped | Embedding::Nat64) => IpClass::Public,
                (IpClass::Public, _) => IpClass::SpecialPurpose,
                (class, _) => class,
            },
            None => classify_v6(v6),
        },
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

/// Known metadata endpoints that are not already inside an always-refused range.
const METADATA_V4: [[u8; 4]; 2] = [
    [100, 100, 100, 200], // Alibaba Cloud
    [192, 0, 0, 192],     // Oracle Cloud (legacy)
];
const METADATA_V4_LINK_LOCAL: [[u8; 4]; 3] = [
    [169, 254, 169, 254], // AWS, GCP, Azure, DigitalOcean, OpenStack, ...
    [169, 254, 170, 2],   // AWS ECS task metadata
    [169, 254, 170, 23],  // AWS EKS pod identity
];
const METADATA_V6: [[u16; 8]; 2] = [
    [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254], // AWS IMDS over IPv6
    [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0023], // AWS EKS pod identity over IPv6
];

fn classify_v4(ip: Ipv4Addr) -> IpClass {
    let o = ip.octets();
    if METADATA_V4.contains(&o) || METADATA_V4_LINK_LOCAL.contains(&o) {
        return IpClass::Metadata;
    }
    if ip == Ipv4Addr::BROADCAST {
        return IpClass::Broadcast;
    }
    let table: [([u8; 4], u32, IpClass); 18] = [
        ([0, 0, 0, 0], 8, IpClass::Unspecified),
        ([127, 0, 0, 0], 8, IpClass::Loopback),
        ([169, 254, 0, 0], 16, IpClass::LinkLocal),
        ([224, 0, 0, 0], 4, IpClass::Multicast),
        ([10, 0, 0, 0], 8, IpClass::Private),
        ([172, 16, 0, 0], 12, IpClass::Private),
        ([192, 168, 0, 0], 16, IpClass::Private),
        ([100, 64, 0, 0], 10, IpClass::SharedCgnat),
        ([198, 18, 0, 0], 15, IpClass::Benchmarking),
        ([192, 0, 2, 0], 24, IpClass::Documentation),
        ([198, 51, 100, 0], 24, IpClass::Documentation),
        ([203, 0, 113, 0], 24, IpClass::Documentation),
        ([240, 0, 0, 0], 4, IpClass::Reserved),
        ([192, 0, 0, 0], 24, IpClass::SpecialPurpose),
        ([192, 31, 196, 0], 24, IpClass::SpecialPurpose),
        ([192, 52, 193, 0], 24, IpClass::SpecialPurpose),
        ([192, 88, 99, 0], 24, IpClass::SpecialPurpose),
        ([192, 175, 48, 0], 24, IpClass::SpecialPurpose),
    ];
    table.iter().find(|(net, len, _)| in_v4(ip, *net, *len)).map_or(IpClass::Public, |(_, _, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> IpClass {
    if ip.is_unspecified() {
        return IpClass::Unspecified;
    }
    if ip.is_loopback() {
        return IpClass::Loopback;
    }
    if METADATA_V6.iter().any(|m| Ipv6Addr::from(*m) == ip) {
        return IpClass::Metadata;
    }
    let table: [([u16; 8], u32, IpClass); 15] = [
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, IpClass::Multicast),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, IpClass::LinkLocal),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, IpClass::SpecialPurpose), // deprecated site-local
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, IpClass::UniqueLocal),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, IpClass::Teredo),
        ([0x2001, 0x0002, 0, 0, 0, 0, 0, 0], 48, IpClass::Benchmarking),
        ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32, IpClass::Documentation),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, IpClass::Documentation),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, IpClass::SpecialPurpose),
        ([0x0064, 0xff9b, 0x0001, 0, 0, 0, 0, 0], 48, IpClass::SpecialPurpose), // local-use NAT64
        ([0x0064, 0xff9b, 0, 0, 0, 0, 0, 0], 96, IpClass::SpecialPurpose),      // only reached if not embedded
        ([0x0100, 0, 0, 0, 0, 0, 0, 0], 64, IpClass::SpecialPurpose),           // discard-only
        ([0x2620, 0x004f, 0x8000, 0, 0, 0, 0, 0], 48, IpClass::SpecialPurpose), // AS112 direct delegation
        ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, IpClass::SpecialPurpose),           // only reached if not embedded
        ([0, 0, 0, 0, 0, 0, 0, 0], 96, IpClass::SpecialPurpose),                // only reached if not embedded
    ];
    table.iter().find(|(net, len, _)| in_v6(ip, *net, *len)).map_or(IpClass::Public, |(_, _, class)| *class)
}

// ---------------------------------------------------------------------------------------------------------
// Host names
// ---------------------------------------------------------------------------------------------------------

/// Why a host name is refused by name alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservedName {
    /// `localhost` or `*.localhost`: always this machine.
    Localhost,
    /// A cloud metadata service name (`metadata`, `metadata.google.internal`, ...).
    Metadata,
}

/// Lower-cases a host name and drops trailing dots, so `Jenkins.Internal.` and `jenkins.internal` compare
/// equal.
pub fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Tells whether a host name is refused by name alone, whatever it resolves to.
pub fn reserved_name(host: &str) -> Option<ReservedName> {
    let name = normalize_host(host);
    if name == "localhost" || name.ends_with(".localhost") {
        Some(ReservedName::Localhost)
    } else if matches!(
        name.as_str(),
        "metadata"
            | "metadata.google.internal"
            | "metadata.azure.internal"
            | "instance-data"
            | "instance-data.ec2.internal"
    ) {
        Some(ReservedName::Metadata)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------------------
// Allow-list entries
// ---------------------------------------------------------------------------------------------------------

/// One entry of the private-access allow-list: a network (CIDR) or a host name, optionally with a port.
///
/// Parse entries from strings (`"10.0.0.0/8".parse::<AllowEntry>()`). Accepted forms:
///
/// | Form | Example | Opens |
/// |---|---|---|
/// | network | `10.0.0.0/8`, `fd00::/8` | every address in the network, any port |
/// | address | `10.1.2.3`, `fd00::1` | that address, any port |
/// | address with port | `10.1.2.3:8080`, `[fd00::1]:8443` | that address, that port only |
/// | network with port | `127.0.0.1/32:8080`, `[fd00::/8]:8443` | the network, that port only |
/// | host name | `jenkins.internal` | whatever that name resolves to, any port |
/// | host name with port | `jenkins.internal:8080` | whatever that name resolves to, that port only |
///
/// Networks are matched against the canonical address (so `10.0.0.0/8` also covers `::ffff:10.1.2.3`).
/// A host-name entry matches the URL's host name exactly (case-insensitive, trailing dot ignored) and then
/// trusts DNS for that name, so prefer network entries where you can. No entry ever opens an
/// always-refused address (link-local, metadata, unspecified, multicast, broadcast, Teredo), and host-name
/// entries cannot name `localhost` or metadata names: to reach a Jenkins on this machine, allow-list
/// `127.0.0.1:PORT` and use `http://127.0.0.1:PORT/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllowEntry {
    /// A network (a single address is a /32 or /128 network).
    Net {
        /// The network, with host bits cleared.
        net: IpNet,
        /// When set, only this port is opened.
        port: Option<u16>,
    },
    /// A host name, normalised (lower case, IDNA applied, no trailing dot).
    Host {
        /// The host name.
        host: String,
        /// When set, only this port is opened.
        port: Option<u16>,
    },
}

impl AllowEntry {
    /// The port this entry is limited to, if any.
    pub fn port(&self) -> Option<u16> {
        match self {
            AllowEntry::Net { port, .. } | AllowEntry::Host { port, .. } => *port,
        }
    }

    /// Does this entry cover the address (canonical form) or host name, ignoring ports?
    fn covers(&self, host: Option<&str>, canonical: IpAddr) -> bool {
        match self {
            AllowEntry::Net { net, .. } => net.contains(&canonical),
            AllowEntry::Host { host: entry_host, .. } => host.is_some_and(|h| normalize_host(h) == *entry_host),
        }
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowEntry::Net { net, port } => {
                let single = net.prefix_len() == net.max_prefix_len();
                let text = if single { net.addr().to_string() } else { net.to_string() };
                match (port, net) {
                    (None, _) => f.write_str(&text),
                    (Some(p), IpNet::V6(_)) => write!(f, "[{text}]:{p}"),
                    (Some(p), IpNet::V4(_)) => write!(f, "{text}:{p}"),
                }
            }
            AllowEntry::Host { host, port: None } => f.write_str(host),
            AllowEntry::Host { host, port: Some(p) } => write!(f, "{host}:{p}"),
        }
    }
}

/// An allow-list entry that could not be parsed; the message names the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid private-access allow-list entry `{input}`: {problem} ({ACCEPTED_FORMS})")]
pub struct AllowEntryError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub problem: String,
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 is not a usable port".to_owned()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("`{text}` is not a port number (1-65535)")),
    }
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    if text.contains('/') {
        IpNet::from_str(text).map(|n| n.trunc()).map_err(|_| format!("`{text}` is not a valid network (CIDR)"))
    } else {
        IpAddr::from_str(text).map(IpNet::from).map_err(|_| format!("`{text}` is not a valid IP address"))
    }
}

fn parse_entry(s: &str) -> Result<AllowEntry, String> {
    if s.is_empty() {
        return Err("the entry is empty".to_owned());
    }
    if s.contains("://") || s.contains('@') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("give a network, an address or a host name, not a URL".to_owned());
    }
    if s.contains('*') {
        return Err("wildcards are not supported; list each host, or use a network (CIDR)".to_owned());
    }
    // [v6] / [v6]:port / [v6/len]:port
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or("missing `]`")?;
        let port = match after {
            "" => None,
            _ => Some(parse_port(after.strip_prefix(':').ok_or("expected `:PORT` after `]`")?)?),
        };
        return Ok(AllowEntry::Net { net: parse_net(inner)?, port });
    }
    // addr/len or addr/len:port
    if let Some((addr, after)) = s.split_once('/') {
        let (len, port) = match after.split_once(':') {
            Some((len, port)) => (len, Some(parse_port(port)?)),
            None => (after, None),
        };
        return Ok(AllowEntry::Net { net: parse_net(&format!("{addr}/{len}"))?, port });
    }
    // bare address (IPv6 without brackets never carries a port)
    if let Ok(ip) = IpAddr::from_str(s) {
        return Ok(AllowEntry::Net { net: IpNet::from(ip), port: None });
    }
    let (host, port) = match s.matches(':').count() {
        0 => (s, None),
        1 => {
            let (host, port) = s.split_once(':').ok_or("malformed entry")?;
            (host, Some(parse_port(port)?))
        }
        _ => return Err("write an IPv6 address with a port in brackets, e.g. `[fd00::1]:8443`".to_owned()),
    };
    if let Ok(v4) = Ipv4Addr::from_str(host) {
        return Ok(AllowEntry::Net { net: IpNet::from(IpAddr::V4(v4)), port });
    }
    match Host::parse(host) {
        Ok(Host::Domain(d)) => {
            let name = normalize_host(&d);
            if name.is_empty() {
                return Err("the host name is empty".to_owned());
            }
            match reserved_name(&name) {
                Some(ReservedName::Localhost) => Err(format!(
                    "`{name}` is always refused by name; to reach a Jenkins on this machine allow-list its address \
                     instead, e.g. `127.0.0.1:8080`, and use http://127.0.0.1:8080/"
                )),
                Some(ReservedName::Metadata) => {
                    Err(format!("`{name}` is a cloud metadata service name; no allow-list entry can open it"))
                }
                None => Ok(AllowEntry::Host { host: name, port }),
            }
        }
        Ok(Host::Ipv4(v4)) => Err(format!("write the IPv4 address in dotted-decimal form (`{v4}`)")),
        Ok(Host::Ipv6(_)) | Err(_) => Err(format!("`{host}` is not a valid host name")),
    }
}

impl FromStr for AllowEntry {
    type Err = AllowEntryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_entry(s.trim()).map_err(|problem| AllowEntryError { input: s.to_owned(), problem })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------------------

/// The facts about a refused address, for [`RefusalReason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressInfo {
    /// The address as seen (in the URL or in the DNS answer).
    pub ip: IpAddr,
    /// Its class, after canonicalisation.
    pub class: IpClass,
    /// The IPv4 address it embeds, if it is one of the IPv6 forms of [`Embedding`].
    pub embedded: Option<Embedded>,
    /// The host name that resolved to it, when it came from DNS.
    pub host: Option<String>,
}

impl fmt::Display for AddressInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            write!(f, "`{host}` resolves to {}, which ", self.ip)?;
        } else {
            write!(f, "{} ", self.ip)?;
        }
        match self.embedded {
            Some(e) => write!(f, "is the {} form of {}, a {} address", e.kind.label(), e.v4, self.class),
            None => write!(f, "is a {} address", self.class),
        }
    }
}

/// Why a URL, name or address was refused. [`Refusal`]'s `Display` turns this into a sentence with the fix.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// Only `http` and `https` are allowed.
    Scheme {
        /// The scheme that was given.
        scheme: String,
    },
    /// The URL carries a user name or password.
    Credentials,
    /// The URL has no host.
    MissingHost,
    /// The URL text contains CR, LF, TAB or NUL.
    ControlCharacter,
    /// Port 0 (or no port at all).
    InvalidPort,
    /// The URL text does not parse.
    InvalidUrl {
        /// The parser's complaint.
        detail: String,
    },
    /// The host name is refused by name (`localhost`, metadata names).
    ReservedName {
        /// The normalised host name.
        name: String,
        /// Which kind of name.
        kind: ReservedName,
    },
    /// The address is in an always-refused class; no allow-list entry can open it.
    AlwaysDenied(AddressInfo),
    /// The address is not public and no allow-list entry covers it (on this port).
    NotAllowListed {
        /// The address.
        address: AddressInfo,
        /// The port of the connection, when known.
        port: Option<u16>,
        /// Ports that allow-list entries covering this address are limited to (a hint when the port is
        /// the only thing that does not match).
        allowed_ports: Vec<u16>,
    },
    /// DNS did not answer within [`EgressPolicy::dns_timeout`].
    DnsTimeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// DNS resolution failed.
    DnsFailure {
        /// The resolver's error.
        detail: String,
    },
    /// DNS answered with no address.
    NoAddresses,
    /// A redirect to another origin (scheme, host or port).
    CrossOriginRedirect {
        /// The origin the redirect pointed to.
        to: String,
    },
    /// A redirect from https to http.
    Downgrade,
    /// More redirects than allowed.
    TooManyRedirects {
        /// The cap.
        max: usize,
    },
}

/// Why a URL or address was refused, in words a person can act on.
///
/// `target` names what was being reached (an origin such as `http://10.1.2.3:8080`, or a host name); it
/// never contains credentials, paths or query strings. The `Display` text names the address and its
/// class and says how to fix it, or says plainly that nothing can (metadata, link-local, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused {target}: {}", describe(.reason))]
pub struct Refusal {
    /// What was being reached, without credentials or path.
    pub target: String,
    /// Why it was refused.
    pub reason: RefusalReason,
}

impl Refusal {
    fn new(target: impl Into<String>, reason: RefusalReason) -> Self {
        Refusal { target: target.into(), reason }
    }

    /// The class of the refused address, when the refusal is about an address.
    pub fn class(&self) -> Option<IpClass> {
        match &self.reason {
            RefusalReason::AlwaysDenied(a) | RefusalReason::NotAllowListed { address: a, .. } => Some(a.class),
            _ => None,
        }
    }

    /// True when no allow-list entry could lift this refusal.
    pub fn is_always_denied(&self) -> bool {
        matches!(self.reason, RefusalReason::AlwaysDenied(_) | RefusalReason::ReservedName { .. })
    }
}

fn describe(reason: &RefusalReason) -> String {
    match reason {
        RefusalReason::Scheme { scheme } => {
            format!("the scheme `{scheme}` is not allowed; a Jenkins URL must start with http:// or https://")
        }
        RefusalReason::Credentials => "the URL contains a user name or password; credentials in URLs are refused. \
             Give the Jenkins user and API token separately."
            .to_owned(),
        RefusalReason::MissingHost => "the URL has no host.".to_owned(),
        RefusalReason::ControlCharacter => {
            "the URL contains a control character (CR, LF, TAB or NUL); remove it.".to_owned()
        }
        RefusalReason::InvalidPort => "port 0 cannot be connected to; give the port Jenkins listens on.".to_owned(),
        RefusalReason::InvalidUrl { detail } => format!("the URL does not parse ({detail})."),
        RefusalReason::ReservedName { name, kind: ReservedName::Localhost } => format!(
            "the host name `{name}` always means this machine and is refused by name. To reach a Jenkins on this \
             machine, use its address (e.g. http://127.0.0.1:8080/) and add it to the private-access allow-list \
             (e.g. --allow-private 127.0.0.1:8080)."
        ),
        RefusalReason::ReservedName { name, kind: ReservedName::Metadata } => format!(
            "`{name}` is a cloud metadata service name (link-local / cloud metadata). It is always refused; no \
             allow-list entry can open it."
        ),
        RefusalReason::AlwaysDenied(address) => {
            format!("{address}. This class is always refused; no allow-list entry can open it.")
        }
        RefusalReason::NotAllowListed { address, port, allowed_ports } => {
            if allowed_ports.is_empty() {
                format!("{address}. {ALLOW_LIST_HINT}")
            } else {
                let ports = allowed_ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
                let used = port.map_or_else(
                    || {
                        "the port of this connection is not known to the resolver (see GuardedResolver::with_port)"
                            .to_owned()
                    },
                    |p| format!("this connection uses port {p}"),
                );
                format!(
                    "{address}. The allow-list opens it only on port(s) {ports}, and {used}. Add an entry for this \
                     port if it is intended."
                )
            }
        }
        RefusalReason::DnsTimeout { after } => {
            format!("DNS resolution did not finish within {} ms.", after.as_millis())
        }
        RefusalReason::DnsFailure { detail } => format!("DNS resolution failed: {detail}."),
        RefusalReason::NoAddresses => "DNS returned no address.".to_owned(),
        RefusalReason::CrossOriginRedirect { to } => format!(
            "the server redirected to {to}, a different origin (scheme, host or port). Only same-origin redirects \
             are followed; if Jenkins now lives there, register that URL instead."
        ),
        RefusalReason::Downgrade => "the server redirected from https to http; downgrades are refused.".to_owned(),
        RefusalReason::TooManyRedirects { max } => format!("more than {max} redirects."),
    }
}

/// Finds a [`Refusal`] in an error's source chain (reqwest wraps resolver and redirect errors).
pub fn find_refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<Refusal>() {
            return Some(r);
        }
        // `io::Error::source` skips the error it wraps, so look inside explicitly.
        if let Some(r) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()?.downcast_ref::<Refusal>()) {
            return Some(r);
        }
        current = e.source();
    }
    None
}

/// `scheme://host[:port]` of a URL: never userinfo, path or query.
fn origin_of(url: &Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// The policy
// ---------------------------------------------------------------------------------------------------------

/// The egress rules of one jgate instance: the private-access allow-list plus a DNS timeout.
///
/// Build it once from configuration (`--allow-private` values parsed as [`AllowEntry`]) and share it in an
/// `Arc` between [`GuardedResolver`], [`redirect_policy`] and the code that sends requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// The private-access allow-list. Empty means: public addresses only.
    pub allow: Vec<AllowEntry>,
    /// How long one DNS lookup may take before the name is refused.
    pub dns_timeout: Duration,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressPolicy::new(Vec::new())
    }
}

impl EgressPolicy {
    /// The default DNS timeout.
    pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(10);

    /// A policy with this allow-list and the default DNS timeout.
    pub fn new(allow: Vec<AllowEntry>) -> Self {
        EgressPolicy { allow, dns_timeout: Self::DEFAULT_DNS_TIMEOUT }
    }

    /// The same policy with another DNS timeout.
    pub fn with_dns_timeout(mut self, timeout: Duration) -> Self {
        self.dns_timeout = timeout;
        self
    }

    /// Parses a URL given by a person (say, when a Jenkins is registered) and checks it.
    ///
    /// Unlike [`Url::parse`], which silently drops CR, LF and TAB, this refuses them, and NUL.
    pub fn check_url_str(&self, raw: &str) -> Result<Url, Refusal> {
        if raw.contains(['\r', '\n', '\t', '\0']) {
            return Err(Refusal::new("the given URL", RefusalReason::ControlCharacter));
        }
        let url = Url::parse(raw.trim())
            .map_err(|e| Refusal::new("the given URL", RefusalReason::InvalidUrl { detail: e.to_string() }))?;
        self.check_url(&url)?;
        Ok(url)
    }

    /// Checks a URL before any request is sent to it. Call it for **every** request.
    ///
    /// Refuses: schemes other than http/https; any user name or password in the URL; a missing host;
    /// control characters; port 0; host names refused by name (`localhost`, `*.localhost`, `metadata`,
    /// `metadata.google.internal`, `metadata.azure.internal`); and IP-literal hosts that the address
    /// rules refuse (hyper connects to those without asking the resolver, so this is the only check they
    /// get). Host names are otherwise left to [`GuardedResolver`].
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        let target = origin_of(url);
        if url.as_str().contains(['\r', '\n', '\t', '\0']) {
            return Err(Refusal::new(target, RefusalReason::ControlCharacter));
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::new(
                format!("{}:", url.scheme()),
                RefusalReason::Scheme { scheme: url.scheme().to_owned() },
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::new(target, RefusalReason::Credentials));
        }
        let Some(host) = url.host() else {
            return Err(Refusal::new(target, RefusalReason::MissingHost));
        };
        let port = match url.port_or_known_default() {
            Some(0) | None => return Err(Refusal::new(target, RefusalReason::InvalidPort)),
            Some(p) => p,
        };
        match host {
            Host::Domain(d) => {
                let name = normalize_host(d);
                if name.is_empty() {
                    return Err(Refusal::new(target, RefusalReason::MissingHost));
                }
                match reserved_name(&name) {
                    Some(kind) => Err(Refusal::new(target, RefusalReason::ReservedName { name, kind })),
                    None => Ok(()),
                }
            }
            Host::Ipv4(v4) => self.check(None, IpAddr::V4(v4), Some(port)).map_err(|r| Refusal { target, ..r }),
            Host::Ipv6(v6) => self.check(None, IpAddr::V6(v6), Some(port)).map_err(|r| Refusal { target, ..r }),
        }
    }

    /// Judges one address that `host` (if any) resolved to, for a connection on `port`.
    ///
    /// Order: canonicalise; refuse always-denied classes; accept public addresses; accept addresses an
    /// allow-list entry covers (a network containing the canonical address, or a host-name entry naming
    /// `host`), honouring the entry's port; refuse the rest.
    pub fn check_ip(&self, host: Option<&str>, ip: IpAddr, port: u16) -> Result<(), Refusal> {
        self.check(host, ip, Some(port))
    }

    /// [`EgressPolicy::check_ip`] with a port that may be unknown; port-limited entries never match an
    /// unknown port.
    fn check(&self, host: Option<&str>, ip: IpAddr, port: Option<u16>) -> Result<(), Refusal> {
        let (canonical, embedded) = canonicalize(ip);
        let class = classify(ip);
        let info = || AddressInfo { ip, class, embedded, host: host.map(normalize_host) };
        let target = || match (host, port) {
            (Some(h), Some(p)) => format!("{}:{p}", normalize_host(h)),
            (Some(h), None) => normalize_host(h),
            (None, Some(p)) => SocketAddr::new(ip, p).to_string(),
            (None, None) => ip.to_string(),
        };
        if class.is_always_denied() {
            return Err(Refusal::new(target(), RefusalReason::AlwaysDenied(info())));
        }
        if class.is_public() {
            return Ok(());
        }
        let mut allowed_ports = Vec::new();
        for entry in self.allow.iter().filter(|e| e.covers(host, canonical)) {
            match entry.port() {
                None => return Ok(()),
                Some(p) if Some(p) == port => return Ok(()),
                Some(p) => allowed_ports.push(p),
            }
        }
        allowed_ports.sort_unstable();
        allowed_ports.dedup();
        Err(Refusal::new(target(), RefusalReason::NotAllowListed { address: info(), port, allowed_ports }))
    }
}

// ---------------------------------------------------------------------------------------------------------
// The guarded resolver
// ---------------------------------------------------------------------------------------------------------

/// The DNS lookup behind [`GuardedResolver`]. [`SystemLookup`] is the real one; tests inject fakes (fixed
/// answers, answers that change between calls to imitate DNS rebinding).
pub trait Lookup: Send + Sync + 'static {
    /// Resolves `host`; the port is copied into the returned socket addresses.
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver, through `tokio::net::lookup_host`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
    }
}

/// A reqwest DNS resolver that only ever hands out checked addresses.
///
/// For each name it: refuses names refused by name (`localhost`, metadata names); resolves once through
/// its [`Lookup`], within [`EgressPolicy::dns_timeout`]; checks **every** address of the answer with the
/// policy, refusing the whole name if any one address is refused (a mixed public/private answer is an
/// attack, not a fallback); and returns exactly the checked addresses. Since reqwest connects only to
/// what the resolver returns, what was checked is what gets connected to, which closes DNS rebinding.
///
/// reqwest tells a resolver the host name but not the port. Allow-list entries limited to a port can
/// therefore only match when the resolver knows the port: build one client per Jenkins origin and pin
/// the port with [`GuardedResolver::with_port`]. An unpinned resolver treats the port as unknown, and
/// port-limited entries do not match (they fail closed).
///
/// Plug it in with `reqwest::ClientBuilder::dns_resolver(Arc::new(resolver))`, together with
/// `.no_proxy()`. It does not see IP-literal hosts; [`EgressPolicy::check_url`] covers those.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn Lookup>,
    port: Option<u16>,
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver").field("policy", &self.policy).field("port", &self.port).finish()
    }
}

impl GuardedResolver {
    /// A resolver that checks answers of `lookup` against `policy`; the connection port is unknown.
    pub fn new(policy: Arc<EgressPolicy>, lookup: Arc<dyn Lookup>) -> Self {
        GuardedResolver { policy, lookup, port: None }
    }

    /// Pins the connection port (the Jenkins origin's port), so that port-limited allow-list entries such
    /// as `jenkins.internal:8080` can match. Use it only on a client that talks to that one origin.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The pinned port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Resolves `host` and checks every address for a connection on `port` (`None`: unknown). This is
    /// what [`reqwest::dns::Resolve::resolve`] runs, with the pinned port.
    pub async fn resolve_checked(&self, host: &str, port: Option<u16>) -> Result<Vec<SocketAddr>, Refusal> {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let name = normalize_host(bare);
        let target = match port {
            Some(p) => format!("{name}:{p}"),
            None => name.clone(),
        };
        if name.is_empty() {
            return Err(Refusal::new(target, RefusalReason::MissingHost));
        }
        if let Ok(ip) = IpAddr::from_str(&name) {
            // hyper does not send IP literals here, but a direct caller might.
            self.policy.check(None, ip, port)?;
            return Ok(vec![SocketAddr::new(ip, port.unwrap_or(0))]);
        }
        if let Some(kind) = reserved_name(&name) {
            return Err(Refusal::new(target, RefusalReason::ReservedName { name, kind }));
        }
        let timeout = self.policy.dns_timeout;
        let answer = match tokio::time::timeout(timeout, self.lookup.lookup(&name, port.unwrap_or(0))).await {
            Err(_) => return Err(Refusal::new(target, RefusalReason::DnsTimeout { after: timeout })),
            Ok(Err(e)) => return Err(Refusal::new(target, RefusalReason::DnsFailure { detail: e.to_string() })),
            Ok(Ok(addrs)) => addrs,
        };
        if answer.is_empty() {
            return Err(Refusal::new(target, RefusalReason::NoAddresses));
        }
        for addr in &answer {
            if let Err(refusal) = self.policy.check(Some(&name), addr.ip(), port) {
                tracing::debug!(host = %name, address = %addr.ip(), %refusal, "egress guard refused a DNS answer");
                return Err(refusal);
            }
        }
        Ok(answer)
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = this.resolve_checked(&host, this.port).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------------------------------------

/// Decides one redirect hop: `next` is where the server points, `previous` the URLs requested so far in
/// this chain (the first is the original request).
///
/// Follows only when: at most `max_hops` redirects have been followed; `next` has the same origin
/// (scheme, host, port) as the original URL (an https→http change is reported as a downgrade); and
/// `next` passes [`EgressPolicy::check_url`].
pub fn check_redirect(policy: &EgressPolicy, next: &Url, previous: &[Url], max_hops: usize) -> Result<(), Refusal> {
    let target = origin_of(next);
    let Some(original) = previous.first() else {
        return Err(Refusal::new(target, RefusalReason::CrossOriginRedirect { to: origin_of(next) }));
    };
    if previous.len() > max_hops {
        return Err(Refusal::new(target, RefusalReason::TooManyRedirects { max: max_hops }));
    }
    if original.scheme() == "https" && next.scheme() == "http" {
        return Err(Refusal::new(target, RefusalReason::Downgrade));
    }
    let host_of = |u: &Url| u.host_str().map(normalize_host);
    let same_origin = original.scheme() == next.scheme()
        && host_of(original) == host_of(next)
        && original.port_or_known_default() == next.port_or_known_default();
    if !same_origin {
        return Err(Refusal::new(target, RefusalReason::CrossOriginRedirect { to: origin_of(next) }));
    }
    policy.check_url(next)
}

/// A reqwest redirect policy built on [`check_redirect`]: same-origin hops only, no https→http, at most
/// `max_hops` redirects, [`EgressPolicy::check_url`] on every hop. A refused hop fails the request with a
/// [`Refusal`] in the error's source chain (see [`find_refusal`]).
///
/// For Jenkins API calls, `reqwest::redirect::Policy::none()` is often the better choice: the client
/// reads `Location` headers itself. An http→https upgrade counts as a different origin; register the
/// https URL instead.
pub fn redirect_policy(policy: Arc<EgressPolicy>, max_hops: usize) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        match check_redirect(&policy, attempt.url(), attempt.previous(), max_hops) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn embedded_forms_are_unwrapped() {
        let cases = [
            ("::ffff:127.0.0.1", Some((Embedding::Ipv4Mapped, "127.0.0.1"))),
            ("::ffff:0:10.0.0.1", Some((Embedding::Ipv4Translated, "10.0.0.1"))),
            ("::127.0.0.1", Some((Embedding::Ipv4Compatible, "127.0.0.1"))),
            ("64:ff9b::7f00:1", Some((Embedding::Nat64, "127.0.0.1"))),
            ("2002:7f00:1::", Some((Embedding::SixToFour, "127.0.0.1"))),
            ("2002:a9fe:a9fe::1", Some((Embedding::SixToFour, "169.254.169.254"))),
            ("::", None),
            ("::1", None),
            ("2606:4700::1111", None),
            ("64:ff9b:1::a00:1", None),
        ];
        for (addr, want) in cases {
            let got = embedded_ipv4(addr.parse().unwrap()).map(|e| (e.kind, e.v4));
            let want = want.map(|(k, a)| (k, a.parse::<Ipv4Addr>().unwrap()));
            assert_eq!(got, want, "{addr}");
        }
    }

    #[test]
    fn ipv6_loopback_is_not_turned_into_ipv4() {
        // Ipv6Addr::to_ipv4 would give 0.0.0.1 here.
        assert_eq!(classify(v6("::1")), IpClass::Loopback);
        assert_eq!(classify(v6("::")), IpClass::Unspecified);
        assert_eq!(canonicalize(v6("::1")), (v6("::1"), None));
    }

    #[test]
    fn classes_of_plain_addresses() {
        let cases = [
            (v4("127.0.0.1"), IpClass::Loopback),
            (v4("10.1.2.3"), IpClass::Private),
            (v4("172.31.255.255"), IpClass::Private),
            (v4("172.32.0.1"), IpClass::Public),
            (v4("169.254.169.254"), IpClass::Metadata),
            (v4("169.254.1.1"), IpClass::LinkLocal),
            (v4("100.100.100.200"), IpClass::Metadata),
            (v4("100.64.0.1"), IpClass::SharedCgnat),
            (v4("100.128.0.1"), IpClass::Public),
            (v4("0.1.2.3"), IpClass::Unspecified),
            (v4("255.255.255.255"), IpClass::Broadcast),
            (v4("239.1.1.1"), IpClass::Multicast),
            (v4("198.19.0.1"), IpClass::Benchmarking),
            (v4("203.0.113.9"), IpClass::Documentation),
            (v4("250.0.0.1"), IpClass::Reserved),
            (v4("192.0.0.8"), IpClass::SpecialPurpose),
            (v4("8.8.8.8"), IpClass::Public),
            (v6("fe80::1"), IpClass::LinkLocal),
            (v6("fd00:ec2::254"), IpClass::Metadata),
            (v6("fd12::1"), IpClass::UniqueLocal),
            (v6("ff02::1"), IpClass::Multicast),
            (v6("2001::1"), IpClass::Teredo),
            (v6("2001:db8::1"), IpClass::Documentation),
            (v6("2001:2::1"), IpClass::Benchmarking),
            (v6("100::1"), IpClass::SpecialPurpose),
            (v6("fec0::1"), IpClass::SpecialPurpose),
            (v6("::ffff:8.8.8.8"), IpClass::Public),
            (v6("64:ff9b::808:808"), IpClass::Public),
            (v6("2002:808:808::1"), IpClass::SpecialPurpose),
            (v6("::8.8.8.8"), IpClass::SpecialPurpose),
            (v6("2606:4700::1111"), IpClass::Public),
        ];
        for (ip, want) in cases {
            assert_eq!(classify(ip), want, "{ip}");
        }
    }

    #[test]
    fn unpinned_resolver_does_not_match_port_limited_entries() {
        let policy = EgressPolicy::new(vec!["10.0.0.5:8080".parse().unwrap()]);
        let refusal = policy.check(Some("j.internal"), v4("10.0.0.5"), None).unwrap_err();
        assert!(matches!(
            refusal.reason,
            RefusalReason::NotAllowListed { port: None, ref allowed_ports, .. } if allowed_ports == &[8080]
        ));
        assert!(refusal.to_string().contains("with_port"), "{refusal}");
        assert!(policy.check(Some("j.internal"), v4("10.0.0.5"), Some(8080)).is_ok());
    }

    #[test]
    fn allow_entry_display_round_trips() {
        for text in ["10.0.0.0/8", "10.1.2.3", "10.1.2.3:8080", "[fd00::1]:8443", "fd00::/8", "jenkins.internal:8080"] {
            let entry: AllowEntry = text.parse().unwrap();
            assert_eq!(entry.to_string(), text);
            assert_eq!(entry.to_string().parse::<AllowEntry>().unwrap(), entry);
        }
        let cidr_port: AllowEntry = "127.0.0.0/8:8080".parse().unwrap();
        assert_eq!(cidr_port.to_string().parse::<AllowEntry>().unwrap(), cidr_port);
    }

    #[test]
    fn refusal_target_never_carries_credentials() {
        let url = Url::parse("http://admin:s3cret@jenkins.example.com/job/x?token=abc").unwrap();
        let refusal = EgressPolicy::default().check_url(&url).unwrap_err();
        let text = refusal.to_string();
        assert!(!text.contains("s3cret") && !text.contains("admin") && !text.contains("token=abc"), "{text}");
    }
}
