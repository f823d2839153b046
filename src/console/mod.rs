//! The web console: the user console at `/` and the operator view at
//! `/admin`, plain HTML, CSS and JavaScript modules embedded in the binary
//! (no build step, nothing fetched from elsewhere; `docs/CONSOLE.md`).
//! The pages hold no data: everything they show they fetch from the API with
//! the token the person signs in with.
//!
//! Owns: the console's files and the headers they are served with (a strict
//! Content-Security-Policy). Must not touch: the API (the pages are its
//! clients, like any other).

use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};

/// The policy every console file is served under: scripts, styles and
/// connections (HTTP and the WebSocket) only from this node, no inline
/// script or style, no forms submitted anywhere (they are handled by
/// script, so a token typed into one never ends up in a URL), not framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $mime:expr) => {
        Asset {
            name: $name,
            mime: $mime,
            body: include_str!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the console has.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("admin.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("user.js", JS),
    asset!("timeline.js", JS),
    asset!("admin.js", JS),
    asset!("chart.js", JS),
];

fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// A strong validator for a file: its SHA-256, shortened — computed once
/// per file, the first time any is served.
fn etag(a: &Asset) -> &'static str {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let d = switchboard_core::protocol::mac::sha256(a.body.as_bytes());
                let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    });
    let i = ASSETS
        .iter()
        .position(|x| x.name == a.name)
        .expect("an embedded file");
    &tags[i]
}

fn serve(req: &HttpRequest, a: &Asset) -> HttpResponse {
    let tag = etag(a);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    resp.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, tag));
    if fresh {
        return resp.finish();
    }
    resp.content_type(a.mime).body(a.body)
}

/// The user console.
#[get("/")]
async fn user_console(req: HttpRequest) -> HttpResponse {
    serve(&req, asset("index.html").expect("embedded"))
}

/// The operator view.
#[get("/admin")]
async fn admin_console(req: HttpRequest) -> HttpResponse {
    serve(&req, asset("admin.html").expect("embedded"))
}

/// The console's scripts, styles and icon.
#[get("/console/{name}")]
async fn console_file(
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, crate::http::error::ApiError> {
    let a = asset(&name)
        .ok_or_else(|| crate::http::error::ApiError::not_found("no such console file"))?;
    Ok(serve(&req, a))
}

/// Registers the console's three routes on an app.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(user_console)
        .service(admin_console)
        .service(console_file);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_loads_only_files_the_console_has() {
        for page in ["index.html", "admin.html"] {
            let html = asset(page).unwrap().body;
            assert!(!html.contains("<script>"), "{page}: inline script");
            assert!(!html.contains("style="), "{page}: inline style");
            for src in html
                .split("src=\"")
                .skip(1)
                .chain(html.split("href=\"").skip(1))
            {
                let url = &src[..src.find('"').unwrap()];
                if url.starts_with('#') {
                    continue;
                }
                let name = url
                    .strip_prefix("/console/")
                    .unwrap_or_else(|| panic!("{page} loads {url}, which is not a console file"));
                assert!(
                    asset(name).is_some(),
                    "{page} loads {url}, which is missing"
                );
            }
        }
    }

    #[test]
    fn modules_import_only_console_modules() {
        for a in ASSETS.iter().filter(|a| a.mime == JS) {
            for line in a.body.lines().filter(|l| l.starts_with("import ")) {
                let from = line.split('"').nth(1).expect("import … from \"…\"");
                let name = from.strip_prefix("/console/").expect("absolute import");
                assert!(
                    asset(name).is_some(),
                    "{} imports {from}, which is missing",
                    a.name
                );
            }
            assert!(!a.body.contains("innerHTML"), "{}: innerHTML", a.name);
            assert!(!a.body.contains("eval("), "{}: eval", a.name);
        }
    }
}
