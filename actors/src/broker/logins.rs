//! TSCS logins at the broker: a local member's `Login` frame, and a login
//! that arrived on a TCP link (on success the link becomes the member's way
//! in; a failed one is answered on the link alone).

use switchboard_core::protocol::{Frame, Login, MemberId, ProtocolError, RefuseReason};

use super::BrokerShard;
use crate::bus::{LinkLogin, MiapFrame};

impl BrokerShard {
    /// A member's login (also its renewal).
    pub(super) fn login(&mut self, from: &MemberId, login: Login) -> Result<(), ProtocolError> {
        if &login.member != from {
            return Err(ProtocolError::WrongParty);
        }
        let now = self.now();
        let (ack, session) = self.shared.accept_login(&login, now)?;
        tracing::info!(member = %from, key_id = login.key_id, "member logged in");
        // The session exists before the member can use it: another shard
        // may see the member's next frame before this handler returns.
        self.shared.install_session(session, now);
        self.shared.send(from, Frame::LoginAck(ack));
        Ok(())
    }

    /// A login on a TCP link.
    pub(super) fn link_login(&mut self, m: LinkLogin) {
        let LinkLogin {
            login,
            link,
            link_id,
            medium,
        } = m;
        let now = self.now();
        let member = login.member.clone();
        match self.shared.accept_login(&login, now) {
            Ok((ack, session)) => {
                self.shared
                    .deps
                    .members
                    .attach_link(member.clone(), medium, link, link_id, now);
                tracing::info!(member = %member, key_id = login.key_id, link = link_id, "member logged in over a link");
                self.shared.install_session(session, now);
                self.shared.send(&member, Frame::LoginAck(ack));
            }
            Err(error) => {
                self.shared.count_refusal(error);
                tracing::warn!(member = %member, reason = error.code(), link = link_id, "refused a login on a link");
                link.do_send(MiapFrame {
                    from: self.shared.id.clone(),
                    frame: Frame::Refused(RefuseReason { error, txn: None }),
                });
            }
        }
    }
}
