//! Base URLs and job paths.
//!
//! A controller is addressed by its base URL, which may carry a port and a context path
//! (`https://ci.example.com:8443/jenkins`). Jobs are addressed by their full name, `a/b/c`,
//! which becomes `job/a/job/b/job/c/` with each segment encoded as Jenkins' `Util.rawEncode`
//! does. Multibranch branch jobs are named by the *encoded* branch name (`feature%2Fx`), exactly
//! as Jenkins reports it in `fullName`, so full names read from Jenkins round-trip unchanged.

use std::fmt;

use url::Url;

use crate::error::Error;

/// A normalised controller base URL: `http(s)://host[:port][/context]/`, always ending in `/`.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl(Url);

impl BaseUrl {
    /// Parses and normalises a base URL: trims whitespace and a trailing `/api/json` (or
    /// `/api/`, `/api/python`, `/api/xml`), adds the trailing slash, refuses credentials,
    /// queries and fragments, and schemes other than http/https.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let raw = input.trim();
        // The URL parser silently drops tabs and newlines; a URL containing them is refused.
        if raw.chars().any(char::is_control) {
            return Err(Error::InvalidUrl {
                url: raw.escape_debug().to_string(),
                problem: "the URL contains control characters (newline, tab...)".into(),
                fix: "write the URL on one line without control characters".into(),
            });
        }
        let mut url = Url::parse(raw).map_err(|e| Error::InvalidUrl {
            url: raw.to_string(),
            problem: format!("{e}"),
            fix: "write the full base URL, e.g. https://ci.example.com or https://ci.example.com:8443/jenkins".into(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::InvalidUrl {
                url: raw.to_string(),
                problem: format!("the scheme '{}' is not http or https", url.scheme()),
                fix: "use the http:// or https:// URL of the Jenkins controller".into(),
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::InvalidUrl {
                url: redact_userinfo(&url),
                problem: "the URL contains credentials".into(),
                fix: "remove user:password@ from the URL and give the user name and API token separately".into(),
            });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::InvalidUrl {
                url: raw.to_string(),
                problem: "the URL has a query or fragment".into(),
                fix: "give only the base URL of the controller, without ?... or #...".into(),
            });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::InvalidUrl {
                url: raw.to_string(),
                problem: "the URL has no host".into(),
                fix: "write the controller's host name, e.g. https://ci.example.com".into(),
            });
        }
        let mut path = url.path().trim_end_matches('/').to_string();
        for suffix in ["/api/json", "/api/python", "/api/xml", "/api"] {
            if let Some(stripped) = path.strip_suffix(suffix) {
                path = stripped.to_string();
                break;
            }
        }
        url.set_path(&format!("{}/", path));
        Ok(BaseUrl(url))
    }

    /// The URL of a path relative to the base (`path` must not start with `/`).
    pub fn join(&self, path: &str) -> Result<Url, Error> {
        let s = format!("{}{}", self.0, path.trim_start_matches('/'));
        Url::parse(&s).map_err(|e| Error::InvalidUrl {
            url: s.clone(),
            problem: format!("{e}"),
            fix: "this is a bug in the request path; please report it".into(),
        })
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// True if `url` has the same scheme, host and port as the base (and lies under its path).
    pub fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.0.scheme()
            && url.host_str().map(str::to_ascii_lowercase) == self.0.host_str().map(str::to_ascii_lowercase)
            && url.port_or_known_default() == self.0.port_or_known_default()
            && url.path().starts_with(self.0.path())
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseUrl({})", self.0)
    }
}

fn redact_userinfo(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Jenkins' `Util.rawEncode`: keeps ``!$&'()*+,-.0-9=@A-Z_a-z`` and percent-encodes the rest.
pub fn raw_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!$&'()*+,-.=@_".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// branch-api's `NameEncoder`: the item name Jenkins gives a branch (`feature/x` → `feature%2Fx`).
pub fn encode_branch_name(branch: &str) -> String {
    let mut out = String::with_capacity(branch.len());
    for ch in branch.chars() {
        if "%/\\?*!@#$^&|<>[]:;".contains(ch) {
            out.push_str(&format!("%{:02X}", ch as u32));
        } else {
            out.push(ch);
        }
    }
    out
}

/// The full name of an item: its segments from the root (`team/api`). Empty segments, `.` and
/// `..` are refused, so a path can never climb out of a folder.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobPath(Vec<String>);

impl JobPath {
    /// Parses `a/b/c` (leading/trailing slashes ignored).
    pub fn parse(full_name: &str) -> Result<Self, Error> {
        let segs: Vec<String> = full_name.trim_matches('/').split('/').map(str::to_string).collect();
        let bad = |why: &str| Error::InvalidJobPath {
            path: full_name.to_string(),
            problem: why.to_string(),
            fix: "write the job's full name with '/' between folders, e.g. team/api-server".to_string(),
        };
        if full_name.trim_matches('/').is_empty() {
            return Err(bad("the name is empty"));
        }
        for s in &segs {
            if s.is_empty() {
                return Err(bad("it contains an empty segment (//)"));
            }
            if s == "." || s == ".." {
                return Err(bad("'.' and '..' are not item names"));
            }
            if s.chars().any(char::is_control) {
                return Err(bad("it contains control characters"));
            }
        }
        Ok(JobPath(segs))
    }

    /// A branch job of a multibranch project: `project` + the branch name as Jenkins encodes it.
    pub fn branch(project: &JobPath, branch: &str) -> Self {
        let mut segs = project.0.clone();
        segs.push(encode_branch_name(branch));
        JobPath(segs)
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The short name (last segment).
    pub fn name(&self) -> &str {
        self.0.last().map(String::as_str).unwrap_or("")
    }

    /// The parent folder, if any.
    pub fn parent(&self) -> Option<JobPath> {
        (self.0.len() > 1).then(|| JobPath(self.0[..self.0.len() - 1].to_vec()))
    }

    /// A child of this folder.
    pub fn child(&self, name: &str) -> JobPath {
        let mut segs = self.0.clone();
        segs.push(name.to_string());
        JobPath(segs)
    }

    /// `job/a/job/b/` relative to the base URL.
    pub fn url_path(&self) -> String {
        self.0.iter().map(|s| format!("job/{}/", raw_encode(s))).collect()
    }
}

impl fmt::Display for JobPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

impl fmt::Debug for JobPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobPath({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_normalise() {
        let cases = [
            ("https://ci.example.com", "https://ci.example.com/"),
            ("https://ci.example.com/", "https://ci.example.com/"),
            ("https://ci.example.com:8443/jenkins", "https://ci.example.com:8443/jenkins/"),
            ("https://ci.example.com:8443/jenkins/", "https://ci.example.com:8443/jenkins/"),
            ("  http://ci:8080/jenkins/api/json ", "http://ci:8080/jenkins/"),
            ("http://ci:8080/api/json", "http://ci:8080/"),
        ];
        for (input, want) in cases {
            assert_eq!(BaseUrl::parse(input).map(|b| b.to_string()).ok().as_deref(), Some(want), "{input}");
        }
        for bad in [
            "ftp://ci/",
            "https://u:p@ci/",
            "https://ci/?x=1",
            "ci.example.com",
            "http://",
            "file:///etc/passwd",
            "http://ci/\nHost: x",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
        let err = BaseUrl::parse("https://admin:hunter2@ci/").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!err.contains("hunter2"), "credentials never echoed: {err}");
    }

    #[test]
    fn job_paths_build_urls() {
        let p = JobPath::parse("team/my job/é").ok();
        assert_eq!(p.map(|p| p.url_path()).as_deref(), Some("job/team/job/my%20job/job/%C3%A9/"));
        let mb = JobPath::parse("shop").map(|s| JobPath::branch(&s, "feature/x")).ok();
        assert_eq!(mb.as_ref().map(|p| p.to_string()).as_deref(), Some("shop/feature%2Fx"));
        assert_eq!(mb.map(|p| p.url_path()).as_deref(), Some("job/shop/job/feature%252Fx/"));
        for bad in ["", "/", "a//b", "a/../b", "./a"] {
            assert!(JobPath::parse(bad).is_err(), "{bad}");
        }
        let base = BaseUrl::parse("https://ci:8443/jenkins").ok();
        let url = base.and_then(|b| b.join("job/a/api/json").ok()).map(|u| u.to_string());
        assert_eq!(url.as_deref(), Some("https://ci:8443/jenkins/job/a/api/json"));
    }
}
