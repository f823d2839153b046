//! The OpenAPI 3.1 document at `GET /api/openapi.json`, collected from the
//! handlers' `#[utoipa::path]` annotations by registering the same
//! [`super::routes`] the server runs, then completed with what every
//! operation shares: the bearer scheme, 401/403 for tokens, and the one
//! error shape as the default answer.

use std::sync::OnceLock;

use actix_web::{get, App, HttpResponse};
use utoipa::openapi::info::{InfoBuilder, License};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::PartialSchema as _;
use utoipa_actix_web::AppExt as _;

use crate::http::error::ErrorBody;

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

fn complete(op: &mut Operation, path: &str) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let r = &mut op.responses.responses;
    if secured {
        r.entry("401".into()).or_insert_with(|| {
            error_response("`unauthorized`: no token, a bad token, or the wrong kind of token")
        });
    }
    if path.starts_with("/v1/admin/") {
        r.entry("403".into())
            .or_insert_with(|| error_response("`forbidden`: a user token on an admin endpoint"));
    }
    if op.request_body.is_some() {
        r.entry("413".into()).or_insert_with(|| {
            error_response("`too_large`: the body exceeds `api.max_body_bytes`")
        });
    }
    op.responses
        .responses
        .entry("default".into())
        .or_insert_with(|| {
            error_response(
                "any other error (`bad_json`, `storage_unavailable`, `shutting_down`, …)",
            )
        });
}

/// Builds the document (the paths of [`super::routes`], completed).
pub fn build() -> OpenApi {
    let (_, mut api) = App::new()
        .into_utoipa_app()
        .configure(super::routes)
        .split_for_parts();
    api.info = InfoBuilder::new()
        .title("Switchboard")
        .version(env!("CARGO_PKG_VERSION"))
        .license(Some(License::new(env!("CARGO_PKG_LICENSE"))))
        .description(Some(
            "The HTTP API of a Switchboard node: messages, the IM inbox and WebSocket, \
             presence, health, metrics, and the admin endpoints. Every error is \
             `{\"error\": {\"code\", \"message\"}}`. See docs/INTERFACES.md.",
        ))
        .build();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("a user's API token, or the admin token"))
                .build(),
        ),
    );
    components
        .schemas
        .entry("ErrorBody".into())
        .or_insert_with(ErrorBody::schema);
    for (path, item) in api.paths.paths.iter_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            complete(op, path);
        }
    }
    api
}

/// The document, built once per process.
fn api() -> &'static OpenApi {
    static API: OnceLock<OpenApi> = OnceLock::new();
    API.get_or_init(build)
}

fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| api().to_json().expect("the OpenAPI document serialises"))
}

/// The methods the document has for a concrete request path (`{x}`
/// matches one segment), for 405 answers.
pub fn methods_of(path: &str) -> Vec<&'static str> {
    let api = api();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let Some(item) = api.paths.paths.iter().find_map(|(template, item)| {
        let t: Vec<&str> = template.split('/').collect();
        let hit = t.len() == segs.len()
            && t.iter()
                .zip(&segs)
                .all(|(t, s)| (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s);
        hit.then_some(item)
    }) else {
        return Vec::new();
    };
    [
        ("GET", item.get.is_some()),
        ("PUT", item.put.is_some()),
        ("POST", item.post.is_some()),
        ("DELETE", item.delete.is_some()),
    ]
    .into_iter()
    .filter_map(|(m, has)| has.then_some(m))
    .collect()
}

/// This document (no token needed).
#[utoipa::path(tag = "health", responses(
    (status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json"),
))]
#[get("/api/openapi.json")]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json())
}
