//! Inbound faxes (stub): every second, files in `SPOOL/inbox` named
//! `<from-number>__<anything>.txt` (or `.pdf`, read by its text layer)
//! become messages from that number to the user named in the first line,
//! `To: ID`. A handled file moves to
//! `inbox/done/`; a refused one to `inbox/rejected/` with a `.reason` file
//! saying why; one that could not be stored stays for the next round.

use std::path::{Path, PathBuf};
use std::time::Duration;

use actix::Addr;

use switchboard_actors::gateway::{Gateway, Originate, OriginateError};
use switchboard_core::directory::Directory;
use switchboard_core::protocol::{Address, MediumKind, Priority, To};

use super::FaxMedium;

/// The text of a spool file: a `.txt` as it is, a `.pdf` by its text layer.
///
/// # Errors
/// Another kind of file, or a PDF without readable text.
pub fn text_of(name: &str, bytes: &[u8]) -> Result<String, String> {
    if name.ends_with(".txt") {
        return Ok(String::from_utf8_lossy(bytes).into_owned());
    }
    if !name.ends_with(".pdf") {
        return Err("only .txt and .pdf faxes are read".into());
    }
    let doc = printpdf::lopdf::Document::load_mem(bytes)
        .map_err(|e| format!("not a readable PDF: {e}"))?;
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    let text = doc
        .extract_text(&pages)
        .map_err(|e| format!("cannot read the PDF's text: {e}"))?;
    if text.trim().is_empty() {
        return Err(
            "the PDF has no text layer to read \"To: ID\" from (the stub does no OCR)".into(),
        );
    }
    Ok(text)
}

/// What a spool file says — (from, to, body) — or why it is refused.
pub fn parse(name: &str, content: &str) -> Result<(String, String, String), String> {
    let stem = name
        .strip_suffix(".txt")
        .or_else(|| name.strip_suffix(".pdf"))
        .ok_or("only .txt and .pdf faxes are read")?;
    let (from, _) = stem
        .split_once("__")
        .ok_or("the file name must be <from-number>__<anything>.txt (or .pdf)")?;
    let digits = from.strip_prefix('+').unwrap_or(from);
    if digits.len() < 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{from:?} is not a fax number"));
    }
    let mut lines = content.lines().skip_while(|l| l.trim().is_empty());
    let first = lines.next().unwrap_or_default();
    // The first word after `To:` (a cover page may say more on that line).
    let to = first
        .trim()
        .strip_prefix("To:")
        .and_then(|t| t.split_whitespace().next())
        .filter(|t| switchboard_core::directory::profile::valid_user_id(t))
        .ok_or("the first line must be \"To: ID\"")?;
    let body: Vec<&str> = lines.collect();
    Ok((
        from.to_string(),
        to.to_string(),
        body.join("\n").trim().to_string(),
    ))
}

fn park(path: &Path, dir: &str, reason: Option<&str>) {
    let Some(parent) = path.parent() else { return };
    let target_dir = parent.join(dir);
    let _ = std::fs::create_dir_all(&target_dir);
    let Some(name) = path.file_name() else { return };
    let target = target_dir.join(name);
    if let Some(r) = reason {
        let _ = std::fs::write(target.with_extension("reason"), r);
    }
    let _ = std::fs::rename(path, target);
}

/// Polls `inbox` until the task is dropped.
pub async fn poll(
    inbox: PathBuf,
    gateway: Addr<Gateway<FaxMedium>>,
    directory: Directory,
    expires_in_ms: u64,
) {
    let mut tick = actix_rt::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let dir = inbox.clone();
        let files = actix_rt::task::spawn_blocking(move || {
            let mut v: Vec<(PathBuf, Result<String, String>)> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e != "tmp"))
                        .map(|p| {
                            let name = p
                                .file_name()
                                .and_then(|n| n.to_str())
                                .unwrap_or_default()
                                .to_string();
                            let content = std::fs::read(&p)
                                .map_err(|e| e.to_string())
                                .and_then(|b| text_of(&name, &b));
                            (p, content)
                        })
                        .collect()
                })
                .unwrap_or_default();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        })
        .await
        .unwrap_or_default();
        for (path, content) in files {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let parsed = content.and_then(|c| parse(&name, &c));
            let (from, to, body) = match parsed {
                Ok(p) => p,
                Err(why) => {
                    tracing::info!(file = %name, reason = %why, "fax refused");
                    park(&path, "rejected", Some(&why));
                    continue;
                }
            };
            let sender = Address::new(MediumKind::Fax, from);
            let o = Originate {
                sender_user: directory.user_for_address(&sender),
                sender,
                to: To::User(to),
                content: body.into_bytes(),
                content_type: "text/plain; charset=utf-8".into(),
                subject: Some(format!("Fax ({name})")),
                priority: Priority::Normal,
                expires_in_ms,
                receipt: false,
                // A crash between acceptance and moving the file to done/
                // must not send the fax twice.
                dedupe: Some(format!("fax-inbox:{name}")),
            };
            match gateway.send(o).await {
                Ok(Ok(acc)) => {
                    tracing::info!(file = %name, txn = %acc.txn, "fax received");
                    park(&path, "done", None);
                }
                Ok(Err(OriginateError::Duplicate(txn))) => {
                    tracing::info!(file = %name, txn = %txn, "fax already received");
                    park(&path, "done", None);
                }
                Ok(Err(OriginateError::Rejected(r))) => park(&path, "rejected", Some(&r.told())),
                other => {
                    tracing::warn!(file = %name, result = ?other.map(|r| r.map(|a| a.txn)), "fax not stored; retrying")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn spool_file_names_and_first_lines() {
        assert_eq!(
            parse("+4930123__x.txt", "To: bob\nhello\nworld\n"),
            Ok(("+4930123".into(), "bob".into(), "hello\nworld".into()))
        );
        assert!(parse("+4930123.txt", "To: bob\n").is_err(), "no __");
        assert!(parse("abc__x.txt", "To: bob\n").is_err(), "not a number");
        assert!(parse("+4930123__x.txt", "bob\n").is_err(), "no To:");
        assert!(
            parse("+4930123__x.txt", "To: B O B\n").is_err(),
            "not a user id"
        );
        assert_eq!(
            parse("+4930123__x.pdf", "\nTo: bob   (page 1 of 1)\nhi\n"),
            Ok(("+4930123".into(), "bob".into(), "hi".into())),
            "a cover line may say more"
        );
        assert!(parse("+4930123__x.doc", "To: bob\n").is_err());
    }

    #[test]
    fn pdf_faxes_are_read_by_their_text_layer() {
        let (pdf, _) = crate::content::pdf::pdf("To: bob", "Hello Bob,\nline two").unwrap();
        let text = super::text_of("+4930__a.pdf", &pdf).unwrap();
        assert_eq!(
            parse("+4930123__a.pdf", &text),
            Ok((
                "+4930123".into(),
                "bob".into(),
                "Hello Bob,\nline two".into()
            ))
        );
        assert!(super::text_of("+4930__a.pdf", b"%PDF-1.4 garbage").is_err());
        assert!(super::text_of("+4930__a.png", b"x").is_err());
    }
}
