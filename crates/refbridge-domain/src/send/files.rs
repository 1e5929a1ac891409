//! What the agency receives of the referral's documents: each content once, under the name
//! the agency or the reviewer gave it, made safe.

use std::collections::HashSet;

use crate::ContentHash;

/// The longest name sent to ACCloud, in characters (the extension included).
pub const MAX_NAME_CHARS: usize = 120;

/// The longest extension kept, in characters after the dot.
const MAX_EXTENSION_CHARS: usize = 16;

/// The name a document is uploaded under, from the name it was given: the last segment of a
/// path (after any `/` or `\`), without control characters, with each of `<>:"|?*` as `_`,
/// without leading or trailing spaces and dots, and at most [`MAX_NAME_CHARS`] characters with
/// its extension kept. A name with nothing left is `document` (with its extension).
pub fn delivered_name(given: &str) -> String {
    let base = given.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if "<>:\"|?*".contains(c) { '_' } else { c })
        .collect();
    let cleaned = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let (stem, ext) = match cleaned.rsplit_once('.') {
        Some((stem, ext))
            if !ext.is_empty()
                && ext.chars().count() <= MAX_EXTENSION_CHARS
                && !ext.contains(char::is_whitespace) =>
        {
            (stem.trim_end(), format!(".{ext}"))
        }
        _ => (cleaned, String::new()),
    };
    let stem = if stem.is_empty() { "document" } else { stem };
    let room = MAX_NAME_CHARS - ext.chars().count();
    let stem: String = stem.chars().take(room).collect();
    format!("{}{ext}", stem.trim_end())
}

/// Whether `candidate` is `name` as ACCloud stores it: the name itself, or `stem (n).ext`
/// when a file of that name was there already.
pub fn is_stored_as(name: &str, candidate: &str) -> bool {
    if candidate == name {
        return true;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => (s, &name[s.len()..]),
        _ => (name, ""),
    };
    candidate
        .strip_prefix(stem)
        .and_then(|rest| rest.strip_prefix(" ("))
        .and_then(|rest| rest.strip_suffix(ext))
        .and_then(|rest| rest.strip_suffix(')'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Files sorted by content against what the referral already delivers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByContent {
    /// The positions of the files to send: the first of each content not delivered yet.
    pub send: Vec<usize>,
    /// The positions of files whose content is delivered already (or earlier in the list).
    pub already_there: Vec<usize>,
}

/// Sorts `files` (their contents, in order) by whether the agency has their content:
/// `delivered` are the contents the referral already delivers. A content goes once.
pub fn by_content<'a>(
    delivered: impl IntoIterator<Item = &'a ContentHash>,
    files: impl IntoIterator<Item = &'a ContentHash>,
) -> ByContent {
    let mut seen: HashSet<&ContentHash> = delivered.into_iter().collect();
    let mut out = ByContent::default();
    for (i, hash) in files.into_iter().enumerate() {
        if seen.insert(hash) {
            out.send.push(i);
        } else {
            out.already_there.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe_and_keep_their_extension() {
        assert_eq!(delivered_name("plan_of_care.pdf"), "plan_of_care.pdf");
        assert_eq!(delivered_name("../../etc/passwd"), "passwd");
        assert_eq!(delivered_name("C:\\scans\\order.PDF"), "order.PDF");
        assert_eq!(delivered_name("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(delivered_name("what?<now>.png"), "what__now_.png");
        assert_eq!(delivered_name(" .hidden. "), "hidden");
        assert_eq!(delivered_name(".."), "document");
        assert_eq!(delivered_name("/"), "document");
        assert_eq!(delivered_name(".pdf"), "pdf");
        let long = format!("{}.pdf", "x".repeat(500));
        let safe = delivered_name(&long);
        assert_eq!(safe.chars().count(), MAX_NAME_CHARS);
        assert!(safe.ends_with("x.pdf"));
        let wide = format!("{}.jpeg", "é".repeat(300));
        assert_eq!(delivered_name(&wide).chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn a_taken_name_is_stored_with_a_number() {
        assert!(is_stored_as("scan.pdf", "scan.pdf"));
        assert!(is_stored_as("scan.pdf", "scan (1).pdf"));
        assert!(is_stored_as("scan.pdf", "scan (12).pdf"));
        assert!(is_stored_as("notes", "notes (2)"));
        assert!(!is_stored_as("scan.pdf", "scan ().pdf"));
        assert!(!is_stored_as("scan.pdf", "scan (x).pdf"));
        assert!(!is_stored_as("scan.pdf", "scan (1).png"));
        assert!(!is_stored_as("scan.pdf", "other.pdf"));
    }

    #[test]
    fn each_content_goes_once() {
        let h = |c: char| ContentHash::parse(&c.to_string().repeat(64)).unwrap();
        let (a, b, c) = (h('a'), h('b'), h('c'));
        let sorted = by_content([&a], [&b, &a, &c, &b]);
        assert_eq!(sorted.send, vec![0, 2]);
        assert_eq!(sorted.already_there, vec![1, 3]);
    }
}
