//! Turns names and external ids into search lexemes, and queries into the
//! matching `tsquery`, so Chinese names (no spaces between words) and Latin
//! names are found alike.
//!
//! Latin and digit runs become lowercase words and are matched by prefix.
//! Runs of CJK characters become their single characters and overlapping
//! bigrams, so 张伟 finds 张伟明 without a Chinese word segmenter. Lexemes
//! hold only letters and digits, so a query cannot inject tsquery syntax.

pub const MAX_QUERY_CHARS: usize = 200;
const MAX_QUERY_TERMS: usize = 16;

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x2FA1F) // CJK extensions B–F and supplements
}

#[derive(Debug, PartialEq, Eq)]
enum Run {
    Word(String),
    Cjk(Vec<char>),
}

fn runs(text: &str) -> Vec<Run> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut cjk = Vec::new();
    for c in text.chars() {
        if is_cjk(c) {
            if !word.is_empty() {
                out.push(Run::Word(std::mem::take(&mut word)));
            }
            cjk.push(c);
        } else if c.is_alphanumeric() {
            if !cjk.is_empty() {
                out.push(Run::Cjk(std::mem::take(&mut cjk)));
            }
            word.extend(c.to_lowercase());
        } else {
            if !word.is_empty() {
                out.push(Run::Word(std::mem::take(&mut word)));
            }
            if !cjk.is_empty() {
                out.push(Run::Cjk(std::mem::take(&mut cjk)));
            }
        }
    }
    if !word.is_empty() {
        out.push(Run::Word(word));
    }
    if !cjk.is_empty() {
        out.push(Run::Cjk(cjk));
    }
    out
}

/// The lexemes stored for a text (a name or an external id).
pub fn lexemes(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for run in runs(text) {
        match run {
            Run::Word(w) => out.push(w),
            Run::Cjk(chars) => {
                out.extend(chars.iter().map(|c| c.to_string()));
                out.extend(chars.windows(2).map(|pair| pair.iter().collect()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The `tsquery` text for a search query, or `None` when it holds nothing
/// searchable. Every term must match: words by prefix, CJK runs by their
/// bigrams (or the single character).
pub fn tsquery(query: &str) -> Option<String> {
    let mut terms: Vec<String> = Vec::new();
    for run in runs(query) {
        match run {
            Run::Word(w) => terms.push(format!("'{w}':*")),
            Run::Cjk(chars) if chars.len() == 1 => terms.push(format!("'{}'", chars[0])),
            Run::Cjk(chars) => terms.extend(
                chars
                    .windows(2)
                    .map(|pair| format!("'{}'", pair.iter().collect::<String>())),
            ),
        }
    }
    terms.dedup();
    terms.truncate(MAX_QUERY_TERMS);
    (!terms.is_empty()).then(|| terms.join(" & "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_names_become_characters_and_bigrams() {
        assert_eq!(lexemes("张伟明"), vec!["伟", "伟明", "张", "张伟", "明"]);
        assert_eq!(tsquery("张伟").unwrap(), "'张伟'");
        assert_eq!(tsquery("张伟明").unwrap(), "'张伟' & '伟明'");
        assert_eq!(tsquery("伟").unwrap(), "'伟'");
    }

    #[test]
    fn latin_words_are_lowercased_and_prefix_matched() {
        assert_eq!(lexemes("Zhang Wei"), vec!["wei", "zhang"]);
        assert_eq!(lexemes("CIF-000123"), vec!["000123", "cif"]);
        assert_eq!(tsquery("Zhang  we").unwrap(), "'zhang':* & 'we':*");
        assert_eq!(tsquery("Wei张").unwrap(), "'wei':* & '张'");
    }

    #[test]
    fn queries_cannot_carry_tsquery_syntax() {
        assert_eq!(tsquery("a' | !b:*").unwrap(), "'a':* & 'b':*");
        assert_eq!(tsquery("&|!()':*"), None);
    }
}

/// The `tsvector` literal stored for a customer: name lexemes weighted A,
/// external id lexemes weighted B (a name hit ranks above an id hit).
pub fn document<'a>(name: &str, external_values: impl IntoIterator<Item = &'a str>) -> String {
    let mut entries = Vec::new();
    let mut position = 0;
    let mut push = |lexeme: String, weight: char| {
        position += 1;
        entries.push(format!("'{lexeme}':{}{weight}", position.min(16383)));
    };
    for lexeme in lexemes(name) {
        push(lexeme, 'A');
    }
    for value in external_values {
        for lexeme in lexemes(value) {
            push(lexeme, 'B');
        }
    }
    entries.join(" ")
}

/// The CJK lexemes of a text (characters and bigrams) as a `tsvector`
/// literal with one weight; Latin words are left to Postgres's English
/// stemmer. Empty when the text has no CJK.
pub fn cjk_document(text: &str, weight: char) -> String {
    let mut entries = Vec::new();
    for run in runs(text) {
        if let Run::Cjk(chars) = run {
            let position = entries.len() + 1;
            for lexeme in chars
                .iter()
                .map(|c| c.to_string())
                .chain(chars.windows(2).map(|pair| pair.iter().collect()))
            {
                entries.push(format!("'{lexeme}':{}{weight}", (position).min(16383)));
            }
        }
    }
    entries.join(" ")
}

/// Splits a knowledge search query into its Latin text (for
/// `websearch_to_tsquery('english', …)`) and the `tsquery` of its CJK runs.
pub fn split_query(query: &str) -> (String, Option<String>) {
    let mut latin = String::new();
    let mut terms = Vec::new();
    for run in runs(query) {
        match run {
            Run::Word(w) => {
                latin.push_str(&w);
                latin.push(' ');
            }
            Run::Cjk(chars) if chars.len() == 1 => terms.push(format!("'{}'", chars[0])),
            Run::Cjk(chars) => terms.extend(
                chars
                    .windows(2)
                    .map(|pair| format!("'{}'", pair.iter().collect::<String>())),
            ),
        }
    }
    terms.dedup();
    terms.truncate(MAX_QUERY_TERMS);
    (
        latin.trim().to_string(),
        (!terms.is_empty()).then(|| terms.join(" & ")),
    )
}

#[cfg(test)]
mod document_tests {
    #[test]
    fn knowledge_queries_split_into_english_and_cjk() {
        let (latin, cjk) = super::split_query("prefers 稳健型 理财 products");
        assert_eq!(latin, "prefers products");
        assert_eq!(cjk.unwrap(), "'稳健' & '健型' & '理财'");
        assert_eq!(super::split_query("理").1.unwrap(), "'理'");
        assert!(super::cjk_document("客户偏好稳健型理财产品", 'A').contains("'理财'"));
        assert_eq!(super::cjk_document("no cjk here", 'A'), "");
    }

    #[test]
    fn weights_names_above_external_ids() {
        assert_eq!(
            super::document("张伟", ["CIF-9"]),
            "'伟':1A '张':2A '张伟':3A '9':4B 'cif':5B"
        );
    }
}
