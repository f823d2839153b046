//! Enterprise policy (COMPLIANCE.md): `/v1/admin/domains/{domain}`,
//! `/v1/admin/groups/{name}`, `/v1/admin/policy/rules/{id}` and
//! `POST /v1/admin/policy/test`. A malformed body or an unknown field or
//! action is 400 `invalid_policy` naming the field; a reference to an
//! unknown user, group, domain or node is 422 `unknown_reference`; nothing
//! is stored then.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{delete, get, post, put, web, HttpResponse};
use serde::{Deserialize, Serialize};

use switchboard_core::directory::{PolicyError, Side};
use switchboard_core::policy::{
    Applied, ContentFacts, Decision, Domain, Group, Reference, Rule, Stage, Verdict,
};
use switchboard_core::protocol::{MediumKind, MemberId, Priority, To};

use crate::api::auth::Admin;
use crate::api::ApiState;
use crate::http::error::{ApiError, ErrorBody};

fn policy_error(e: PolicyError) -> ApiError {
    match e {
        PolicyError::Invalid(i) => invalid(&i.field, &i.reason),
        PolicyError::Unknown(field, what) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_reference",
            format!("{field}: {what}"),
        ),
        PolicyError::InUse(m) => ApiError::new(StatusCode::CONFLICT, "in_use", m),
        PolicyError::Store(s) => s.into(),
    }
}

fn invalid(field: &str, reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_policy",
        format!("{field}: {reason}"),
    )
}

/// `T` from a JSON body, naming the field that is wrong.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    switchboard_core::policy::rule::from_json(body).map_err(|e| invalid(&e.field, &e.reason))
}

/// Domains by name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DomainList {
    /// Every domain.
    pub domains: BTreeMap<String, Domain>,
}

/// Every domain.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses((status = 200, body = DomainList)))]
#[get("/domains")]
pub async fn list_domains(st: web::Data<ApiState>, _: Admin) -> HttpResponse {
    HttpResponse::Ok().json(DomainList {
        domains: st.directory.policy().snapshot().domains.clone(),
    })
}

/// One domain.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = Domain),
    (status = 404, body = ErrorBody),
))]
#[get("/domains/{domain}")]
pub async fn get_domain(
    st: web::Data<ApiState>,
    _: Admin,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let s = st.directory.policy().snapshot();
    let d = s
        .domains
        .get(name.as_str())
        .ok_or_else(|| ApiError::not_found("no such domain"))?;
    Ok(HttpResponse::Ok().json(d))
}

/// Adds (201) or replaces (200) a domain.
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = Domain, responses(
    (status = 200, description = "replaced", body = Domain),
    (status = 201, description = "added", body = Domain),
    (status = 400, description = "`invalid_policy`", body = ErrorBody),
))]
#[put("/domains/{domain}")]
pub async fn put_domain(
    st: web::Data<ApiState>,
    _: Admin,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let d: Domain = parse(&body)?;
    let new = st
        .directory
        .policy()
        .put_domain(&name, &d)
        .await
        .map_err(policy_error)?;
    Ok(created_or_ok(new).json(d))
}

/// Removes a domain no rule names.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 204, description = "removed"),
    (status = 404, body = ErrorBody),
    (status = 409, description = "`in_use`: a rule names it", body = ErrorBody),
))]
#[delete("/domains/{domain}")]
pub async fn delete_domain(
    st: web::Data<ApiState>,
    _: Admin,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    gone_or_done(
        st.directory.policy().remove_domain(&name).await,
        "no such domain",
    )
}

/// Groups by name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupList {
    /// Every group.
    pub groups: BTreeMap<String, Group>,
}

/// Every group.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses((status = 200, body = GroupList)))]
#[get("/groups")]
pub async fn list_groups(st: web::Data<ApiState>, _: Admin) -> HttpResponse {
    HttpResponse::Ok().json(GroupList {
        groups: st.directory.policy().snapshot().groups.clone(),
    })
}

/// One group, with the users who are members now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    /// Users with all of these attributes are members.
    #[serde(rename = "where")]
    pub predicate: BTreeMap<String, String>,
    /// Members by name.
    pub members: Vec<String>,
    /// Who is a member now (static, by attributes, or by their profile).
    pub current: Vec<String>,
}

/// One group.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = GroupView),
    (status = 404, body = ErrorBody),
))]
#[get("/groups/{name}")]
pub async fn get_group(
    st: web::Data<ApiState>,
    _: Admin,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let s = st.directory.policy().snapshot();
    let g = s
        .groups
        .get(name.as_str())
        .ok_or_else(|| ApiError::not_found("no such group"))?;
    let mut current: Vec<String> = st
        .directory
        .profiles()
        .iter()
        .filter(|p| g.contains(&name, &p.id, &p.attrs, &p.groups))
        .map(|p| p.id.clone())
        .collect();
    current.sort();
    Ok(HttpResponse::Ok().json(GroupView {
        predicate: g.predicate.clone(),
        members: g.members.clone(),
        current,
    }))
}

/// Adds (201) or replaces (200) a group.
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = Group, responses(
    (status = 200, description = "replaced", body = Group),
    (status = 201, description = "added", body = Group),
    (status = 400, description = "`invalid_policy`", body = ErrorBody),
    (status = 422, description = "`unknown_reference`: a member who is no user", body = ErrorBody),
))]
#[put("/groups/{name}")]
pub async fn put_group(
    st: web::Data<ApiState>,
    _: Admin,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let g: Group = parse(&body)?;
    if let Some(m) = g.members.iter().find(|m| st.directory.profile(m).is_none()) {
        return Err(policy_error(PolicyError::Unknown(
            "members".into(),
            format!("no such user {m:?}"),
        )));
    }
    let new = st
        .directory
        .policy()
        .put_group(&name, &g)
        .await
        .map_err(policy_error)?;
    Ok(created_or_ok(new).json(g))
}

/// Removes a group no rule names.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 204, description = "removed"),
    (status = 404, body = ErrorBody),
    (status = 409, description = "`in_use`: a rule names it", body = ErrorBody),
))]
#[delete("/groups/{name}")]
pub async fn delete_group(
    st: web::Data<ApiState>,
    _: Admin,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    gone_or_done(
        st.directory.policy().remove_group(&name).await,
        "no such group",
    )
}

/// Rules, highest priority first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleList {
    /// Every rule.
    pub rules: Vec<Rule>,
}

/// Every rule, in the order they are walked.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses((status = 200, body = RuleList)))]
#[get("/policy/rules")]
pub async fn list_rules(st: web::Data<ApiState>, _: Admin) -> HttpResponse {
    let mut rules: Vec<Rule> = st
        .directory
        .policy()
        .snapshot()
        .rules
        .values()
        .cloned()
        .collect();
    rules.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    HttpResponse::Ok().json(RuleList { rules })
}

/// One rule.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = Rule),
    (status = 404, body = ErrorBody),
))]
#[get("/policy/rules/{id}")]
pub async fn get_rule(
    st: web::Data<ApiState>,
    _: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let s = st.directory.policy().snapshot();
    let r = s
        .rules
        .get(id.as_str())
        .ok_or_else(|| ApiError::not_found("no such rule"))?;
    Ok(HttpResponse::Ok().json(r))
}

/// Adds (201, version 1) or replaces (200, the next version) a rule; the
/// id in the body, if any, must be the path's.
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = Rule, responses(
    (status = 200, description = "replaced", body = Rule),
    (status = 201, description = "added", body = Rule),
    (status = 400, description = "`invalid_policy`: the field named", body = ErrorBody),
    (status = 422, description = "`unknown_reference`: an unknown user, group, domain or node", body = ErrorBody),
))]
#[put("/policy/rules/{id}")]
pub async fn put_rule(
    st: web::Data<ApiState>,
    _: Admin,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The path names the rule; a body without an id takes it.
    let mut v: serde_json::Value = parse(&body)?;
    match v.get("id") {
        None => {
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), serde_json::Value::String(id.clone()));
            }
        }
        Some(serde_json::Value::String(b)) if *b == *id => {}
        Some(_) => return Err(invalid("id", "must be the path's rule id")),
    }
    let text = serde_json::to_vec(&v).unwrap_or_default();
    let rule = Rule::parse(&text).map_err(|e| invalid(&e.field, &e.reason))?;
    check_references(&st, &rule).await?;
    let new = !st
        .directory
        .policy()
        .snapshot()
        .rules
        .contains_key(&rule.id);
    let stored = st
        .directory
        .policy()
        .put_rule(rule)
        .await
        .map_err(policy_error)?;
    Ok(created_or_ok(new).json(stored))
}

/// Removes a rule.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 204, description = "removed"),
    (status = 404, body = ErrorBody),
))]
#[delete("/policy/rules/{id}")]
pub async fn delete_rule(
    st: web::Data<ApiState>,
    _: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    gone_or_done(st.directory.policy().remove_rule(&id).await, "no such rule")
}

/// 422 for the first thing `rule` names that does not exist.
async fn check_references(st: &ApiState, rule: &Rule) -> Result<(), ApiError> {
    let s = st.directory.policy().snapshot();
    for r in rule.references() {
        let missing = match &r {
            Reference::User(f, u) => st
                .directory
                .profile(u)
                .is_none()
                .then(|| (f, format!("no such user {u:?}"))),
            Reference::Group(f, g) => {
                (!s.groups.contains_key(g)).then(|| (f, format!("no such group {g:?}")))
            }
            Reference::Domain(f, d) => {
                (!s.domains.contains_key(d)).then(|| (f, format!("no such domain {d:?}")))
            }
            Reference::Node(f, n) => {
                (!known_node(st, n).await).then(|| (f, format!("no such node or member {n:?}")))
            }
        };
        if let Some((field, what)) = missing {
            return Err(policy_error(PolicyError::Unknown(field.to_string(), what)));
        }
    }
    Ok(())
}

/// A member this node knows, or a node of its cluster.
async fn known_node(st: &ApiState, n: &str) -> bool {
    if st.directory.member(&MemberId::new(n)).is_some() {
        return true;
    }
    match &st.cluster {
        Some(m) => m
            .status(st.clock.now_ms())
            .await
            .is_ok_and(|s| s.nodes.iter().any(|node| node.id == n)),
        None => false,
    }
}

fn created_or_ok(new: bool) -> actix_web::HttpResponseBuilder {
    if new {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
}

fn gone_or_done(r: Result<bool, PolicyError>, missing: &str) -> Result<HttpResponse, ApiError> {
    match r.map_err(policy_error)? {
        true => Ok(HttpResponse::NoContent().finish()),
        false => Err(ApiError::not_found(missing)),
    }
}

/// `POST /v1/admin/policy/test`: a message as the rules would see it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTest {
    /// The sender: a user id, or an address (`email:x@ext.example`).
    pub from: String,
    /// The recipient, as `POST /v1/messages` takes it.
    pub to: String,
    /// The medium it would go over.
    #[serde(default)]
    pub medium: Option<MediumKind>,
    /// Its priority.
    #[serde(default)]
    pub priority: Priority,
    /// Its text: the content stage runs too.
    #[serde(default)]
    pub body: Option<String>,
    /// Its content type (`text/plain`).
    #[serde(default)]
    pub content_type: Option<String>,
}

/// What one stage decided.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StageOutcome {
    /// `allow`, `deny`, `redirect` or `quarantine`.
    pub outcome: String,
    /// The deciding rule, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The reason (deny, quarantine) or target (redirect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every rule that applied.
    pub applied: Vec<Applied>,
    /// Tags.
    pub tags: Vec<String>,
    /// Supervisors told.
    pub notify: Vec<String>,
    /// Notices to the sender.
    pub warn: Vec<String>,
    /// The archive chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// No point-to-point delivery.
    pub strip_p2p: bool,
}

impl From<Decision> for StageOutcome {
    fn from(d: Decision) -> Self {
        let (outcome, rule, detail) = match d.verdict {
            Verdict::Allow => ("allow", None, None),
            Verdict::Deny { rule, reason } => ("deny", Some(rule), Some(reason)),
            Verdict::Redirect { rule, to } => ("redirect", Some(rule), Some(to)),
            Verdict::Quarantine { rule, reason } => ("quarantine", Some(rule), Some(reason)),
        };
        Self {
            outcome: outcome.into(),
            rule,
            detail,
            applied: d.applied,
            tags: d.tags,
            notify: d.notify,
            warn: d.warn,
            archive: d.archive,
            strip_p2p: d.strip_p2p,
        }
    }
}

/// Both stages' outcome.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PolicyTestResult {
    /// The broker's (meta information).
    pub meta: StageOutcome,
    /// The content filter's, when a body was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<StageOutcome>,
}

/// Which rules a message would match and the outcome; changes nothing.
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = PolicyTest, responses(
    (status = 200, body = PolicyTestResult),
    (status = 400, body = ErrorBody),
))]
#[post("/policy/test")]
pub async fn test_policy(
    st: web::Data<ApiState>,
    _: Admin,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let t: PolicyTest = parse(&body)?;
    let to = To::parse(&t.to).ok_or_else(|| invalid("to", "not a user id or medium:address"))?;
    let from_profile = st.directory.profile(&t.from);
    let to_profile = match &to {
        To::User(u) => Some(
            st.directory
                .profile(u)
                .ok_or_else(|| invalid("to", "no such user"))?,
        ),
        To::Address(a) => st
            .directory
            .user_for_address(a)
            .and_then(|u| st.directory.profile(&u)),
    };
    let to_text = match &to {
        To::Address(a) => a.to_string(),
        To::User(u) => u.clone(),
    };
    let from = match &from_profile {
        Some(p) => Side::User(p),
        None if t.from.contains(':') => Side::Address(&t.from),
        None => {
            return Err(invalid(
                "from",
                "no such user (an address is medium:address)",
            ))
        }
    };
    let to_side = match &to_profile {
        Some(p) => Side::User(p),
        None => Side::Address(&to_text),
    };
    let s = st.directory.policy().snapshot();
    let mut facts = s.facts(from, to_side, t.medium, t.priority);
    let meta = s.set.evaluate(Stage::Meta, &facts).into();
    let content = t.body.as_deref().map(|text| {
        facts.content = Some(ContentFacts {
            text,
            content_type: t.content_type.as_deref().unwrap_or("text/plain"),
            len: text.len() as u64,
        });
        s.set.evaluate(Stage::Content, &facts).into()
    });
    Ok(HttpResponse::Ok().json(PolicyTestResult { meta, content }))
}
