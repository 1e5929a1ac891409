//! What text a caller may send: the longest value each kind of field holds, and the characters
//! no field holds.
//!
//! Every limit is small enough for the indexes that hold the value: PostgreSQL's btree keeps
//! at most 2,704 bytes per entry, and a person's normalised first and last names share one
//! entry of `patients_by_person` (100 characters each: at most 400 bytes of UTF-8, at most
//! 1.5 times that once lowercased). NUL is refused everywhere (no text column stores it on
//! PostgreSQL; the JSON reader refuses it in every string); other control characters (C0, DEL
//! and C1: line breaks and tabs included) are refused in one-line values and allowed, but for
//! line breaks and tabs, nowhere else.
//!
//! | kind | limit | fields |
//! |---|---|---|
//! | person's name | [`NAME_MAX`] | intake `client.first_name`, `client.last_name`; `PUT /v1/patients` names |
//! | one line | [`LINE_MAX`] | addresses, cities, emails, phones, agency name and host, form metadata, field types and tags; `PUT /v1/patients`' other fields |
//! | form label | [`LABEL_MAX`] | `form_data.fields[].field_label` |
//! | plan values | see `plan` | payor and funder names 200, member and group numbers 80, source ids 255 |

/// A person's first or last name.
pub const NAME_MAX: usize = 100;
/// One line of text: an address, a city, an email address, a phone number.
pub const LINE_MAX: usize = 255;
/// A form field's label (a question, which may be long).
pub const LABEL_MAX: usize = 2000;
/// The most characters of a search term that are used.
pub const SEARCH_MAX: usize = 200;

/// Why a text value is refused; the message names the problem, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters (such as line breaks or tabs)")]
    Control,
}

/// One line of text: trimmed, not empty, at most `max` characters, no control character.
pub fn line(s: &str, max: usize) -> Result<&str, TextError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(TextError::Empty);
    }
    if t.chars().any(char::is_control) {
        return Err(TextError::Control);
    }
    if t.chars().count() > max {
        return Err(TextError::TooLong(max));
    }
    Ok(t)
}

/// Free text: trimmed, not empty, at most `max` characters; line breaks and tabs are the only
/// control characters allowed.
pub fn free(s: &str, max: usize) -> Result<&str, TextError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(TextError::Empty);
    }
    if t.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(TextError::Control);
    }
    if t.chars().count() > max {
        return Err(TextError::TooLong(max));
    }
    Ok(t)
}

/// What a person typed into a search box or a sign-in form, as a lookup uses it: control
/// characters dropped, at most [`SEARCH_MAX`] characters, trimmed. It never fails on what was
/// typed, and what it returns fits every index.
pub fn typed(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(SEARCH_MAX)
        .collect();
    kept.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn one_line_refuses_control_characters_and_long_values() {
        assert_eq!(line("  Ana ", 10), Ok("Ana"));
        assert_eq!(line(" ", 10), Err(TextError::Empty));
        assert_eq!(line("a\nb", 10), Err(TextError::Control));
        assert_eq!(line("a\u{85}b", 10), Err(TextError::Control), "C1 too");
        assert_eq!(line("a\u{7f}", 10), Err(TextError::Control), "DEL too");
        assert_eq!(line(&"é".repeat(11), 10), Err(TextError::TooLong(10)));
        assert_eq!(
            line(&"é".repeat(10), 10),
            Ok("éééééééééé"),
            "characters, not bytes"
        );
    }

    #[test]
    fn free_text_keeps_line_breaks_and_tabs_only() {
        assert_eq!(free("a\r\n\tb", 10), Ok("a\r\n\tb"));
        assert_eq!(free("a\u{1}b", 10), Err(TextError::Control));
        assert_eq!(free("a\0b", 10), Err(TextError::Control));
    }

    #[test]
    fn a_typed_drops_what_no_field_holds() {
        assert_eq!(typed(" an\0a\u{1b} "), "ana");
        assert_eq!(typed(&"x".repeat(500)).len(), SEARCH_MAX);
    }

    proptest! {
        #[test]
        fn what_one_line_accepts_is_short_and_clean(s in any::<String>()) {
            if let Ok(t) = line(&s, NAME_MAX) {
                prop_assert!(t.chars().count() <= NAME_MAX);
                prop_assert!(!t.chars().any(char::is_control));
                // What the index holds fits it.
                let norm = crate::person::normalize_name(t);
                prop_assert!(norm.len() <= 2 * 2704 / 5);
            }
        }
    }
}
