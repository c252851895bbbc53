//! Property tests for job-path normalisation, scope globs and decisions: no spelling escapes a
//! scope, and a decision depends only on the Java fold of the canonical name (what Jenkins looks
//! items up by).

use gate::catalog::{Group, OPERATIONS, Target};
use gate::policy::{Grant, Level, Request, decide, glob_match, job_url_path, may_see, normalize_job_path};
use java_fold::{equivalents, fold_key};
use proptest::prelude::*;

/// Characters item names are built from: plain, ones Jenkins escapes in names, non-ASCII, and
/// letters with Java case variants Rust does not fold the same way (ſ→s, ı/İ→i, K→k, Å→å,
/// ς→σ, µ→μ, ǅ→ǆ, Deseret), plus ß, which Java keeps apart from "ss".
const ALPHABET: &[char] = &[
    'a',
    'b',
    'c',
    'x',
    'Y',
    'Z',
    '0',
    '7',
    '-',
    '_',
    '.',
    ' ',
    '~',
    '+',
    '%',
    '/',
    '\\',
    '?',
    '#',
    '[',
    ']',
    '*',
    'é',
    'Ж',
    '😀',
    ':',
    '@',
    '&',
    's',
    'i',
    'k',
    'å',
    'σ',
    'μ',
    'ǆ',
    'ß',
    '\u{10428}',
];

/// The escapes Jenkins' branch plugin uses inside item names.
fn item_escape(c: char) -> Option<&'static str> {
    match c {
        '%' => Some("%25"),
        '/' => Some("%2F"),
        '\\' => Some("%5C"),
        '?' => Some("%3F"),
        '#' => Some("%23"),
        '[' => Some("%5B"),
        ']' => Some("%5D"),
        _ => None,
    }
}

/// The expected canonical item name of a logical (decoded) name.
fn canonical(logical: &str) -> String {
    logical.chars().map(|c| item_escape(c).map_or_else(|| c.to_string(), str::to_string)).collect()
}

fn escape_bytes(c: char, upper: bool) -> String {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf).bytes().map(|b| if upper { format!("%{b:02X}") } else { format!("%{b:02x}") }).collect()
}

/// A logical item name that is a possible Jenkins job name.
fn logical_name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ALPHABET), 1..8)
        .prop_map(|cs| cs.into_iter().collect::<String>())
        .prop_filter("not a job name", |s| {
            s.trim() == s
                && !s.is_empty()
                && !s.eq_ignore_ascii_case("job")
                && !s.split(['/', '\\']).any(|c| c == "." || c == "..")
        })
}

/// Random choices that drive one spelling: per character (how to write it) and per separator.
#[derive(Debug, Clone)]
struct Choices {
    per_char: Vec<u8>,
    seps: Vec<u8>,
    lead: u8,
    trail: u8,
    pad: bool,
}

fn choices() -> impl Strategy<Value = Choices> {
    (prop::collection::vec(any::<u8>(), 64), prop::collection::vec(1u8..4, 16), 0u8..3, 0u8..3, any::<bool>())
        .prop_map(|(per_char, seps, lead, trail, pad)| Choices { per_char, seps, lead, trail, pad })
}

impl Choices {
    fn pick(&self, k: &mut usize) -> u8 {
        let v = self.per_char[*k % self.per_char.len()];
        *k += 1;
        v
    }
}

/// One of the characters Java treats as equal to `c` (`c` itself included), chosen by `r`.
fn case_variant(c: char, r: u8) -> char {
    let all: Vec<char> = equivalents(c).collect();
    all[usize::from(r) % all.len()]
}

fn flip_case(c: char, flip: bool) -> char {
    if !flip {
        c
    } else if c.is_ascii_lowercase() {
        c.to_ascii_uppercase()
    } else {
        c.to_ascii_lowercase()
    }
}

/// One item name as it may appear in a full name.
fn full_name_segment(logical: &str, ch: &Choices, k: &mut usize) -> String {
    let mut out = String::new();
    for c in logical.chars() {
        let r = ch.pick(k);
        match item_escape(c) {
            Some(e) if r & 1 == 0 => out.push_str(e),
            Some(e) => out.push_str(&e.to_ascii_lowercase()),
            None if r & 2 == 0 => out.push(case_variant(c, r >> 4)),
            None => out.push_str(&escape_bytes(case_variant(c, r >> 4), r & 8 == 0)),
        }
    }
    out
}

/// One item name as it may appear in a URL path (`job/<this>`).
fn url_segment(logical: &str, ch: &Choices, k: &mut usize) -> String {
    let mut out = String::new();
    for c in logical.chars() {
        let r = ch.pick(k);
        match item_escape(c) {
            // Lax: the character URL-encoded once (not possible for '%' itself).
            Some(_) if c != '%' && r & 1 == 0 => out.push_str(&escape_bytes(c, r & 2 == 0)),
            // Strict: the item-name escape, URL-encoded again (`%2F` → `%252F`).
            Some(e) => {
                out.push_str("%25");
                out.push_str(&e[1..]);
            }
            None if r & 2 == 0 => out.push(case_variant(c, r >> 4)),
            None if r & 4 == 0 => out.push_str(&escape_bytes(case_variant(c, r >> 4), r & 8 == 0)),
            // An item-level escape of a plain character, URL-encoded again.
            None => out.push_str(&escape_bytes(case_variant(c, r >> 4), true).replace('%', "%25")),
        }
    }
    out
}

fn join(segments: &[String], ch: &Choices) -> String {
    let mut s = String::new();
    if ch.pad {
        s.push_str("  ");
    }
    s.push_str(&"/".repeat(usize::from(ch.lead)));
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            s.push_str(&"/".repeat(usize::from(ch.seps[i % ch.seps.len()])));
        }
        s.push_str(seg);
    }
    s.push_str(&"/".repeat(usize::from(ch.trail)));
    if ch.pad {
        s.push('\t');
    }
    s
}

fn full_name_spelling(names: &[String], ch: &Choices) -> String {
    let mut k = 0;
    let segs: Vec<String> = names.iter().map(|n| full_name_segment(n, ch, &mut k)).collect();
    join(&segs, ch)
}

fn url_spelling(names: &[String], ch: &Choices) -> String {
    let mut k = 0;
    let mut segs = Vec::new();
    for n in names {
        let keyword: String = "job".chars().map(|c| flip_case(c, ch.pick(&mut k) & 1 == 1)).collect();
        segs.push(keyword);
        segs.push(url_segment(n, ch, &mut k));
    }
    join(&segs, ch)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every spelling of a job normalises to the same canonical full name (up to Java's case fold,
    /// which Jenkins and the matcher apply), and the canonical name is a fixed point.
    #[test]
    fn every_spelling_normalises_to_the_canonical_name(
        names in prop::collection::vec(logical_name(), 1..5),
        a in choices(),
        b in choices(),
    ) {
        let expected: String = names.iter().map(|n| canonical(n)).collect::<Vec<_>>().join("/");
        prop_assert_eq!(normalize_job_path(&expected), Ok(expected.clone()));
        prop_assert_eq!(normalize_job_path(&job_url_path(&expected)), Ok(expected.clone()));
        for spelling in [full_name_spelling(&names, &a), url_spelling(&names, &a), full_name_spelling(&names, &b), url_spelling(&names, &b)] {
            let got = normalize_job_path(&spelling).map(|s| fold_key(&s));
            prop_assert_eq!(got, Ok(fold_key(&expected)), "spelling {:?}", spelling);
            prop_assert!(glob_match(&expected, &spelling_normalised(&spelling)));
        }
    }

    /// No path with a `.` or `..` segment (plain or percent-encoded, in either form) is accepted.
    #[test]
    fn dot_segments_never_normalise(
        names in prop::collection::vec(logical_name(), 0..4),
        at in any::<prop::sample::Index>(),
        dot in prop::sample::select(&["..", ".", "%2e%2e", "%2E.", ".%2E", "%2e", "%252E%252E", "%252e"][..]),
        url in any::<bool>(),
        ch in choices(),
    ) {
        let pos = at.index(names.len() + 1);
        // Insert after spelling the others, so the dot segment itself is written as given.
        let mut spelled: Vec<String> = {
            let mut k = 0;
            names.iter().map(|n| if url { url_segment(n, &ch, &mut k) } else { full_name_segment(n, &ch, &mut k) }).collect()
        };
        let raw_dot = if !url && dot.contains("%25") { dot.replace("%25", "%") } else { dot.to_string() };
        spelled.insert(pos, raw_dot);
        let segs: Vec<String> = if url { spelled.into_iter().flat_map(|s| ["job".to_string(), s]).collect() } else { spelled };
        let path = join(&segs, &ch);
        prop_assert!(normalize_job_path(&path).is_err(), "{:?} was accepted as {:?}", path, normalize_job_path(&path));
    }

    /// Whatever an agent sends, if it is accepted and the scope `a/**` covers it, it is `a` or lies
    /// below `a` — and the URL the gate builds from it addresses exactly that.
    #[test]
    fn nothing_escapes_a_scope(tokens in prop::collection::vec(prop::sample::select(&[
        "a", "A", "b", "job", "JOB", "/", "//", "..", ".", "%2F", "%2f", "%252F", "%2E", "%2e%2e", "%25", "%", "\\", "%5C", "*", " ", "%00", "?", "a/",
    ][..]), 1..12)) {
        let raw: String = tokens.concat();
        if let Ok(c) = normalize_job_path(&raw) {
            prop_assert!(c.split('/').all(|s| !s.is_empty() && s != "." && s != ".."), "{:?} → {:?}", raw, c);
            prop_assert_eq!(normalize_job_path(&c), Ok(c.clone()));
            prop_assert_eq!(normalize_job_path(&job_url_path(&c)), Ok(c.clone()));
            if glob_match("a/**", &c) {
                let l = fold_key(&c);
                prop_assert!(l == "a" || l.starts_with("a/"), "{:?} → {:?}", raw, c);
                let url = job_url_path(&c).to_lowercase();
                prop_assert!(url == "job/a" || url.starts_with("job/a/job/"), "{:?}", url);
            }
        }
    }

    /// `*` (and `?`, `[...]`) never cross a `/`: a pattern without `**` only matches paths with
    /// as many segments as it has.
    #[test]
    fn single_star_never_crosses_a_slash(
        names in prop::collection::vec(logical_name(), 1..5),
        pattern in prop::collection::vec(prop::sample::select(&["*", "a*", "*b*", "?*", "[a-z]*", "*%2F*", "x"][..]), 1..5),
    ) {
        let path: String = names.iter().map(|n| canonical(n)).collect::<Vec<_>>().join("/");
        let pattern = pattern.join("/");
        if glob_match(&pattern, &path) {
            prop_assert_eq!(pattern.split('/').count(), names.len());
        }
        prop_assert_eq!(glob_match("*", &path), names.len() == 1);
        prop_assert!(glob_match("**", &path));
        let below_first = format!("{}/**", canonical(&names[0]));
        prop_assert!(glob_match(&below_first, &path));
    }

    /// Normalisation never panics, whatever it is given.
    #[test]
    fn normalisation_is_total(s in prop::collection::vec(any::<char>(), 0..40)) {
        let s: String = s.into_iter().collect();
        if let Ok(c) = normalize_job_path(&s) {
            prop_assert_eq!(normalize_job_path(&c), Ok(c.clone()));
        }
    }
}

/// Logical item names for random job trees: some equal to each other under Java's fold, some
/// that only Rust's folding would confuse, some with characters Jenkins escapes.
const TREE_NAMES: &[&str] = &[
    "secret",
    "Release",
    "releasex",
    "x",
    "admin-tools",
    "kube",
    "paß",
    "pass",
    "Σας",
    "µ",
    "\u{10400}x",
    "a b",
    "f/x",
];

/// Scope patterns for random grants, in mixed spellings (case variants, escapes, classes).
const PATTERNS: &[&str] = &[
    "**",
    "secret/**",
    "ſECRET/**",
    "secret/*",
    "releasex",
    "RELEAſEX",
    "releas?",
    "Release/**",
    "admin-*",
    "ADMİN-*",
    "adm[a-z]n-tools",
    "k[a-z]be",
    "\u{212A}UBE",
    "[!a-z]*",
    "*/x",
    "*/X",
    "pass",
    "PAß",
    "σας",
    "Μ",
    "*\u{10428}*",
    "a%20b/**",
    "f%2fx",
    "*/f%2Fx",
];

fn grant_set() -> impl Strategy<Value = Vec<Grant>> {
    let one = (
        prop::sample::select(&[Group::Status, Group::Build, Group::Config][..]),
        prop::sample::select(&[Level::Off, Level::Read, Level::Full][..]),
        prop::sample::select(&[None, Some("ci"), Some("other")][..]),
        prop::option::weighted(0.8, prop::sample::select(PATTERNS)),
    );
    prop::collection::vec(one, 1..7).prop_map(|rows| {
        rows.into_iter()
            .zip(1..)
            .map(|((group, level, controller, jobs), id)| Grant {
                id,
                agent: "bot".into(),
                controller: controller.map(str::to_string),
                group,
                level,
                jobs: jobs.map(str::to_string),
                params: Vec::new(),
                approve: false,
                max_per_hour: None,
            })
            .collect()
    })
}

/// A random job tree: full names of 1–3 segments, one per Java fold key (Jenkins cannot hold two
/// items that fold together), logical (unescaped) segments.
fn job_tree() -> impl Strategy<Value = Vec<Vec<String>>> {
    prop::collection::vec(prop::collection::vec(prop::sample::select(TREE_NAMES), 1..4), 1..6).prop_map(|paths| {
        let mut seen = std::collections::BTreeSet::new();
        paths
            .into_iter()
            .map(|p| p.into_iter().map(str::to_string).collect::<Vec<_>>())
            .filter(|p| seen.insert(fold_key(&p.iter().map(|n| canonical(n)).collect::<Vec<_>>().join("/"))))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// For every operation that names a job or folder and every spelling of every job (case and
    /// Java-fold variants, full name or URL path, escapes, extra slashes), the decision is the one
    /// for the canonical name's Java fold key: the same answer from the same grant, about an item
    /// Jenkins resolves to the same one. `off` carve-outs therefore hold for every spelling.
    #[test]
    fn decisions_depend_only_on_the_java_fold_of_the_canonical_name(
        grants in grant_set(),
        tree in job_tree(),
        spell in prop::collection::vec(choices(), 3),
    ) {
        for names in &tree {
            let canon = names.iter().map(|n| canonical(n)).collect::<Vec<_>>().join("/");
            let key = fold_key(&canon);
            let mut spellings = vec![canon.clone(), job_url_path(&canon), key.clone()];
            for ch in &spell {
                spellings.push(full_name_spelling(names, ch));
                spellings.push(url_spelling(names, ch));
            }
            for op in OPERATIONS.iter().filter(|o| matches!(o.target, Target::Job | Target::Folder)) {
                let ask = |job: &str| {
                    decide(&grants, &Request { agent: "bot", controller: "ci", op, job: Some(job), params: &[] })
                };
                let reference = ask(&key);
                prop_assert_eq!(reference.job.as_deref().map(fold_key), Some(key.clone()));
                for spelling in &spellings {
                    let d = ask(spelling);
                    prop_assert_eq!(
                        (d.allowed, d.grant),
                        (reference.allowed, reference.grant),
                        "{} on {:?} (canonical {:?}): {} / reference: {}", op.name, spelling, canon, d.reason, reference.reason
                    );
                    // Jenkins resolves the name acted on to the same item: equal under its fold.
                    prop_assert_eq!(d.job.as_deref().map(fold_key), Some(key.clone()), "{:?}", spelling);
                }
            }
            let seen = may_see(&grants, "bot", "ci", &key);
            for spelling in &spellings {
                prop_assert_eq!(may_see(&grants, "bot", "ci", spelling), seen, "{:?}", spelling);
            }
        }
    }
}

/// The property above, on the examples: a carve-out holds against every Java-equal
/// spelling, and names Java keeps apart are not caught by it.
#[test]
fn carve_outs_hold_for_java_equal_spellings() {
    let row = |id, level, jobs: Option<&str>| Grant {
        id,
        agent: "bot".into(),
        controller: None,
        group: Group::Status,
        level,
        jobs: jobs.map(str::to_string),
        params: Vec::new(),
        approve: false,
        max_per_hour: None,
    };
    let grants =
        [row(1, Level::Read, Some("**")), row(2, Level::Off, Some("secret/**")), row(3, Level::Off, Some("releasex"))];
    for job in ["ſecret/x", "job/%C5%BFecret/job/x", "SECRET//x/", "releaſex", "RELEASEX"] {
        assert!(!may_see(&grants, "bot", "ci", job), "{job}");
    }
    for job in ["secreτ/x", "releasexx", "paß"] {
        assert!(may_see(&grants, "bot", "ci", job), "{job}");
    }
}

fn spelling_normalised(s: &str) -> String {
    normalize_job_path(s).unwrap_or_default()
}

/// A folder literally named `job` is ambiguous with URL paths: refused in every spelling, so
/// normalisation stays idempotent.
#[test]
fn folders_named_job_are_refused() {
    for raw in ["job /%2F", "job/job/job/x", "job /x", "/JOB/job/JOB/x/"] {
        assert_eq!(normalize_job_path(raw), Err(gate::policy::PathError::AmbiguousJobFolder), "{raw}");
    }
    assert_eq!(normalize_job_path("job/a/job/b").as_deref(), Ok("a/b"), "URL form still works");
    assert_eq!(normalize_job_path("job/x").as_deref(), Ok("x"), "job/x is the URL form of the root item x");
}
