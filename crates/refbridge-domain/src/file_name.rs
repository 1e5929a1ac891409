//! A file's name as the agency or the reviewer gave it: what refbridge keeps and shows.
//!
//! Any name is accepted but an empty one or one longer than [`MAX_CHARS`]: path separators,
//! `..` and the like are kept for display (the name sent to ACCloud is derived from it at
//! send time, `send::files::delivered_name`, and is always safe). Control characters, NUL
//! among them, cannot be shown or stored (PostgreSQL's text refuses NUL): each becomes
//! U+FFFD.

/// The longest name accepted, in characters (after trimming): far above any file system's,
/// low enough that a name cannot weigh on the record.
pub const MAX_CHARS: usize = 1000;

/// A file's display name: trimmed, not empty, at most [`MAX_CHARS`] characters, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

/// Why a name was refused (the message names no part of the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    #[error("is required")]
    Empty,
    #[error("must be at most 1000 characters")]
    TooLong,
}

impl FileName {
    pub fn parse(given: &str) -> Result<Self, FileNameError> {
        let name: String = given
            .trim()
            .chars()
            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
            .collect();
        if name.is_empty() {
            return Err(FileNameError::Empty);
        }
        if name.chars().count() > MAX_CHARS {
            return Err(FileNameError::TooLong);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send::files::delivered_name;

    #[test]
    fn hostile_names_are_kept_for_display_without_control_characters() {
        let given = "../..\\etc/pass\0wd\u{7}\r\n.pdf";
        let name = FileName::parse(given).unwrap();
        assert_eq!(
            name.as_str(),
            "../..\\etc/pass\u{FFFD}wd\u{FFFD}\u{FFFD}\u{FFFD}.pdf"
        );
        assert!(!name.as_str().contains('\0'));
        // What ACCloud gets is the last segment, made safe.
        let sent = delivered_name(name.as_str());
        assert!(!sent.contains(['/', '\\', '\0']), "{sent}");
        assert!(sent.ends_with(".pdf"), "{sent}");
    }

    #[test]
    fn empty_and_overlong_names_are_refused() {
        assert_eq!(FileName::parse(" \t "), Err(FileNameError::Empty));
        assert_eq!(FileName::parse(""), Err(FileNameError::Empty));
        assert!(FileName::parse(&"é".repeat(MAX_CHARS)).is_ok());
        assert_eq!(
            FileName::parse(&"é".repeat(MAX_CHARS + 1)),
            Err(FileNameError::TooLong)
        );
    }

    #[test]
    fn any_name_parses_to_a_bounded_name_without_control_characters() {
        // A cheap property test: every short string of awkward characters.
        let alphabet = ['a', '.', '/', '\\', '\0', '\n', ' ', 'é', '\u{202E}', '"'];
        for n in 0..alphabet.len().pow(4) {
            let s: String = (0..4)
                .map(|i| alphabet[n / alphabet.len().pow(i) % alphabet.len()])
                .collect();
            match FileName::parse(&s) {
                Ok(name) => {
                    assert!(!name.as_str().chars().any(char::is_control), "{s:?}");
                    assert!(!delivered_name(name.as_str()).is_empty(), "{s:?}");
                }
                Err(e) => assert_eq!(e, FileNameError::Empty, "{s:?}"),
            }
        }
    }
}
