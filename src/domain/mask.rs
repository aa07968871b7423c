//! Masking of PII for callers who may read a customer but not its PII
//! (analysts): enough remains to tell records apart, not to identify anyone.

use chrono::{Datelike, NaiveDate};

/// `****1234`: the last four characters stay when the value is long enough
/// that they do not give it away.
pub fn mask_text(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    match chars.len() {
        0 => String::new(),
        n if n <= 6 => "****".into(),
        n => format!("****{}", chars[n - 4..].iter().collect::<String>()),
    }
}

/// Addresses keep nothing.
pub fn mask_address(value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        "****".into()
    }
}

/// Only the year stays: `1990-**-**`.
pub fn mask_birth_date(value: Option<NaiveDate>) -> String {
    value
        .map(|d| format!("{:04}-**-**", d.year()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_little() {
        assert_eq!(mask_text("110101199003071234"), "****1234");
        assert_eq!(mask_text("wei@example.cn"), "****e.cn");
        assert_eq!(mask_text("12345"), "****");
        assert_eq!(mask_text(""), "");
        assert_eq!(mask_address("1 Bund Road"), "****");
        assert_eq!(
            mask_birth_date(NaiveDate::from_ymd_opt(1990, 3, 7)),
            "1990-**-**"
        );
        assert_eq!(mask_birth_date(None), "");
    }
}
