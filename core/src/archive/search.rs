//! Searching the archive (COMPLIANCE.md "Search"): by participant, time
//! (the delivery time, `from` inclusive, `to` exclusive), medium, tag, and
//! the text — words, `"quoted phrases"` (consecutive words), `OR` between
//! alternatives, `-word` or `NOT word` to exclude; everything else must all
//! match. Matching is on lowercase words of the subject and of text
//! content. This is the scan every build has; results come in chain order
//! (seq), each with its seq — its place in the chain.

use super::record::ArchiveRecord;

/// One thing the text must (or must not) contain.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// These words, one after the other.
    Phrase(Vec<String>),
    /// Any of these.
    Any(Vec<Term>),
    /// Not this.
    Not(Box<Term>),
}

/// A parsed text query: every term must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextQuery(Vec<Term>);

/// Lowercase words: runs of letters and digits.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl TextQuery {
    /// Parses `q`.
    ///
    /// # Errors
    /// An unclosed quote, or `OR`/`NOT` with nothing to apply to.
    pub fn parse(q: &str) -> Result<Self, String> {
        // Tokens: (negated by a `-` before a quote, quoted, text).
        let mut tokens: Vec<(bool, bool, String)> = Vec::new();
        let mut rest = q.trim_start();
        while !rest.is_empty() {
            let (neg, body) = match rest.strip_prefix('-') {
                Some(r) if r.starts_with('"') => (true, r),
                _ => (false, rest),
            };
            if let Some(after) = body.strip_prefix('"') {
                let end = after.find('"').ok_or("an unclosed \"")?;
                tokens.push((neg, true, after[..end].to_string()));
                rest = after[end + 1..].trim_start();
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                tokens.push((false, false, rest[..end].to_string()));
                rest = rest[end..].trim_start();
            }
        }
        let mut terms: Vec<Term> = Vec::new();
        let (mut negate, mut or_next) = (false, false);
        for (neg_quote, quoted, t) in tokens {
            if !quoted && t == "OR" {
                if terms.is_empty() || or_next || negate {
                    return Err("OR needs something on each side".into());
                }
                or_next = true;
                continue;
            }
            if !quoted && t == "NOT" {
                negate = true;
                continue;
            }
            let (neg, text) = match t.strip_prefix('-') {
                Some(w) if !quoted && !w.is_empty() => (true, w.to_string()),
                _ => (negate || neg_quote, t),
            };
            negate = false;
            let ws = words(&text);
            if ws.is_empty() {
                continue;
            }
            let mut term = Term::Phrase(ws);
            if neg {
                term = Term::Not(Box::new(term));
            }
            if std::mem::take(&mut or_next) {
                term = match terms.pop() {
                    Some(Term::Any(mut v)) => {
                        v.push(term);
                        Term::Any(v)
                    }
                    Some(p) => Term::Any(vec![p, term]),
                    None => term,
                };
            }
            terms.push(term);
        }
        if negate || or_next {
            return Err("NOT or OR at the end, with nothing to apply to".into());
        }
        Ok(Self(terms))
    }

    /// Whether `text`'s words satisfy every term.
    pub fn matches(&self, text_words: &[String]) -> bool {
        self.0.iter().all(|t| holds(t, text_words))
    }

    /// Whether there is nothing to match.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Words every matching text contains (those of its phrases that are
    /// neither alternatives nor excluded), each once: what an index can
    /// narrow the records to before they are matched.
    pub fn required_words(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.0 {
            if let Term::Phrase(ws) = t {
                for w in ws {
                    if !out.contains(w) {
                        out.push(w.clone());
                    }
                }
            }
        }
        out
    }
}

fn holds(t: &Term, ws: &[String]) -> bool {
    match t {
        Term::Phrase(p) => ws.windows(p.len()).any(|w| w == p.as_slice()),
        Term::Any(v) => v.iter().any(|t| holds(t, ws)),
        Term::Not(t) => !holds(t, ws),
    }
}

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Every one of them is a party (sender or recipient).
    pub participants: Vec<String>,
    /// Delivered at or after (ms).
    pub from_ms: Option<u64>,
    /// Delivered before (ms).
    pub to_ms: Option<u64>,
    /// Over this medium.
    pub medium: Option<String>,
    /// With this tag.
    pub tag: Option<String>,
    /// The text.
    pub text: TextQuery,
    /// Records after this seq only (the previous page's `next`).
    pub after: u64,
    /// At most this many.
    pub limit: usize,
    /// Only these seqs may match (what an index found for the text);
    /// `None`: any.
    pub candidates: Option<std::collections::HashSet<u64>>,
}

impl Query {
    /// Whether `r` passes every filter but the text.
    pub fn meta_matches(&self, r: &ArchiveRecord) -> bool {
        r.seq > self.after
            && self.candidates.as_ref().is_none_or(|c| c.contains(&r.seq))
            && self.participants.iter().all(|p| &r.from == p || &r.to == p)
            && self.from_ms.is_none_or(|f| r.at_ms >= f)
            && self.to_ms.is_none_or(|t| r.at_ms < t)
            && self.medium.as_ref().is_none_or(|m| &r.medium == m)
            && self.tag.as_ref().is_none_or(|t| r.tags.contains(t))
    }
}

/// The words of a record for the text query: its subject's, and its
/// content's when that is text.
pub fn record_words(r: &ArchiveRecord, content: &[u8]) -> Vec<String> {
    let mut ws = r.subject.as_deref().map(words).unwrap_or_default();
    let texty = r.content_type.starts_with("text/") || r.content_type.starts_with("message/");
    if texty {
        ws.extend(words(&String::from_utf8_lossy(content)));
    }
    ws
}

/// The records of `records` that match `q`, in seq order, at most
/// `q.limit`; `content` gives a record's content by its hash. Returns them
/// and whether more may follow.
pub fn search(
    records: impl IntoIterator<Item = ArchiveRecord>,
    q: &Query,
    mut content: impl FnMut(&str) -> Vec<u8>,
) -> (Vec<(ArchiveRecord, Vec<u8>)>, bool) {
    let mut out = Vec::new();
    for r in records {
        if !q.meta_matches(&r) {
            continue;
        }
        let c = content(&r.content_sha256);
        if !q.text.is_empty() && !q.text.matches(&record_words(&r, &c)) {
            continue;
        }
        if out.len() == q.limit {
            return (out, true);
        }
        out.push((r, c));
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(q: &str, text: &str) -> bool {
        TextQuery::parse(q).unwrap().matches(&words(text))
    }

    #[test]
    fn words_phrases_alternatives_and_exclusions() {
        let t = "The Project X budget, final: 1.2M for Q3.";
        assert!(m("budget", t));
        assert!(m("BUDGET final", t), "all words, any case");
        assert!(!m("budget draft", t));
        assert!(m("\"project x budget\"", t), "a phrase in order");
        assert!(!m("\"budget project\"", t));
        assert!(m("draft OR final", t));
        assert!(m("draft OR nope OR q3", t));
        assert!(!m("draft OR nope", t));
        assert!(m("budget -draft", t));
        assert!(!m("budget -final", t));
        assert!(!m("budget NOT final", t));
        assert!(m("budget NOT \"final draft\"", t));
        assert!(!m("-\"project x\"", t));
        assert!(m("", t), "nothing asked: everything");
        let q = TextQuery::parse("Budget \"final budget\" draft OR x -no NOT nay").unwrap();
        assert_eq!(q.required_words(), ["budget", "final"]);
        for bad in ["\"open", "OR x", "x OR", "x NOT", "a OR OR b"] {
            assert!(TextQuery::parse(bad).is_err(), "{bad}");
        }
    }
}
