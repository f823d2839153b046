//! Running one remote member in this process: `gateway` (a medium's
//! gateway) and `processor` (a content processor), each connected to a node
//! over MIAP/TCP (TLS with `--tls-ca`).

use std::path::PathBuf;

use anyhow::{anyhow, bail};

use switchboard_core::protocol::MediumKind;

use super::{GatewayArgs, LinkArgs, ProcessorArgs};
use crate::client::Target;

impl LinkArgs {
    /// The key file (checked against --member) and the TLS wrap, if any.
    fn open(
        &self,
    ) -> anyhow::Result<(
        crate::remote::KeyFile,
        Option<switchboard_actors::transport::Wrap>,
    )> {
        let key = crate::remote::KeyFile::read(&self.key_file)?;
        if key.member != self.member {
            bail!(
                "the key file {} is for member {}, not {}",
                self.key_file.display(),
                key.member,
                self.member
            );
        }
        let tls = match &self.tls_ca {
            None => None,
            Some(ca) => {
                let host = self
                    .connect
                    .rsplit_once(':')
                    .map_or(self.connect.as_str(), |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = self.tls_name.clone().unwrap_or_else(|| host.to_string());
                Some(crate::tls::miap_client(ca, &name)?)
            }
        };
        Ok((key, tls))
    }
}

pub(super) fn gateway(t: &Target, g: &GatewayArgs) -> anyhow::Result<()> {
    let cfg = t.config()?;
    crate::logging::init(&cfg);
    let medium: MediumKind = g
        .medium
        .parse()
        .map_err(|_| anyhow!("--medium {:?}: use im, email, sms or fax", g.medium))?;
    let (_, tls) = g.link.open()?;
    let r = crate::remote::RemoteGateway {
        medium,
        connect: g.link.connect.clone(),
        key_file: g.link.key_file.clone(),
        tls,
        data: g
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("switchboard-gateway-{}", g.link.member))),
    };
    actix_rt::System::new().block_on(crate::remote::run(cfg, r))
}

pub(super) fn processor(t: &Target, p: &ProcessorArgs) -> anyhow::Result<()> {
    let cfg = t.config()?;
    crate::logging::init(&cfg);
    if crate::processors::spec_of(&p.kind).is_none() {
        bail!(
            "--kind {:?}: use {}",
            p.kind,
            crate::processors::KINDS.join(", ")
        );
    }
    let (key, tls) = p.link.open()?;
    actix_rt::System::new().block_on(crate::remote::run_processor(
        cfg,
        &p.kind,
        &p.link.connect,
        key,
        tls,
    ))
}
