//! HTML bodies of Jenkins's error and redirect pages (jenkins-wire.md §8, §11).

fn esc(s: &str) -> String {
    let mut out = String::new();
    crate::export::xml_escape(&mut out, s);
    out
}

/// Jetty's default error page, used by `sendError` (400/403/405/409, crumb failures).
pub fn jetty_error(code: u16, message: &str, uri: &str) -> String {
    let m = esc(message);
    format!(
        "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n<title>Error {code} {m}</title>\n</head>\n<body><h2>HTTP ERROR {code} {m}</h2>\n<table>\n<tr><th>URI:</th><td>{}</td></tr>\n<tr><th>STATUS:</th><td>{code}</td></tr>\n<tr><th>MESSAGE:</th><td>{m}</td></tr>\n<tr><th>SERVLET:</th><td>Stapler</td></tr>\n</table>\n<hr/><a href=\"https://jetty.org/\">Powered by Jetty:// 12.0.22</a><hr/>\n\n</body>\n</html>\n",
        esc(uri)
    )
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html class=\"\"><head resURL=\"/static/6d7f1c2a\" data-rooturl=\"\" data-resurl=\"/static/6d7f1c2a\">\n<title>{} - Jenkins</title></head><body id=\"jenkins\" class=\"yui-skin-sam two-column jenkins-2.541.2\" data-version=\"2.541.2\">\n<div id=\"page-body\"><div id=\"main-panel\">{body}</div></div></body></html>",
        esc(title)
    )
}

/// The 404 page (`_404.jelly`).
pub fn not_found(anonymous: bool) -> String {
    let login = if anonymous { "<p>If you have an account, try logging in.</p>" } else { "" };
    layout(
        "Not Found",
        &format!(
            "<h1><img src=\"/static/6d7f1c2a/images/rage.svg\" alt=\"\"> Oops!</h1><h2>Not Found</h2><p>This page may not exist, or you may not have permission to see it.</p>{login}"
        ),
    )
}

/// The `/oops` page: `HttpResponses.error` (2.224+) and uncaught exceptions. With a stack trace
/// when `trace` is given (as when Jenkins is set to show stack traces).
pub fn oops(trace: Option<&str>) -> String {
    let id = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..),
        fastrand::u16(..),
        fastrand::u64(..) & 0xffff_ffff_ffff
    );
    let stack = trace
        .map(|t| format!("<h2>Stack trace</h2><pre class=\"jenkins-!-margin-top-2\">{}</pre>", esc(t)))
        .unwrap_or_default();
    layout(
        "Jenkins",
        &format!(
            "<h1 style=\"text-align: center\"><img src=\"/static/6d7f1c2a/images/rage.svg\" height=\"179\" width=\"154\"> Oops!</h1><div id=\"error-description\" style=\"text-align: center\"><h2>A problem occurred while processing the request</h2><p>Logging ID={id}</p></div>{stack}"
        ),
    )
}

/// Anonymous without permission: the login-redirect page (`Util.printRedirect`).
pub fn login_redirect(from: &str, perm: &str, implied: &[&str]) -> String {
    let target =
        format!("/login?from={}", percent_encoding::utf8_percent_encode(from, percent_encoding::NON_ALPHANUMERIC));
    let implied: String = implied.iter().map(|p| format!(" ... which is implied by: {p}\n")).collect();
    let mut s = format!(
        "<html><head><meta http-equiv='refresh' content='1;url={target}'/><script id='redirect' data-redirect-url='{target}' src='/static/6d7f1c2a/scripts/redirect.js'></script></head><body style='background-color:white; color:white;'>\n\nAuthentication required\n<!--\nYou are authenticated as: anonymous\nGroups that you are in:\n  \nPermission you need to have (but didn't): {perm}\n{implied}-->\n\n</body></html>"
    );
    // Jenkins pads this page so that browsers show it instead of their own error page.
    s.push_str(&" ".repeat(512));
    s
}

/// Authenticated but lacking a permission (`AccessDeniedHandlerImpl`).
pub fn access_denied(user: &str, perm_title: &str) -> String {
    layout(
        "Access Denied",
        &format!("<h1>Access Denied</h1><p>{} is missing the {} permission</p>", esc(user), esc(perm_title)),
    )
}

/// `hudson.model.Failure` (createItem validation): a 400 page, message also in `X-Error`.
pub fn failure(message: &str) -> String {
    layout("Error", &format!("<h1>Error</h1><p>{}</p>", esc(message)))
}

/// GET on a `@RequirePOST` action.
pub fn require_post(url: &str) -> String {
    layout(
        "This URL requires POST",
        &format!(
            "<h1>This URL requires POST</h1><p>The URL you're trying to access requires that requests be sent using POST (like a form submission). The button below allows you to retry accessing this URL using POST. URL being accessed:</p><pre>{}</pre><form method=\"POST\"><input type=\"submit\" value=\"Try POSTing\"></form>",
            esc(url)
        ),
    )
}

/// A generic page for HTML views the twin does not model in detail.
pub fn simple(title: &str, text: &str) -> String {
    layout(title, &format!("<h1>{}</h1><p>{}</p>", esc(title), esc(text)))
}

/// Jenkins starting up (503).
pub fn starting() -> String {
    layout(
        "Starting Jenkins",
        "<h1>Please wait while Jenkins is getting ready to work ...</h1><p>Your browser will reload automatically when Jenkins is ready.</p>",
    )
}
