//! The fax medium — **a stub**: there is no phone line. Outbound, a message
//! is rendered to a PDF (printpdf) in `SPOOL/outbox/<txn>.pdf` with a JSON
//! sidecar `<txn>.json` (`{txn, to, from, subject, pages}`), and is reported
//! delivered once both files are on disk. Inbound ([`inbox`]), a file
//! `SPOOL/inbox/<from-number>__<anything>.txt` whose first line is `To: ID`
//! becomes a message from that number to user `ID`.

pub mod inbox;

use std::path::PathBuf;

use switchboard_actors::medium::futures_like::LocalBoxFuture;
use switchboard_actors::medium::{Delivery, Health, Medium, MediumAck, NonDelivery};
use switchboard_core::protocol::MediumKind;

/// The member id of the fax gateway.
pub const MEMBER_ID: &str = "gw-fax-1";

/// The fax stub.
pub struct FaxMedium {
    spool: PathBuf,
}

impl FaxMedium {
    /// A fax stub spooling under `spool` (creates `outbox/` and `inbox/`).
    ///
    /// # Errors
    /// When the spool directories cannot be created.
    pub fn new(spool: PathBuf) -> std::io::Result<Self> {
        for d in ["outbox", "inbox"] {
            std::fs::create_dir_all(spool.join(d))?;
        }
        Ok(Self { spool })
    }
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Medium for FaxMedium {
    fn kind(&self) -> MediumKind {
        MediumKind::Fax
    }

    fn health(&self) -> Health {
        let up = self.spool.join("outbox").is_dir();
        Health {
            up,
            detail: format!("stub: PDFs in {}", self.spool.join("outbox").display()),
        }
    }

    fn deliver(&mut self, d: Delivery) -> LocalBoxFuture<'static, Result<MediumAck, NonDelivery>> {
        let outbox = self.spool.join("outbox");
        Box::pin(async move {
            let done = actix_rt::task::spawn_blocking(move || -> Result<(), String> {
                let pdf_path = outbox.join(format!("{}.pdf", d.txn));
                if pdf_path.exists() {
                    return Ok(()); // idempotent on txn
                }
                // A PDF from the text-to-fax processor goes as it is; text
                // (no processor was live) is rendered here.
                let (pdf, pages) = match crate::content::pdf::pages(&d.content_type) {
                    Some(n) if d.content_type.starts_with(crate::content::pdf::PDF) => {
                        (d.content.clone(), n)
                    }
                    _ => {
                        let text = crate::content::text_of(&d.content_type, &d.content);
                        let header = crate::content::pdf::header(
                            &d.route.address,
                            &d.from,
                            d.subject.as_deref(),
                        );
                        crate::content::pdf::pdf(&header, &text)
                            .map_err(|e| format!("cannot render the fax: {e}"))?
                    }
                };
                let sidecar = serde_json::json!({
                    "txn": d.txn.to_string(),
                    "to": d.route.address,
                    "from": d.from,
                    "subject": d.subject,
                    "pages": pages,
                });
                let json_path = outbox.join(format!("{}.json", d.txn));
                write_atomically(&json_path, sidecar.to_string().as_bytes())
                    .map_err(|e| e.to_string())?;
                write_atomically(&pdf_path, &pdf).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| NonDelivery(format!("fax spool failed: {e}")))?;
            done.map(|()| MediumAck::Delivered).map_err(NonDelivery)
        })
    }
}
