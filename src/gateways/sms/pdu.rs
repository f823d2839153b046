//! SMPP on the wire for the ESME, on `rusmpp`'s PDU types.
//!
//! - [`PduCodec`] frames PDUs itself and hands each whole PDU to rusmpp, so
//!   a PDU that does not decode (garbage, a truncated body, a bad field) is
//!   [`Inbound::Undecodable`] — answered with `generic_nack` — without losing
//!   the stream; only a command length that cannot be right (under 16 octets
//!   or over the limit) ends the connection.
//! - [`segments`] turns a message into `submit_sm` short messages: GSM 7-bit
//!   (unpacked, `data_coding` 0) or UCS-2 (`data_coding` 8), concatenated
//!   with a UDH when longer than one SMS.
//! - [`parse_receipt`] reads a delivery receipt's text (SMPP 3.4 appendix B);
//!   [`ShortMessage::decode`] reads a mobile-originated one, in the
//!   [`Alphabets`] the SMSC uses for `data_coding` 0 and 1.

use std::io;

use rusmpp::decode::DecodeWithLength;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::Command;
use tokio_util::bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::content::gsm::{gsm_decode, gsm_encode, segment};

/// Largest PDU accepted from the SMSC (a `deliver_sm` with a 64 KiB
/// `message_payload` fits).
pub const MAX_PDU: usize = 70_000;
const HEADER: usize = 16;

/// `esm_class` bits.
pub const ESM_UDHI: u8 = 0x40;
/// `esm_class` message type: an SMSC delivery receipt.
pub const ESM_RECEIPT: u8 = 0x04;
const ESM_TYPE_MASK: u8 = 0x3C;

/// `data_coding` values used.
pub const DC_DEFAULT: u8 = 0x00;
/// IA5 (ASCII).
pub const DC_IA5: u8 = 0x01;
/// ISO-8859-1.
pub const DC_LATIN1: u8 = 0x03;
/// UCS-2, big-endian.
pub const DC_UCS2: u8 = 0x08;

/// How the octets of a short message under an ambiguous `data_coding` are
/// read: SMSCs differ (as Kannel's `alt-charset` knows). `data_coding` 0 is
/// "the SMSC default alphabet", usually GSM 03.38; 1 is IA5 (ASCII) by the
/// standard, but some SMSCs (the npm `smpp` package by default) send GSM
/// 03.38 septets under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// GSM 03.38, one unpacked septet per octet (`@` is 0x00).
    Gsm,
    /// ASCII (IA5); octets over 0x7F read as `?`.
    Ascii,
    /// ISO-8859-1.
    Latin1,
}

impl Alphabet {
    /// From `gsm`, `ascii` or `latin1`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gsm" => Some(Self::Gsm),
            "ascii" => Some(Self::Ascii),
            "latin1" => Some(Self::Latin1),
            _ => None,
        }
    }

    fn decode(self, body: &[u8]) -> String {
        match self {
            Self::Gsm => gsm_decode(body),
            Self::Ascii => body
                .iter()
                .map(|&b| if b.is_ascii() { char::from(b) } else { '?' })
                .collect(),
            Self::Latin1 => body.iter().map(|&b| char::from(b)).collect(),
        }
    }
}

/// The alphabets of `data_coding` 0 and 1 (`sms.data_coding_0`,
/// `sms.data_coding_1`); by default GSM 03.38 and ASCII, as SMPP 3.4 says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alphabets {
    /// `data_coding` 0.
    pub dc0: Alphabet,
    /// `data_coding` 1.
    pub dc1: Alphabet,
}

impl Default for Alphabets {
    fn default() -> Self {
        Self {
            dc0: Alphabet::Gsm,
            dc1: Alphabet::Ascii,
        }
    }
}

/// One PDU from the SMSC.
#[derive(Debug)]
pub enum Inbound {
    /// A PDU rusmpp decoded.
    Command(Box<Command>),
    /// A well-framed PDU that does not decode.
    Undecodable {
        /// Its `command_id`.
        command_id: u32,
        /// Its `sequence_number`.
        sequence: u32,
        /// Why.
        error: String,
    },
}

/// Frames SMPP PDUs (see the module docs).
#[derive(Debug)]
pub struct PduCodec {
    encoder: CommandCodec,
    max: usize,
}

impl Default for PduCodec {
    fn default() -> Self {
        Self {
            encoder: CommandCodec::new().with_max_length(MAX_PDU),
            max: MAX_PDU,
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder for PduCodec {
    type Item = Inbound;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, io::Error> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = be32(&src[..4]) as usize;
        if !(HEADER..=self.max).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "command_length {len} is outside {HEADER}..={}: the stream cannot be framed",
                    self.max
                ),
            ));
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let mut pdu = src.split_to(len);
        let command_id = be32(&pdu[4..8]);
        let sequence = be32(&pdu[12..16]);
        pdu.advance(4);
        Ok(Some(match Command::decode(&mut pdu, len - 4) {
            Ok((c, used)) if used == len - 4 => Inbound::Command(Box::new(c)),
            Ok((_, used)) => Inbound::Undecodable {
                command_id,
                sequence,
                error: format!("{} trailing octets", len - 4 - used),
            },
            Err(e) => Inbound::Undecodable {
                command_id,
                sequence,
                error: e.to_string(),
            },
        }))
    }
}

impl Encoder<Command> for PduCodec {
    type Error = io::Error;

    fn encode(&mut self, c: Command, dst: &mut BytesMut) -> Result<(), io::Error> {
        self.encoder
            .encode(&c, dst)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// One `submit_sm` short message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    /// `data_coding`.
    pub data_coding: u8,
    /// `esm_class` (UDHI when concatenated).
    pub esm_class: u8,
    /// The short message, UDH included.
    pub short_message: Vec<u8>,
}

/// The submit_sm short messages of a text already split into `parts` of
/// `encoding` (`gsm7` or `ucs2`, as the SMS processor outputs), with
/// concatenation reference `reference`.
///
/// # Errors
/// An unknown encoding, or a part that is not in its encoding or too long.
pub fn segments_of(
    encoding: &str,
    parts: &[String],
    reference: u8,
) -> Result<Vec<Segment>, String> {
    if parts.is_empty() {
        return Err("an SMS needs at least one segment".into());
    }
    let total = u8::try_from(parts.len()).map_err(|_| "more than 255 segments".to_string())?;
    let (data_coding, single, multi) = match encoding {
        "gsm7" => (DC_DEFAULT, 160, 153),
        "ucs2" => (DC_UCS2, 140, 134),
        other => return Err(format!("unknown SMS encoding {other:?}")),
    };
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let body = match data_coding {
            DC_DEFAULT => {
                gsm_encode(part).ok_or("a gsm7 segment has a character outside GSM 03.38")?
            }
            _ => part.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        };
        let limit = if total == 1 { single } else { multi };
        if body.len() > limit {
            return Err(format!(
                "segment {} is {} octets, over {limit}",
                i + 1,
                body.len()
            ));
        }
        let (esm_class, short_message) = if total == 1 {
            (0, body)
        } else {
            // IEI 0x00: concatenated short message, 8-bit reference.
            let seq = u8::try_from(i + 1).unwrap_or(u8::MAX);
            let mut sm = vec![0x05, 0x00, 0x03, reference, total, seq];
            sm.extend_from_slice(&body);
            (ESM_UDHI, sm)
        };
        out.push(Segment {
            data_coding,
            esm_class,
            short_message,
        });
    }
    Ok(out)
}

/// The segments of `content` as delivered to the SMS medium: the SMS
/// processor's JSON (`{"encoding", "segments"}`), or text (segmented here
/// when no processor was on the route).
///
/// # Errors
/// Content that is neither, or cannot be sent as SMS.
pub fn segments(content_type: &str, content: &[u8], reference: u8) -> Result<Vec<Segment>, String> {
    #[derive(serde::Deserialize)]
    struct Converted {
        encoding: String,
        segments: Vec<String>,
    }
    if content_type == crate::content::gsm::CONTENT_TYPE {
        let c: Converted = serde_json::from_slice(content)
            .map_err(|e| format!("bad converted SMS content: {e}"))?;
        return segments_of(&c.encoding, &c.segments, reference);
    }
    let text = if content_type.starts_with(crate::content::RFC822) {
        crate::content::text_of(content_type, content)
    } else if content_type.starts_with("text/") {
        std::str::from_utf8(content)
            .map_err(|_| "the text is not UTF-8".to_string())?
            .to_string()
    } else {
        return Err(format!("cannot send {content_type} as SMS"));
    };
    if text.is_empty() {
        return Err("an SMS cannot be empty".into());
    }
    let (encoding, parts) = segment(&text);
    segments_of(encoding, &parts, reference)
}

/// A delivery receipt's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptText {
    /// The SMSC's message id (from `submit_sm_resp`).
    pub id: String,
    /// `stat:` — DELIVRD, EXPIRED, DELETED, UNDELIV, ACCEPTD, UNKNOWN,
    /// REJECTD or ENROUTE.
    pub stat: String,
    /// `err:`, if given.
    pub err: Option<String>,
}

/// What a receipt's `stat:` means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// It reached the phone (`DELIVRD`, or `ACCEPTD` on the subscriber's
    /// behalf).
    Delivered,
    /// It did not and will not (`UNDELIV`, `EXPIRED`, `DELETED`,
    /// `REJECTD`, `UNKNOWN`, or a state we don't know).
    Failed(String),
    /// Not final yet (`ENROUTE`): wait for the next receipt.
    Intermediate,
}

impl ReceiptText {
    /// What this receipt means.
    pub fn outcome(&self) -> ReceiptOutcome {
        match self.stat.as_str() {
            "DELIVRD" | "ACCEPTD" => ReceiptOutcome::Delivered,
            "ENROUTE" => ReceiptOutcome::Intermediate,
            stat => ReceiptOutcome::Failed(match &self.err {
                Some(e) => format!("SMSC receipt stat:{stat} err:{e}"),
                None => format!("SMSC receipt stat:{stat}"),
            }),
        }
    }
}

/// Reads `id:… stat:… err:…` from a receipt's text.
pub fn parse_receipt(text: &str) -> Option<ReceiptText> {
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_string)
    };
    let id = field("id:").filter(|s| !s.is_empty())?;
    let stat = field("stat:")?.to_ascii_uppercase();
    Some(ReceiptText {
        id,
        stat,
        err: field("err:"),
    })
}

/// Whether `esm_class` marks a delivery receipt.
pub fn is_receipt(esm_class: u8) -> bool {
    esm_class & ESM_TYPE_MASK == ESM_RECEIPT
}

/// A concatenation header of an inbound part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    /// The reference shared by the parts.
    pub reference: u16,
    /// How many parts.
    pub total: u8,
    /// This part (1-based).
    pub seq: u8,
}

/// An inbound short message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortMessage {
    /// Its text.
    pub text: String,
    /// Its concatenation header, when it is one part of several.
    pub concat: Option<Concat>,
}

impl ShortMessage {
    /// Decodes `short_message` by `esm_class` (UDH) and `data_coding`, the
    /// ambiguous codings in `alphabets`.
    ///
    /// # Errors
    /// A UDH longer than the message, or a coding that is not text.
    pub fn decode(
        esm_class: u8,
        data_coding: u8,
        sm: &[u8],
        alphabets: &Alphabets,
    ) -> Result<Self, String> {
        let (concat, body) = if esm_class & ESM_UDHI != 0 {
            let udhl = usize::from(*sm.first().ok_or("an empty message with a UDH")?);
            if sm.len() < udhl + 1 {
                return Err("the UDH is longer than the message".into());
            }
            (concat_ie(&sm[1..=udhl]), &sm[udhl + 1..])
        } else {
            (None, sm)
        };
        let text = match data_coding {
            DC_DEFAULT => alphabets.dc0.decode(body),
            DC_IA5 => alphabets.dc1.decode(body),
            DC_LATIN1 => Alphabet::Latin1.decode(body),
            DC_UCS2 => {
                if body.len() % 2 != 0 {
                    return Err("UCS-2 text of an odd length".into());
                }
                let units: Vec<u16> = body
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                String::from_utf16_lossy(&units)
            }
            other => return Err(format!("data_coding {other:#04x} is not a text coding")),
        };
        Ok(Self { text, concat })
    }
}

/// The concatenation information element of a UDH, if any.
fn concat_ie(mut udh: &[u8]) -> Option<Concat> {
    while udh.len() >= 2 {
        let (iei, len) = (udh[0], usize::from(udh[1]));
        let data = udh.get(2..2 + len)?;
        match (iei, data) {
            (0x00, [r, t, s]) => {
                return Some(Concat {
                    reference: u16::from(*r),
                    total: *t,
                    seq: *s,
                })
            }
            (0x08, [r1, r2, t, s]) => {
                return Some(Concat {
                    reference: u16::from_be_bytes([*r1, *r2]),
                    total: *t,
                    seq: *s,
                })
            }
            _ => udh = &udh[2 + len..],
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use rusmpp::{CommandStatus, Pdu};

    #[test]
    fn frames_split_anywhere_and_bad_pdus_do_not_desync() {
        let mut enc = PduCodec::default();
        let mut wire = BytesMut::new();
        enc.encode(
            Command::new(CommandStatus::EsmeRok, 7, Pdu::EnquireLink),
            &mut wire,
        )
        .unwrap();
        // A submit_sm_resp whose body is a message id without its NUL:
        // framed fine, undecodable.
        let mut bad = vec![0, 0, 0, 20, 0x80, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9];
        bad.extend_from_slice(b"abcd");
        wire.extend_from_slice(&bad);
        enc.encode(
            Command::new(CommandStatus::EsmeRok, 8, Pdu::EnquireLinkResp),
            &mut wire,
        )
        .unwrap();
        let mut dec = PduCodec::default();
        let mut got = Vec::new();
        let mut buf = BytesMut::new();
        for b in wire {
            buf.extend_from_slice(&[b]);
            while let Some(i) = dec.decode(&mut buf).unwrap() {
                got.push(i);
            }
        }
        assert_eq!(got.len(), 3);
        assert!(
            matches!(&got[0], Inbound::Command(c) if c.sequence_number() == 7 && matches!(c.pdu(), Some(Pdu::EnquireLink)))
        );
        assert!(matches!(
            &got[1],
            Inbound::Undecodable {
                command_id: 0x8000_0004,
                sequence: 9,
                ..
            }
        ));
        assert!(matches!(&got[2], Inbound::Command(c) if c.sequence_number() == 8));
    }

    #[test]
    fn impossible_lengths_end_the_stream() {
        let mut dec = PduCodec::default();
        let mut short = BytesMut::from(&[0u8, 0, 0, 8, 0, 0, 0, 0][..]);
        assert!(dec.decode(&mut short).is_err());
        let mut huge = BytesMut::from(&[0x7Fu8, 0, 0, 0, 0, 0, 0, 0][..]);
        assert!(dec.decode(&mut huge).is_err());
    }

    #[test]
    fn unknown_commands_decode_as_other() {
        let mut dec = PduCodec::default();
        let mut b = BytesMut::from(&[0u8, 0, 0, 16, 0, 0, 0x0F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 3][..]);
        match dec.decode(&mut b).unwrap().unwrap() {
            Inbound::Command(c) => {
                assert_eq!(u32::from(c.id()), 0x0FFF);
                assert!(matches!(c.pdu(), None | Some(Pdu::Other { .. })));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn segments_carry_a_concatenation_udh() {
        let one = segments("text/plain", b"hello", 9).unwrap();
        assert_eq!(
            one,
            vec![Segment {
                data_coding: 0,
                esm_class: 0,
                short_message: b"hello".to_vec()
            }]
        );
        let long = "a".repeat(200);
        let two = segments("text/plain", long.as_bytes(), 9).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].esm_class, ESM_UDHI);
        assert_eq!(two[0].short_message[..6], [5, 0, 3, 9, 2, 1]);
        assert_eq!(two[1].short_message[..6], [5, 0, 3, 9, 2, 2]);
        assert_eq!(two[0].short_message.len(), 6 + 153);
        let uc = segments("text/plain", "ж".repeat(71).as_bytes(), 1).unwrap();
        assert_eq!(uc[0].data_coding, DC_UCS2);
        assert_eq!(uc[0].short_message.len(), 6 + 134);
        // What the processor sends.
        let conv = br#"{"encoding":"gsm7","segments":["a","b"]}"#;
        assert_eq!(
            segments(crate::content::gsm::CONTENT_TYPE, conv, 3).unwrap()[1].short_message,
            [5, 0, 3, 3, 2, 2, b'b']
        );
        assert!(segments(crate::content::gsm::CONTENT_TYPE, b"{}", 3).is_err());
        assert!(segments_of("gsm7", &["ж".into()], 1).is_err());
        assert!(segments_of("gsm7", &["a".repeat(161)], 1).is_err());
        assert!(segments_of("klingon", &["a".into()], 1).is_err());
        assert!(segments("image/png", b"x", 1).is_err());
    }

    #[test]
    fn receipts_are_read_and_mapped() {
        let r = parse_receipt("id:A1b2 sub:001 dlvrd:001 submit date:2611231200 done date:2611231201 stat:DELIVRD err:000 text:hello").unwrap();
        assert_eq!(r.id, "A1b2");
        assert_eq!(r.outcome(), ReceiptOutcome::Delivered);
        let r = parse_receipt("id:9 stat:UNDELIV err:013").unwrap();
        assert_eq!(
            r.outcome(),
            ReceiptOutcome::Failed("SMSC receipt stat:UNDELIV err:013".into())
        );
        assert_eq!(
            parse_receipt("id:9 stat:ENROUTE").unwrap().outcome(),
            ReceiptOutcome::Intermediate
        );
        assert!(matches!(
            parse_receipt("id:9 stat:WHATEVER").unwrap().outcome(),
            ReceiptOutcome::Failed(_)
        ));
        assert_eq!(parse_receipt("hello there"), None);
        assert_eq!(parse_receipt("id: stat:DELIVRD"), None);
        assert!(is_receipt(0x04) && is_receipt(0x44) && !is_receipt(0x00) && !is_receipt(0x40));
    }

    #[test]
    fn inbound_text_in_every_coding() {
        let d = |esm, dc, sm: &[u8]| ShortMessage::decode(esm, dc, sm, &Alphabets::default());
        assert_eq!(
            d(0, DC_DEFAULT, &gsm_encode("@bob hi €").unwrap())
                .unwrap()
                .text,
            "@bob hi €"
        );
        assert_eq!(d(0, DC_IA5, b"hi\xff").unwrap().text, "hi?");
        assert_eq!(d(0, DC_LATIN1, b"gr\xfc\xdf").unwrap().text, "grüß");
        assert_eq!(d(0, DC_UCS2, &[0x04, 0x36]).unwrap().text, "ж");
        assert!(d(0, DC_UCS2, &[0x04]).is_err());
        assert!(d(0, 0x04, b"\x01").is_err(), "binary");
        let part = d(ESM_UDHI, DC_DEFAULT, &[5, 0, 3, 42, 2, 1, b'a']).unwrap();
        assert_eq!(part.text, "a");
        assert_eq!(
            part.concat,
            Some(Concat {
                reference: 42,
                total: 2,
                seq: 1
            })
        );
        let part16 = d(ESM_UDHI, DC_DEFAULT, &[6, 8, 4, 1, 2, 3, 1, b'b']).unwrap();
        assert_eq!(part16.concat.unwrap().reference, 0x0102);
        assert!(d(ESM_UDHI, DC_DEFAULT, &[9, 0, 3]).is_err());
        assert!(d(ESM_UDHI, DC_DEFAULT, &[]).is_err());
    }

    #[test]
    fn the_alphabets_of_data_coding_0_and_1_are_the_smscs() {
        let gsm = gsm_encode("@bob hi").unwrap();
        let with = |dc0, dc1| Alphabets { dc0, dc1 };
        let d = |dc, a: Alphabets| ShortMessage::decode(0, dc, &gsm, &a).unwrap().text;
        // GSM under IA5 (the npm smpp package's default) loses the `@`
        // unless the SMSC's alphabet for 1 is said to be GSM.
        assert_eq!(d(DC_IA5, Alphabets::default()), "\0bob hi");
        assert_eq!(d(DC_IA5, with(Alphabet::Gsm, Alphabet::Gsm)), "@bob hi");
        // An SMSC whose default alphabet is Latin-1.
        let latin = ShortMessage::decode(
            0,
            DC_DEFAULT,
            b"gr\xfc\xdf",
            &with(Alphabet::Latin1, Alphabet::Ascii),
        );
        assert_eq!(latin.unwrap().text, "grüß");
        assert_eq!(Alphabet::parse("gsm"), Some(Alphabet::Gsm));
        assert_eq!(Alphabet::parse("utf8"), None);
    }
}
