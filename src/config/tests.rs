//! The configuration's loading, layering, checks and documentation.

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>()
        .into_iter()
}

#[test]
fn default_loads() {
    let c = Config::load_with(None, env(&[])).unwrap();
    assert_eq!(c.http.listen, "127.0.0.1:8080");
    assert_eq!(c.broker.shards, 2);
}

#[test]
fn env_overrides_every_kind_of_value() {
    let c = Config::load_with(
        None,
        env(&[
            ("SWITCHBOARD_HTTP__LISTEN", "127.0.0.1:0"),
            ("SWITCHBOARD_BROKER__SHARDS", "4"),
            (
                "SWITCHBOARD_EMAIL__LOCAL_DOMAINS",
                r#"["example.com","example.org"]"#,
            ),
            ("SWITCHBOARD_DATA__DIR", "/tmp/x y"),
            ("SWITCHBOARD_ADMIN_TOKEN", "ignored: not a config key"),
        ]),
    )
    .unwrap();
    assert_eq!(c.http.listen, "127.0.0.1:0");
    assert_eq!(c.broker.shards, 4);
    assert_eq!(c.email.local_domains, vec!["example.com", "example.org"]);
    assert_eq!(c.data.dir, PathBuf::from("/tmp/x y"));
}

#[test]
fn bad_keys_are_named() {
    let e = Config::load_with(None, env(&[("SWITCHBOARD_HTTP__LISTN", "x")])).unwrap_err();
    assert!(e.to_string().contains("listn"), "{e}");
    let e = Config::load_with(None, env(&[("SWITCHBOARD_NOPE__X", "1")])).unwrap_err();
    assert!(e.to_string().contains("nope.x"), "{e}");
    let e = Config::load_with(None, env(&[("SWITCHBOARD_BROKER__SHARDS", "0")])).unwrap_err();
    assert!(e.to_string().starts_with("broker.shards"), "{e}");
    let e = Config::load_with(None, env(&[("SWITCHBOARD_BROKER__SHARDS", "many")])).unwrap_err();
    assert!(
        e.to_string().starts_with("broker.shards: invalid type"),
        "{e}"
    );
    let e = Config::load_with(None, env(&[("SWITCHBOARD_HTTP__LISTEN", "nowhere")])).unwrap_err();
    assert!(e.to_string().starts_with("http.listen"), "{e}");
    let e = Config::load_with(None, env(&[("SWITCHBOARD_LOG__FORMAT", "xml")])).unwrap_err();
    assert!(e.to_string().starts_with("log.format"), "{e}");
}

#[test]
fn every_key_of_the_default_is_documented() {
    // Each key line follows a comment, directly or through the key
    // lines of its group (`tls_cert`/`tls_key`).
    let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
    let is_key = |l: &str| !l.starts_with('#') && !l.starts_with('[') && l.contains('=');
    let mut keys = 0;
    for (i, l) in lines.iter().enumerate() {
        if !is_key(l) {
            continue;
        }
        keys += 1;
        let above = lines[..i].iter().rev().find(|p| !is_key(p));
        assert!(
            above.is_some_and(|p| p.starts_with('#')),
            "config/default.toml: {l:?} has no comment"
        );
    }
    assert!(keys >= 40, "{keys} keys");
}

#[test]
fn changed_keys_names_what_differs() {
    let load = |vars: &[(&str, &str)]| {
        Config::load_with(
            None,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap()
    };
    let a = load(&[]);
    assert!(a.changed_keys(&a).is_empty());
    let b = load(&[
        ("SWITCHBOARD_LOG__LEVEL", "debug"),
        ("SWITCHBOARD_BROKER__SHARDS", "3"),
    ]);
    assert_eq!(a.changed_keys(&b), ["broker.shards", "log.level"]);
    assert!(RELOADABLE.contains(&"log.level") && !RELOADABLE.contains(&"broker.shards"));
}

#[test]
fn sms_settings_are_checked_when_enabled() {
    let on = |k: &str, v: &str| {
        Config::load_with(None, env(&[("SWITCHBOARD_SMS__ENABLED", "true"), (k, v)]))
    };
    assert!(on("SWITCHBOARD_SMS__WINDOW", "10").is_ok());
    assert!(on("SWITCHBOARD_SMS__SOURCE", "+4930123456").is_ok());
    for (key, value, name) in [
        ("SWITCHBOARD_SMS__SMSC", "nowhere", "sms.smsc"),
        ("SWITCHBOARD_SMS__SYSTEM_ID", "", "sms.system_id"),
        (
            "SWITCHBOARD_SMS__SYSTEM_ID",
            "a-very-long-system-id",
            "sms.system_id",
        ),
        ("SWITCHBOARD_SMS__PASSWORD", "ninechars", "sms.password"),
        ("SWITCHBOARD_SMS__WINDOW", "0", "sms.window"),
        ("SWITCHBOARD_SMS__SOURCE", "Switchboard Inc", "sms.source"),
        ("SWITCHBOARD_SMS__SOURCE", "TooLongSender", "sms.source"),
        ("SWITCHBOARD_SMS__RECEIPTS", "sometimes", "sms.receipts"),
        ("SWITCHBOARD_SMS__ENQUIRE_LINK_S", "0", "sms.enquire_link_s"),
        (
            "SWITCHBOARD_SMS__DATA_CODING_0",
            "utf8",
            "sms.data_coding_0",
        ),
        ("SWITCHBOARD_SMS__DATA_CODING_1", "GSM", "sms.data_coding_1"),
    ] {
        let e = on(key, value).unwrap_err();
        assert!(e.to_string().starts_with(name), "{key}={value}: {e}");
    }
    // Off, the section is not checked.
    assert!(Config::load_with(None, env(&[("SWITCHBOARD_SMS__WINDOW", "0")])).is_ok());
}

#[test]
fn miap_tls_needs_both_files() {
    let e = Config::load_with(None, env(&[("SWITCHBOARD_MIAP__TLS_KEY", "/k.pem")])).unwrap_err();
    assert!(e.to_string().starts_with("miap.tls_cert"), "{e}");
    let both = [
        ("SWITCHBOARD_MIAP__TLS_CERT", "/c.pem"),
        ("SWITCHBOARD_MIAP__TLS_KEY", "/k.pem"),
    ];
    assert!(Config::load_with(None, env(&both)).is_ok());
}

#[test]
fn email_tls_settings_are_checked() {
    let on = |pairs: &[(&str, &str)]| {
        let mut v = vec![("SWITCHBOARD_EMAIL__ENABLED", "true")];
        v.extend_from_slice(pairs);
        Config::load_with(None, env(&v))
    };
    assert!(on(&[("SWITCHBOARD_EMAIL__RELAY_TLS", "required")]).is_ok());
    assert!(on(&[(
        "SWITCHBOARD_EMAIL__DSN_VERIFIED_DOMAINS",
        r#"["partner.example"]"#
    )])
    .is_ok());
    for (pairs, name) in [
        (
            &[("SWITCHBOARD_EMAIL__TLS_CERT", "/c.pem")][..],
            "email.tls_cert",
        ),
        (
            &[("SWITCHBOARD_EMAIL__REQUIRE_TLS", "true")][..],
            "email.require_tls",
        ),
        (
            &[("SWITCHBOARD_EMAIL__RELAY_TLS", "maybe")][..],
            "email.relay_tls",
        ),
        (
            &[("SWITCHBOARD_EMAIL__DSN_PER_HOUR", "0")][..],
            "email.dsn_per_hour",
        ),
        (
            &[("SWITCHBOARD_EMAIL__MAX_FANOUT_BYTES", "1024")][..],
            "email.max_fanout_bytes",
        ),
        (
            &[("SWITCHBOARD_EMAIL__DSN_PER_HOUR_PER_ADDRESS", "0")][..],
            "email.dsn_per_hour_per_address",
        ),
        (
            &[(
                "SWITCHBOARD_EMAIL__DSN_VERIFIED_DOMAINS",
                r#"["a@b.example"]"#,
            )][..],
            "email.dsn_verified_domains",
        ),
    ] {
        let e = on(pairs).unwrap_err();
        assert!(e.to_string().starts_with(name), "{pairs:?}: {e}");
    }
}

#[test]
fn a_file_overrides_the_default_and_unknown_keys_fail() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "[broker]\nshards = 3\n").unwrap();
    assert_eq!(
        Config::load_with(Some(&f), env(&[])).unwrap().broker.shards,
        3
    );
    std::fs::write(&f, "[broker]\nshardz = 3\n").unwrap();
    let e = Config::load_with(Some(&f), env(&[])).unwrap_err();
    assert!(e.to_string().contains("shardz"), "{e}");
    std::fs::write(&f, "[broker\n").unwrap();
    assert!(matches!(
        Config::load_with(Some(&f), env(&[])),
        Err(ConfigError::Parse { .. })
    ));
}

/// The `[cluster]` keys are checked even while cluster mode is off, each
/// error naming its key.
#[test]
fn cluster_keys_are_checked_whether_or_not_cluster_mode_is_on() {
    let c = Config::load_with(None, env(&[])).unwrap();
    assert_eq!(c.cluster.nats_urls, vec!["nats://127.0.0.1:4222"]);
    assert_eq!(
        (
            c.cluster.replicas,
            c.cluster.heartbeat_s,
            c.cluster.ack_wait_s
        ),
        (3, 3, 30)
    );
    assert!(
        sections::valid_node_id(&c.cluster.node()),
        "{}",
        c.cluster.node()
    );
    let named = Config::load_with(
        None,
        env(&[
            ("SWITCHBOARD_CLUSTER__NODE_ID", "n-2.east"),
            ("SWITCHBOARD_CLUSTER__ENABLED", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(named.cluster.node(), "n-2.east");
    assert!(named.cluster.enabled);
    let s = named.cluster.settings();
    assert_eq!((s.node_id.as_str(), s.replicas), ("n-2.east", 3));
    assert_eq!(s.ack_wait, std::time::Duration::from_secs(30));
    assert_eq!((s.tls_ca, s.creds), (None, None));
    // Bad keys are refused with cluster mode on as well.
    let e = Config::load_with(
        None,
        env(&[
            ("SWITCHBOARD_CLUSTER__ENABLED", "true"),
            ("SWITCHBOARD_CLUSTER__REPLICAS", "9"),
        ]),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("cluster.replicas"), "{e}");
    for (k, v, key) in [
        ("NODE_ID", "a b", "cluster.node_id"),
        ("NATS_URLS", "[]", "cluster.nats_urls"),
        (
            "NATS_URLS",
            r#"["http://127.0.0.1:4222"]"#,
            "cluster.nats_urls",
        ),
        ("NATS_URLS", r#"["nats://nowhere"]"#, "cluster.nats_urls"),
        ("REPLICAS", "0", "cluster.replicas"),
        ("REPLICAS", "7", "cluster.replicas"),
        ("HEARTBEAT_S", "0", "cluster.heartbeat_s"),
        ("ACK_WAIT_S", "3", "cluster.ack_wait_s"),
    ] {
        let var = format!("SWITCHBOARD_CLUSTER__{k}");
        let e = Config::load_with(None, env(&[(var.as_str(), v)])).unwrap_err();
        assert!(e.to_string().starts_with(key), "{k}={v}: {e}");
    }
    let ok = Config::load_with(
        None,
        env(&[(
            "SWITCHBOARD_CLUSTER__NATS_URLS",
            r#"["nats://10.0.0.1:4222", "tls://nats.example.org:4222"]"#,
        )]),
    )
    .unwrap();
    assert_eq!(ok.cluster.nats_urls.len(), 2);
}

/// A file from an earlier build with `[cluster] nats_url = "…"` still
/// loads: the one URL becomes the list.
#[test]
fn an_earlier_builds_single_nats_url_becomes_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "[cluster]\nnats_url = \"nats://10.1.2.3:4222\"\n").unwrap();
    let c = Config::load_with(Some(&f), env(&[])).unwrap();
    assert_eq!(c.cluster.nats_urls, vec!["nats://10.1.2.3:4222"]);
    // Both at once is ambiguous: the old key is then unknown.
    std::fs::write(
        &f,
        "[cluster]\nnats_url = \"nats://a:1\"\nnats_urls = [\"nats://b:2\"]\n",
    )
    .unwrap();
    let e = Config::load_with(Some(&f), env(&[])).unwrap_err();
    assert!(e.to_string().contains("nats_url"), "{e}");
}

#[test]
fn archive_keys_are_checked_and_the_fingerprints_kept_apart() {
    let c = Config::load_with(None, env(&[("SWITCHBOARD_DATA__DIR", "/d")])).unwrap();
    assert!(!c.archive.enabled);
    let data = std::path::Path::new("/d");
    assert_eq!(c.archive.dir(data), data.join("archive"));
    assert_eq!(
        c.archive.fingerprints(data),
        data.join("archive-fingerprints")
    );
    assert_eq!(c.archive.key_file(data), data.join("archive.key"));
    for (k, v, key) in [
        ("CHECKPOINT_EVERY", "0", "archive.checkpoint_every"),
        (
            "CHECKPOINT_INTERVAL_S",
            "0",
            "archive.checkpoint_interval_s",
        ),
        (
            "FINGERPRINTS_DIR",
            "/d/archive/fp",
            "archive.fingerprints_dir",
        ),
        ("DIR", "/d/archive-fingerprints", "archive.fingerprints_dir"),
    ] {
        let var = format!("SWITCHBOARD_ARCHIVE__{k}");
        let e = Config::load_with(
            None,
            env(&[("SWITCHBOARD_DATA__DIR", "/d"), (var.as_str(), v)]),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with(key), "{k}={v}: {e}");
    }
}
