//! `--target tcp`: a running node's MIAP port — this process is a remote
//! gateway (member `bench-<pid>`, created and revoked through the admin API)
//! originating over MIAP/TCP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::Context as _;
use serde_json::json;

use switchboard_core::protocol::MediumKind;

use super::api::{add_im_user, admin};
use super::inproc::{pump, Observer};
use super::report::{node_store_counts, Tally};
use super::{originate, BenchArgs};
use crate::config::Config;

/// A medium that delivers nothing: the bench gateway only originates (and
/// reports itself down, so nothing is routed to it).
struct Null;

impl switchboard_actors::medium::Medium for Null {
    fn kind(&self) -> MediumKind {
        MediumKind::Fax
    }
    fn health(&self) -> switchboard_actors::medium::Health {
        switchboard_actors::medium::Health {
            up: false,
            detail: "the bench originates only".into(),
        }
    }
    fn deliver(
        &mut self,
        _: switchboard_actors::medium::Delivery,
    ) -> switchboard_actors::medium::futures_like::LocalBoxFuture<
        'static,
        Result<switchboard_actors::medium::MediumAck, switchboard_actors::medium::NonDelivery>,
    > {
        Box::pin(async {
            Err(switchboard_actors::medium::NonDelivery(
                "the bench gateway delivers nothing".into(),
            ))
        })
    }
}

pub(super) fn tcp(
    args: &BenchArgs,
    cfg: &Config,
    tally: &Tally,
) -> anyhow::Result<(Instant, Duration)> {
    use switchboard_actors::bus::BrokerHandle;
    use switchboard_actors::gateway::{Gateway, GatewayConfig};
    use switchboard_actors::registry::MemberRegistry;
    use switchboard_actors::transport::{Uplink, UplinkConfig};
    use switchboard_core::protocol::{MemberId, SecretKey, SystemClock};
    let connect = args
        .connect
        .clone()
        .context("--target tcp needs --connect HOST:PORT (the node's MIAP port)")?;
    let api = admin(args)?;
    let stamp = std::process::id();
    for id in ["bench-a", "bench-b"] {
        // Already there from an earlier run is fine.
        let _ = add_im_user(&api, id);
    }
    let member = args
        .member
        .clone()
        .unwrap_or_else(|| format!("bench-{stamp}"));
    let k = match api.put(
        &format!("/v1/admin/members/{member}"),
        &json!({"medium": "fax"}),
        true,
    ) {
        Ok(k) => k,
        // A kept member from an earlier run (`--member`): a fresh key; the
        // old one stays valid for the grace period.
        Err(_) if args.member.is_some() => api
            .post(&format!("/v1/admin/members/{member}/rotate"), &json!({}))
            .with_context(|| format!("rotating the key of member {member}"))?,
        Err(e) => return Err(e),
    };
    let key = SecretKey::from_hex(k["key"].as_str().context("no key")?)
        .map_err(|e| anyhow::anyhow!("the member key: {}", e.code()))?;
    let temp = tempfile::tempdir()?;
    let dir = args
        .gateway_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let result = actix_rt::System::new().block_on(async {
        let store = crate::node::open_store(&dir)?;
        let observer = Observer(tally.clone()).start();
        let ctx = Context::<Gateway<Null>>::new();
        let gw = ctx.address();
        let uplink = Uplink::new(
            UplinkConfig {
                connect,
                broker_id: MemberId::new(k["broker"].as_str().unwrap_or("broker-1")),
                max_frame: cfg.miap.max_frame_bytes,
            },
            gw.clone().recipient(),
            gw.clone().recipient(),
        )
        .with_counter(tally.wire.clone())
        .with_store(store.clone())
        .start();
        let members = MemberRegistry::default();
        members.set_fallback(uplink.clone().recipient());
        let g = Gateway::new(
            GatewayConfig {
                id: MemberId::new(member.clone()),
                key_id: k["key_id"].as_u64().unwrap_or(1) as u32,
                key,
                broker_id: k["broker"].as_str().unwrap_or("broker-1").to_string(),
                session_ttl_ms: cfg.miap.session_ttl_s * 1000,
            },
            Null,
            BrokerHandle::new(vec![uplink.recipient()]),
            members,
            store,
            Arc::new(SystemClock),
        )
        .with_receipts(observer.recipient());
        let gw = ctx.run(g);
        crate::node::wait_logged_in(&gw).await?;
        tally.store_from(node_store_counts(&args.url));
        pump(gw, args, tally, &|i| originate(args.size, i)).await
    });
    tally.store_to_node(&args.url);
    if args.member.is_none() {
        let _ = api.delete(&format!("/v1/admin/members/{member}"));
    }
    result
}
