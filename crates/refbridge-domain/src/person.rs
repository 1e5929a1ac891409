//! Normalisation used to match people across sources.

/// Lowercase letters and digits only: "  O'Neil-Smith " and "oneil smith" compare equal.
pub fn normalize_name(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_case_spacing_and_punctuation() {
        assert_eq!(normalize_name("  O'Neil-Smith "), "oneilsmith");
        assert_eq!(normalize_name("JANE"), normalize_name("jane"));
        assert_ne!(normalize_name("Jane"), normalize_name("Jan"));
    }
}
