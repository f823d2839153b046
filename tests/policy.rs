//! Enterprise policy over the admin API: domains, groups, versioned rules,
//! `policy/test`; bad input named by its field (400), unknown references
//! (422), nothing half-applied; kept across a restart.

mod common;

use common::TestNode;
use serde_json::{json, Value};

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

#[test]
fn domains_groups_and_rules_are_checked_versioned_and_kept() {
    let node = TestNode::start();
    let a = &node.admin;
    let (status, v) = a.put(
        "/v1/admin/users/lena",
        &json!({"id": "lena", "domain": "corp.example", "attrs": {"country": "DE", "dept": "legal"},
                "mechanisms": [{"medium": "im", "address": "lena"}]}),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = a.put(
        "/v1/admin/users/sup",
        &json!({"id": "sup", "domain": "corp.example", "mechanisms": [{"medium": "im", "address": "sup"}]}),
    );
    assert_eq!(status, 201, "{v}");

    // Domains.
    let (status, v) = a.put(
        "/v1/admin/domains/corp.example",
        &json!({"managed": true, "external": "allow", "banner": "Messages are archived."}),
    );
    assert_eq!(status, 201, "{v}");
    let (status, _) = a.put("/v1/admin/domains/corp.example", &json!({"managed": true}));
    assert_eq!(status, 200, "replaced");
    for (path, body, field) in [
        ("/v1/admin/domains/Corp", json!({}), "domain"),
        (
            "/v1/admin/domains/corp.example",
            json!({"managed": "yes"}),
            "managed",
        ),
        (
            "/v1/admin/domains/corp.example",
            json!({"colour": 1}),
            "colour",
        ),
        (
            "/v1/admin/domains/corp.example",
            json!({"require_redirect": true}),
            "require_redirect",
        ),
    ] {
        let (status, v) = a.put(path, &body);
        assert_eq!((status, code(&v)), (400, "invalid_policy"), "{body}: {v}");
        assert!(message(&v).starts_with(field), "{field}: {v}");
    }

    // Groups: by attribute; a static member must be a user.
    let (status, v) = a.put(
        "/v1/admin/groups/legal",
        &json!({"where": {"dept": "legal"}}),
    );
    assert_eq!(status, 201, "{v}");
    let (_, g) = a.get("/v1/admin/groups/legal");
    assert_eq!(g["current"], json!(["lena"]), "{g}");
    let (status, v) = a.put("/v1/admin/groups/board", &json!({"members": ["nobody"]}));
    assert_eq!((status, code(&v)), (422, "unknown_reference"), "{v}");
    assert_eq!(a.get("/v1/admin/groups/board").0, 404, "nothing stored");

    // Rules: the path names the rule; version 1, then 2.
    let rule = json!({"priority": 100, "stage": "meta",
        "when": {"from": {"group": "legal"}, "to": {"external": true}},
        "action": {"type": "deny", "reason": "legal may not message outside"}});
    let (status, v) = a.put("/v1/admin/policy/rules/no-ext-legal", &rule);
    assert_eq!((status, v["version"].as_u64()), (201, Some(1)), "{v}");
    let (status, v) = a.put("/v1/admin/policy/rules/no-ext-legal", &rule);
    assert_eq!((status, v["version"].as_u64()), (200, Some(2)), "{v}");
    let notify = json!({"priority": 10, "stage": "meta", "when": {"priority": "urgent"},
        "action": {"type": "notify", "to": "sup"}});
    assert_eq!(a.put("/v1/admin/policy/rules/watch", &notify).0, 201);

    // Bad rules: 400 naming the field, 422 for what does not exist; none stored.
    for (id, body, status, field) in [
        (
            "bad1",
            json!({"stage": "meta", "action": {"type": "explode"}}),
            400,
            "action.type",
        ),
        (
            "bad2",
            json!({"stage": "meta", "action": {"type": "allow"}, "colour": 1}),
            400,
            "colour",
        ),
        (
            "bad3",
            json!({"stage": "meta", "when": {"contains": ["x"]}, "action": {"type": "allow"}}),
            400,
            "when.contains",
        ),
        (
            "bad4",
            json!({"stage": "content", "when": {"regex": "("}, "action": {"type": "deny"}}),
            400,
            "when.regex",
        ),
        (
            "bad5",
            json!({"id": "other", "stage": "meta", "action": {"type": "allow"}}),
            400,
            "id",
        ),
        (
            "bad6",
            json!({"stage": "meta", "when": {"from": {"group": "nope"}}, "action": {"type": "allow"}}),
            422,
            "when.from.group",
        ),
        (
            "bad7",
            json!({"stage": "meta", "action": {"type": "notify", "to": "ghost"}}),
            422,
            "action.to",
        ),
        (
            "bad8",
            json!({"stage": "meta", "action": {"type": "redirect", "to": "node-z"}}),
            422,
            "action.to",
        ),
        (
            "Bad9",
            json!({"stage": "meta", "action": {"type": "allow"}}),
            400,
            "id",
        ),
    ] {
        let (got, v) = a.put(&format!("/v1/admin/policy/rules/{id}"), &body);
        assert_eq!(got, status, "{id}: {v}");
        assert!(message(&v).starts_with(field), "{id} names {field}: {v}");
        assert_eq!(
            a.get(&format!("/v1/admin/policy/rules/{id}")).0,
            404,
            "{id} not stored"
        );
    }
    // In use: a rule names the group.
    let (status, v) = a.delete("/v1/admin/groups/legal");
    assert_eq!((status, code(&v)), (409, "in_use"), "{v}");

    // policy/test: which rules, what outcome; nothing changes.
    let (status, v) = a.post(
        "/v1/admin/policy/test",
        &json!({"from": "lena", "to": "email:x@ext.example", "priority": "urgent"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["meta"]["outcome"].as_str(), v["meta"]["rule"].as_str()),
        (Some("deny"), Some("no-ext-legal"))
    );
    assert_eq!(
        v["meta"]["applied"][0],
        json!({"rule": "no-ext-legal", "version": 2, "action": "deny"})
    );
    let (_, v) = a.post(
        "/v1/admin/policy/test",
        &json!({"from": "lena", "to": "sup", "priority": "urgent"}),
    );
    assert_eq!(v["meta"]["outcome"], "allow", "inside the company: {v}");
    assert_eq!(v["meta"]["notify"], json!(["sup"]), "{v}");
    let (status, v) = a.post("/v1/admin/policy/test", &json!({"from": "lena"}));
    assert_eq!((status, code(&v)), (400, "invalid_policy"), "{v}");

    // Kept across a restart.
    let dir = node.stop();
    let node = TestNode::start_in(dir);
    let (_, v) = node.admin.get("/v1/admin/policy/rules");
    let ids: Vec<&str> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["no-ext-legal", "watch"], "highest priority first");
    assert_eq!(
        node.admin.get("/v1/admin/domains").1["domains"]["corp.example"]["managed"],
        true
    );
    assert_eq!(
        node.admin
            .delete_path("/v1/admin/policy/rules/no-ext-legal"),
        204
    );
    assert_eq!(
        node.admin
            .delete_path("/v1/admin/policy/rules/no-ext-legal"),
        404
    );
    assert_eq!(
        node.admin.delete_path("/v1/admin/groups/legal"),
        204,
        "no longer in use"
    );
    // The admin token is needed.
    let stranger = common::Api::new(&node.url, "sb_nobody");
    assert_eq!(stranger.get("/v1/admin/policy/rules").0, 401);
}

#[test]
fn a_profile_is_refused_a_bad_domain_attribute_or_group() {
    let node = TestNode::start();
    for (profile, field) in [
        (json!({"id": "a", "domain": "Corp Example"}), "domain"),
        (json!({"id": "a", "attrs": {"Country": "DE"}}), "attrs"),
        (json!({"id": "a", "attrs": {"country": ""}}), "attrs"),
        (json!({"id": "a", "groups": ["Not A Group"]}), "groups"),
    ] {
        let (status, v) = node.admin.put("/v1/admin/users/a", &profile);
        assert_eq!(status, 422, "{profile}: {v}");
        assert!(message(&v).contains(field), "{field}: {v}");
    }
    assert_eq!(node.admin.get("/v1/admin/users/a").0, 404);
}

/// The worked example of docs/POLICY.md, through the CLI.
#[test]
fn the_cli_sets_up_an_enterprise_and_tests_a_message() {
    let node = TestNode::start();
    let run = |args: &[&str]| {
        let (ok, out, err) = common::cli(&node, args);
        assert!(ok, "{args:?}: {err}");
        out
    };
    run(&[
        "domain",
        "add",
        "corp.example",
        "--managed",
        "--banner",
        "Messages are archived.",
    ]);
    run(&["group", "add", "legal", "--where", "dept=legal"]);
    run(&[
        "user",
        "add",
        "lena",
        "--domain",
        "corp.example",
        "--attr",
        "dept=legal",
        "--attr",
        "country=DE",
    ]);
    run(&[
        "user",
        "add",
        "sup",
        "--domain",
        "corp.example",
        "--group",
        "supervisors",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let rules = [
        r#"{"id": "no-ext-legal", "priority": 100, "stage": "meta",
            "when": {"from": {"group": "legal"}, "to": {"external": true}},
            "action": {"type": "deny", "reason": "legal may not message outside"}}"#,
        r#"{"id": "project-x", "priority": 90, "stage": "content",
            "when": {"contains": ["Project X"]},
            "action": {"type": "deny", "reason": "Project X is confidential"}}"#,
        r#"{"id": "cards", "priority": 80, "stage": "content",
            "when": {"regex": "\\b\\d{4}[- ]?\\d{4}[- ]?\\d{4}[- ]?\\d{4}\\b"},
            "action": {"type": "quarantine", "reason": "a card number"}}"#,
        r#"{"id": "watch-urgent", "priority": 50, "stage": "meta",
            "when": {"priority": "urgent"}, "action": {"type": "notify", "to": "sup"}}"#,
        r#"{"id": "sms-tag", "priority": 10, "stage": "meta",
            "when": {"medium": "sms"}, "action": {"type": "tag", "tag": "sms"}}"#,
    ];
    for (i, r) in rules.iter().enumerate() {
        let f = dir.path().join(format!("{i}.json"));
        std::fs::write(&f, r).unwrap();
        let out = run(&["policy", "add", f.to_str().unwrap()]);
        assert!(out.contains("(version 1)"), "{out}");
    }
    let list = run(&["policy", "list"]);
    let ids: Vec<&str> = list
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "no-ext-legal",
            "project-x",
            "cards",
            "watch-urgent",
            "sms-tag"
        ]
    );
    let groups = run(&["group", "show", "supervisors"]);
    assert!(
        groups.contains("\"sup\""),
        "made by user add --group: {groups}"
    );

    let out = run(&[
        "policy",
        "test",
        "--from",
        "lena",
        "--to",
        "email:x@ext.example",
    ]);
    assert_eq!(
        out,
        "meta stage (broker): deny by no-ext-legal (legal may not message outside)\n  rules applied: no-ext-legal v1 deny\n"
    );
    let out = run(&[
        "policy",
        "test",
        "--from",
        "sup",
        "--to",
        "lena",
        "--priority",
        "urgent",
        "--medium",
        "sms",
        "--body",
        "the Project X plan",
    ]);
    assert_eq!(
        out,
        "meta stage (broker): allow\n  rules applied: watch-urgent v1 notify, sms-tag v1 tag\n  tags: sms\n  supervisors told: sup\n\
         content stage (filter): deny by project-x (Project X is confidential)\n  rules applied: project-x v1 deny\n"
    );
    // A bad rule file is refused naming the field.
    let f = dir.path().join("bad.json");
    std::fs::write(
        &f,
        r#"{"id": "bad", "stage": "meta", "action": {"type": "explode"}}"#,
    )
    .unwrap();
    let (ok, _, err) = common::cli(&node, &["policy", "add", f.to_str().unwrap()]);
    assert!(!ok && err.contains("action.type"), "{err}");
}

/// Sets up corp.example with the `legal` group (by attribute) and `rules`.
fn enterprise(a: &common::Api, rules: &[(&str, Value)]) {
    assert_eq!(
        a.put("/v1/admin/domains/corp.example", &json!({"managed": true}))
            .0,
        201
    );
    assert_eq!(
        a.put(
            "/v1/admin/groups/legal",
            &json!({"where": {"dept": "legal"}})
        )
        .0,
        201
    );
    for (id, r) in rules {
        let (status, v) = a.put(&format!("/v1/admin/policy/rules/{id}"), r);
        assert_eq!(status, 201, "{id}: {v}");
    }
}

/// A user of corp.example (`legal`: in the legal department).
fn corp_user(a: &common::Api, id: &str, legal: bool, mechanisms: Value) -> common::Api {
    let attrs = if legal {
        json!({"dept": "legal"})
    } else {
        json!({})
    };
    let (status, v) = a.put(
        &format!("/v1/admin/users/{id}"),
        &json!({"id": id, "domain": "corp.example", "attrs": attrs, "mechanisms": mechanisms}),
    );
    assert_eq!(status, 201, "{v}");
    a.with_token(v["token"].as_str().unwrap())
}

/// Blocked transactions, newest first.
fn blocked(a: &common::Api) -> Vec<Value> {
    a.get("/v1/admin/transactions?status=blocked").1["transactions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn the_broker_denies_skips_a_medium_and_writes_the_trail() {
    let sms = common::TestSms::default();
    let sent = sms.sent.clone();
    let node = common::node_with_sms(sms);
    let a = &node.admin;
    enterprise(
        a,
        &[
            (
                "no-ext-legal",
                json!({"priority": 100, "stage": "meta",
                "when": {"from": {"group": "legal"}, "to": {"external": true}},
                "action": {"type": "deny", "reason": "legal may not message outside"}}),
            ),
            (
                "no-sms-legal",
                json!({"priority": 90, "stage": "meta",
                "when": {"from": {"group": "legal"}, "medium": "sms"},
                "action": {"type": "deny", "reason": "legal does not use SMS"}}),
            ),
            (
                "urgent",
                json!({"priority": 10, "stage": "meta", "when": {"priority": "urgent"},
                "action": {"type": "tag", "tag": "urgent"}}),
            ),
        ],
    );
    let lena = corp_user(
        a,
        "lena",
        true,
        json!([{"medium": "im", "address": "lena"}]),
    );
    let bob = corp_user(
        a,
        "bob",
        false,
        json!([{"medium": "sms", "address": "+4915100000001"}, {"medium": "im", "address": "bob"}]),
    );

    // Outside the company: 403, and the transaction is blocked by the rule.
    let (status, v) = lena.post(
        "/v1/messages",
        &json!({"to": "sms:+4915199999999", "body": "hi"}),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("policy_denied")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("legal may not message outside"),
        "{v}"
    );
    let b = blocked(a);
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0]["reason"], "policy:no-ext-legal");
    assert_eq!(
        b[0]["policy"],
        json!([{"rule": "no-ext-legal", "version": 1, "action": "deny"}])
    );
    assert!(
        b[0]["attempts"].as_array().unwrap().is_empty(),
        "nothing released"
    );

    // Inside, to bob whose first mechanism is SMS: legal does not use SMS,
    // so it goes over IM; the rule that skipped SMS is on the trail.
    let (status, v) = lena.post(
        "/v1/messages",
        &json!({"to": "bob", "body": "by IM, not SMS", "priority": "urgent"}),
    );
    assert_eq!(status, 202, "{v}");
    let txn = v["txn"].as_str().unwrap().to_string();
    let st = lena.expect_status(&txn, "delivered");
    assert_eq!(st["attempts"][0]["mechanism"], "im", "{st}");
    assert_eq!(st["attempts"].as_array().unwrap().len(), 1, "{st}");
    assert_eq!(
        st["policy"],
        json!([{"rule": "no-sms-legal", "version": 1, "action": "deny"},
               {"rule": "urgent", "version": 1, "action": "tag"}])
    );
    assert!(
        st["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "tag:urgent"),
        "{st}"
    );
    assert_eq!(bob.inbox().len(), 1);
    assert!(sent.lock().unwrap().is_empty(), "no SMS");

    // bob is not in legal: his SMS mechanism is used as usual, and to a
    // phone outside too.
    let txn = bob.send("sms:+4915199999999", "from bob");
    bob.expect_status(&txn, "delivered");
    assert_eq!(sent.lock().unwrap().len(), 1);
}

#[test]
fn outside_senders_denied_are_told_on_their_own_medium() {
    let rule = json!({"priority": 100, "stage": "meta",
        "when": {"from": {"external": true}, "to": {"group": "legal"}},
        "action": {"type": "deny", "reason": "legal takes no outside messages"}});

    // SMS: a phone writing to @lena is answered by SMS (a real SMSC).
    let smsc = common::Smsc::start();
    let node = common::node_with_smsc(&smsc, &[]);
    enterprise(&node.admin, &[("legal-closed", rule.clone())]);
    let lena = corp_user(
        &node.admin,
        "lena",
        true,
        json!([{"medium": "im", "address": "lena"}]),
    );
    assert_eq!(
        smsc.mo(json!({"from": "+4917700000061", "text": "@lena hello"})),
        [0]
    );
    let told = smsc.wait_submits("4917700000061", 1);
    assert_eq!(
        told[0]["text"],
        "Switchboard: your message to lena was not sent (policy_denied: legal takes no outside messages)."
    );
    assert!(lena.inbox().is_empty());

    // Email: the SMTP client is answered 550 with the reason (swaks).
    let sink = common::Sink::start(&[]);
    let node = common::node_with_email(&sink, 1024 * 1024);
    enterprise(&node.admin, &[("legal-closed", rule)]);
    let lena = corp_user(
        &node.admin,
        "lena",
        true,
        json!([{"medium": "im", "address": "lena"}]),
    );
    let (ok, out) = common::swaks(
        &node,
        &[
            "--from",
            "ext@example.net",
            "--to",
            "lena@localhost",
            "--body",
            "x",
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("550 5.7.1 Refused: policy_denied: legal takes no outside messages"),
        "{out}"
    );
    assert!(lena.inbox().is_empty());
}

/// The notices in `user`'s inbox (from the system sender), oldest first.
fn notices(user: &common::Api) -> Vec<String> {
    user.inbox()
        .iter()
        .filter(|m| m["from"] == "im:switchboard")
        .map(|m| m["body"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn supervisors_are_told_meta_only_and_senders_warned_once_per_conversation() {
    let node = TestNode::start();
    let a = &node.admin;
    let (status, _) = a.put(
        "/v1/admin/domains/corp.example",
        &json!({"managed": true, "banner": "Messages outside corp.example are archived."}),
    );
    assert_eq!(status, 201);
    let sup = corp_user(a, "sup", false, json!([{"medium": "im", "address": "sup"}]));
    let alice = corp_user(
        a,
        "alice",
        false,
        json!([{"medium": "im", "address": "alice"}]),
    );
    let bob = corp_user(a, "bob", false, json!([{"medium": "im", "address": "bob"}]));
    let carol = corp_user(
        a,
        "carol",
        false,
        json!([{"medium": "im", "address": "carol"}]),
    );
    let outside = a.add_user("dana", &[("im", "dana")]); // no domain: external to corp
    for (id, r) in [
        (
            "watch-urgent",
            json!({"priority": 50, "stage": "meta", "when": {"priority": "urgent"},
            "action": {"type": "notify", "to": "sup"}}),
        ),
        (
            "careful",
            json!({"priority": 40, "stage": "meta", "when": {"to": {"user": "bob"}},
            "action": {"type": "warn", "text": "bob is on leave; his deputy reads his messages."}}),
        ),
    ] {
        assert_eq!(
            a.put(&format!("/v1/admin/policy/rules/{id}"), &r).0,
            201,
            "{id}"
        );
    }

    // Urgent: the supervisor learns who, to whom and the txn — not the text.
    let (status, v) = alice.post(
        "/v1/messages",
        &json!({"to": "carol", "body": "the secret plan", "priority": "urgent"}),
    );
    assert_eq!(status, 202, "{v}");
    let txn = v["txn"].as_str().unwrap().to_string();
    let told = common::eventually("the supervisor's notice", || {
        let n = notices(&sup);
        (!n.is_empty()).then_some(n)
    });
    assert_eq!(told.len(), 1);
    assert!(
        told[0].contains("from alice to carol")
            && told[0].contains("watch-urgent")
            && told[0].contains(&txn),
        "{told:?}"
    );
    assert!(!told[0].contains("secret"), "never the content: {told:?}");
    assert_eq!(carol.inbox().len(), 1, "the message itself arrived");

    // A warning goes to the sender once per conversation a day.
    for i in 0..2 {
        let txn = alice.send("bob", &format!("hi {i}"));
        alice.expect_status(&txn, "delivered");
    }
    let txn = carol.send("bob", "from carol");
    carol.expect_status(&txn, "delivered");
    common::eventually("carol's warning", || {
        (notices(&carol).len() == 1).then_some(())
    });
    // Notices go out in order: alice's second would be there before carol's.
    assert_eq!(
        notices(&alice),
        ["bob is on leave; his deputy reads his messages."],
        "once for two messages"
    );

    // The domain's banner, once, when a corp user writes outside it.
    for _ in 0..2 {
        let txn = carol.send("dana", "hello outside");
        carol.expect_status(&txn, "delivered");
    }
    let txn = alice.send("dana", "also outside");
    alice.expect_status(&txn, "delivered");
    common::eventually("alice's banner", || {
        (notices(&alice).len() == 2).then_some(())
    });
    assert_eq!(
        notices(&carol),
        [
            "bob is on leave; his deputy reads his messages.",
            "Messages outside corp.example are archived."
        ]
    );
    assert_eq!(outside.inbox().len(), 3);
    assert!(notices(&bob).is_empty() && notices(&outside).is_empty());

    // From outside in: the recipient is shown their domain's banner, once
    // per conversation whichever side wrote first (carol has seen it).
    let txn = outside.send("carol", "hello from outside");
    outside.expect_status(&txn, "delivered");
    let txn = outside.send("bob", "hello bob");
    outside.expect_status(&txn, "delivered");
    let banner = "Messages outside corp.example are archived.";
    // (dana, writing to bob, is warned by the `careful` rule; no banner:
    // she is in no domain.)
    let warned = ["bob is on leave; his deputy reads his messages."];
    common::eventually("bob's banner, dana's warning", || {
        (notices(&bob) == [banner] && notices(&outside) == warned).then_some(())
    });
    assert_eq!(notices(&carol).len(), 2, "carol saw it already");
    // Notices are not ruled themselves (no notice about a notice).
    assert_eq!(notices(&sup).len(), 1);
}

/// The content-stage rules of the "Project X" example.
fn project_x(a: &common::Api) {
    let rule = json!({"priority": 90, "stage": "content",
        "when": {"contains": ["Project X"]},
        "action": {"type": "deny", "reason": "Project X is confidential"}});
    assert_eq!(a.put("/v1/admin/policy/rules/project-x", &rule).0, 201);
    // A mark applies only if walked before the decision: above the deny.
    let watch = json!({"priority": 95, "stage": "content",
        "when": {"contains": ["Project X"]}, "action": {"type": "notify", "to": "sup"}});
    assert_eq!(
        a.put("/v1/admin/policy/rules/project-x-watch", &watch).0,
        201
    );
}

#[test]
fn the_content_filter_blocks_project_x_over_im_and_sms_and_tells_the_supervisor() {
    let smsc = common::Smsc::start();
    let node = common::node_with_smsc(&smsc, &[]);
    let a = &node.admin;
    let sup = a.add_user("sup", &[("im", "sup")]);
    let alice = a.add_user("alice", &[("im", "alice")]);
    let bob = a.add_user("bob", &[("im", "bob")]);
    a.add_user("dora", &[("sms", "+4915100000071")]);
    // No content rule: no filter on the route.
    let txn = alice.send("bob", "before the rules");
    let st = alice.expect_status(&txn, "delivered");
    let hops = st["attempts"][0]["processors"].as_array().cloned();
    assert!(hops.unwrap_or_default().is_empty(), "{st}");
    project_x(a);

    // IM: blocked, the sender's status says by which rule, bob gets nothing.
    let txn = alice.send("bob", "the Project X numbers");
    let st = alice.expect_status(&txn, "blocked");
    assert_eq!(st["reason"], "policy:project-x", "{st}");
    // The content stage's rules are on the trail (the filter attests them).
    assert_eq!(
        st["policy"],
        json!([{"rule": "project-x-watch", "version": 1, "action": "notify"},
               {"rule": "project-x", "version": 1, "action": "deny"}]),
        "{st}"
    );
    assert_eq!(
        st["attempts"][0]["processors"],
        json!(["proc-filter-1"]),
        "{st}"
    );
    assert_eq!(bob.inbox().len(), 1, "only the first message");
    // Anything else passes the filter, attested like any hop; a content
    // rule's tag is on the trail.
    let social = json!({"priority": 5, "stage": "content", "when": {"contains": ["lunch"]},
        "action": {"type": "tag", "tag": "social"}});
    assert_eq!(a.put("/v1/admin/policy/rules/social", &social).0, 201);
    let txn = alice.send("bob", "lunch?");
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(
        st["policy"],
        json!([{"rule": "social", "version": 1, "action": "tag"}]),
        "{st}"
    );
    assert!(
        (st["events"].as_array().unwrap().iter()).any(|e| e["kind"] == "tag:social"),
        "{st}"
    );
    assert_eq!(bob.inbox().len(), 2);

    // SMS: the filter comes before the text becomes segments; nothing is
    // submitted to the SMSC for the blocked one.
    let txn = alice.send("dora", "project x, by SMS");
    let st = alice.expect_status(&txn, "blocked");
    assert_eq!(
        st["attempts"][0]["processors"],
        json!(["proc-filter-1", "proc-sms-1"]),
        "{st}"
    );
    let txn = alice.send("dora", "see you at noon");
    alice.expect_status(&txn, "delivered");
    let submitted = smsc.wait_submits("4915100000071", 1);
    assert_eq!(submitted.len(), 1, "only the allowed one: {submitted:?}");
    assert_eq!(submitted[0]["text"], "see you at noon");

    // The supervisor was told of both, meta only.
    let told = common::eventually("two notices", || {
        let n = notices(&sup);
        (n.len() == 2).then_some(n)
    });
    assert!(
        told.iter()
            .all(|t| t.contains("project-x-watch") && !t.contains("numbers")),
        "{told:?}"
    );
    assert!(told[1].contains("to dora"), "{told:?}");
}

#[test]
fn the_content_filter_blocks_mail_and_the_smtp_sender_gets_a_report() {
    let sink = common::Sink::start(&[]);
    let cert = common::Cert::new();
    let node = common::node_with_smtp_tls(&sink, &cert, &[]);
    let a = &node.admin;
    a.add_user("sup", &[("im", "sup")]);
    let alice = a.add_user("alice", &[("im", "alice"), ("email", "alice@example.org")]);
    let bob = a.add_user("bob", &[("im", "bob")]);
    project_x(a);
    // alice mails bob (logged in): the mail becomes text, the filter blocks
    // it, and alice gets a DSN saying so.
    let mut args = common::auth_args("PLAIN", "alice", &alice.token).to_vec();
    args.extend([
        "--from",
        "alice@example.org",
        "--to",
        "bob@localhost",
        "--header",
        "Subject: plans",
        "--body",
        "Attached: the Project X budget.",
    ]);
    let (ok, out) = common::swaks(&node, &args);
    assert!(ok, "{out}");
    let txn = out
        .lines()
        .find_map(|l| l.split("queued as ").nth(1))
        .unwrap()
        .trim()
        .to_string();
    let st = alice.expect_status(&txn, "blocked");
    assert_eq!(
        st["attempts"][0]["processors"],
        json!(["proc-email-1", "proc-filter-1"]),
        "{st}"
    );
    let dsn = sink.wait_for(1).remove(0);
    assert!(
        dsn.contains("To: <alice@example.org>") && dsn.contains("policy:project-x"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.7.1"), "{dsn}");
    assert!(bob.inbox().is_empty());

    // A card number in a mail is held; the reviewer reads the mail and
    // rejects it; alice gets a DSN saying so.
    let cards = json!({"priority": 80, "stage": "content",
        "when": {"regex": "\\b\\d{4}-\\d{4}-\\d{4}-\\d{4}\\b"},
        "action": {"type": "quarantine", "reason": "a card number"}});
    assert_eq!(a.put("/v1/admin/policy/rules/cards", &cards).0, 201);
    let mut args = common::auth_args("PLAIN", "alice", &alice.token).to_vec();
    args.extend([
        "--from",
        "alice@example.org",
        "--to",
        "bob@localhost",
        "--header",
        "Subject: payment",
        "--body",
        "Use 1234-5678-9012-3456 for it.",
    ]);
    let (ok, out) = common::swaks(&node, &args);
    assert!(ok, "accepted, then held: {out}");
    let txn = out
        .lines()
        .find_map(|l| l.split("queued as ").nth(1))
        .unwrap()
        .trim()
        .to_string();
    let st = alice.expect_status(&txn, "quarantined");
    assert_eq!(st["reason"], "policy:cards", "{st}");
    let (status, one) = a.get(&format!("/v1/admin/quarantine/{txn}"));
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["subject"], "payment", "{one}");
    assert!(
        one["content"]
            .as_str()
            .unwrap()
            .contains("1234-5678-9012-3456"),
        "the reviewer reads the mail: {one}"
    );
    let (status, v) = a.post(&format!("/v1/admin/quarantine/{txn}/reject"), &json!({}));
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("blocked")),
        "{v}"
    );
    let dsn = sink.wait_for(2).remove(1);
    assert!(
        dsn.contains("To: <alice@example.org>") && dsn.contains("quarantine_rejected"),
        "{dsn}"
    );
    assert!(bob.inbox().is_empty());
}

/// Held messages (COMPLIANCE.md "quarantine"): a card number over IM is
/// held by the content filter, shown to the reviewer with its content,
/// released and delivered; a message to a phone is held by the broker
/// before any attempt (the sender hears `quarantined` at once), one
/// rejected (blocked, nothing reaches the SMSC) and one released (the
/// real SMSC gets it).
#[test]
fn quarantined_messages_wait_for_a_reviewer_over_im_and_sms() {
    let smsc = common::Smsc::start();
    let node = common::node_with_smsc(&smsc, &[]);
    let a = &node.admin;
    let alice = a.add_user("alice", &[("im", "alice")]);
    let bob = a.add_user("bob", &[("im", "bob")]);
    a.add_user("dora", &[("sms", "+4915100000081")]);
    let cards = json!({"priority": 80, "stage": "content",
        "when": {"regex": "\\b\\d{4}-\\d{4}-\\d{4}-\\d{4}\\b"},
        "action": {"type": "quarantine", "reason": "a card number"}});
    assert_eq!(a.put("/v1/admin/policy/rules/cards", &cards).0, 201);
    let texts = json!({"priority": 70, "stage": "meta",
        "when": {"from": {"user": "alice"}, "to": {"user": "dora"}},
        "action": {"type": "quarantine", "reason": "texts to dora are reviewed"}});
    assert_eq!(a.put("/v1/admin/policy/rules/texts", &texts).0, 201);

    // IM, content stage: accepted and released, then held by the filter.
    let txn = alice.send("bob", "my card is 1234-5678-9012-3456");
    let st = alice.expect_status(&txn, "quarantined");
    assert_eq!(st["reason"], "policy:cards", "{st}");
    assert_eq!(st["attempts"][0]["outcome"], "quarantined", "{st}");
    assert_eq!(
        st["policy"],
        json!([{"rule": "cards", "version": 1, "action": "quarantine"}]),
        "{st}"
    );
    let (status, list) = a.get("/v1/admin/quarantine");
    assert_eq!(status, 200, "{list}");
    let held = list["messages"].as_array().unwrap();
    assert_eq!(held.len(), 1, "{list}");
    assert_eq!(
        (held[0]["txn"].as_str(), held[0]["stage"].as_str()),
        (Some(txn.as_str()), Some("content"))
    );
    assert_eq!(held[0]["rule_reason"], "a card number");
    assert!(held[0].get("content").is_none(), "not in the list: {list}");
    let (status, one) = a.get(&format!("/v1/admin/quarantine/{txn}"));
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["content"], "my card is 1234-5678-9012-3456");
    assert_eq!(
        alice.get("/v1/admin/quarantine").0,
        403,
        "a user token is not the admin's"
    );
    assert!(bob.inbox().is_empty(), "held, not delivered");
    let (status, v) = a.post(&format!("/v1/admin/quarantine/{txn}/release"), &json!({}));
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("released")),
        "{v}"
    );
    let st = alice.expect_status(&txn, "delivered");
    let kinds: Vec<&str> = (st["events"].as_array().unwrap().iter())
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"quarantine:released:admin"), "{kinds:?}");
    assert_eq!(st["attempts"].as_array().unwrap().len(), 2, "{st}");
    assert_eq!(bob.inbox()[0]["body"], "my card is 1234-5678-9012-3456");
    let (status, v) = a.post(&format!("/v1/admin/quarantine/{txn}/release"), &json!({}));
    assert_eq!(
        (status, code(&v)),
        (409, "not_quarantined"),
        "released once: {v}"
    );
    let (status, v) = a.post(
        "/v1/admin/quarantine/01ARZ3NDEKTSV4RRFFQ69G5FAV/reject",
        &json!({}),
    );
    assert_eq!((status, code(&v)), (404, "not_found"), "{v}");

    // SMS, meta stage: the sender hears it is held; a rejection blocks it.
    let (status, v) = alice.post("/v1/messages", &json!({"to": "dora", "body": "first text"}));
    assert_eq!(
        (status, v["status"].as_str(), v["reason"].as_str()),
        (202, Some("quarantined"), Some("policy:texts")),
        "{v}"
    );
    assert!(v.get("route").is_none(), "{v}");
    let first = v["txn"].as_str().unwrap().to_string();
    let (ok, out, err) = common::cli(&node, &["quarantine", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&first) && out.contains("policy:texts") && out.contains("meta"),
        "{out}"
    );
    let (ok, out, err) = common::cli(&node, &["quarantine", "reject", &first]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("{first}: blocked"));
    let st = alice.expect_status(&first, "blocked");
    assert_eq!(st["reason"], "quarantine_rejected", "{st}");
    assert!(st["attempts"].as_array().unwrap().is_empty(), "{st}");

    let second = alice.post(
        "/v1/messages",
        &json!({"to": "dora", "body": "second text"}),
    );
    let second = second.1["txn"].as_str().unwrap().to_string();
    let (ok, out, err) = common::cli(&node, &["quarantine", "release", &second]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("{second}: released"));
    alice.expect_status(&second, "delivered");
    let submitted = smsc.wait_submits("4915100000081", 1);
    assert_eq!(submitted.len(), 1, "only the released one: {submitted:?}");
    assert_eq!(submitted[0]["text"], "second text");
    let (_, list) = a.get("/v1/admin/quarantine");
    assert_eq!(list["messages"], json!([]), "{list}");
}
