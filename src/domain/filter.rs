//! The documented subset of AIP-160 filters for ListCustomers, parsed into a
//! typed query whose values are bound as SQL parameters, never spliced.
//!
//! Grammar: `term (AND term)*` with operators `=`, `:`, `<`, `<=`, `>`, `>=`.
//! For customers a term is `home_branch = "B01"`,
//! `relationship_manager = "E1001"`, `kind = INDIVIDUAL`, `tier = VIP` or
//! `tags:"wealth"`, and `update_time > "2026-12-01T00:00:00Z"` (also `>=`, `<`,
//! `<=`: a cache's "what changed since"). Values may be quoted (`"..."`, with `\"` and `\\`) or bare
//! words of letters, digits, `-` and `_`.

use chrono::{DateTime, Duration, Utc};

use super::customer::{CustomerKind, Tier};

pub const MAX_FILTER_LEN: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFilter {
    pub home_branch: Option<String>,
    pub relationship_manager: Option<String>,
    pub kind: Option<CustomerKind>,
    pub tier: Option<Tier>,
    /// Every tag listed must be on the customer.
    pub tags: Vec<String>,
    /// `update_time` from (inclusive) and before (exclusive).
    pub updated_from: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
}

/// The order of a list that can follow changes (`order_by`, AIP-132):
/// ListCustomers, ListInteractions, ListKnowledgeItems.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// The list's own order (customers and knowledge items by id, a
    /// timeline newest first): the default.
    #[default]
    Natural,
    /// Least recently changed first, then by id: with an `update_time`
    /// filter, every change since a point, page by page.
    UpdateTime,
}

impl ListOrder {
    pub fn parse(order_by: &str) -> Result<Self, String> {
        match order_by.trim() {
            "" => Ok(ListOrder::Natural),
            "update_time" | "update_time asc" => Ok(ListOrder::UpdateTime),
            other => Err(format!(
                "cannot order by {other:?}: use \"update_time\" or leave it empty"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Op(Op),
}

/// A comparison operator of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Has,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Has => ":",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// One `field op value` comparison; a filter is their conjunction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub field: String,
    pub op: Op,
    pub value: String,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

fn lex(input: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '=' => tokens.push(Token::Op(Op::Eq)),
            ':' => tokens.push(Token::Op(Op::Has)),
            '<' | '>' => {
                let or_equal = chars.next_if_eq(&'=').is_some();
                tokens.push(Token::Op(match (c, or_equal) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                }));
            }
            '"' => {
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped @ ('"' | '\\')) => value.push(escaped),
                            _ => return Err("a backslash may only escape '\"' or '\\'".into()),
                        },
                        Some(other) => value.push(other),
                        None => return Err("a quoted value is not closed".into()),
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            c if is_word_char(c) => {
                let mut word = String::from(c);
                while let Some(c) = chars.next_if(|c| is_word_char(*c)) {
                    word.push(c);
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    Ok(tokens)
}

/// Parses `term (AND term)*` into its comparisons, without judging fields.
pub fn parse_terms(input: &str) -> Result<Vec<Term>, String> {
    if input.len() > MAX_FILTER_LEN {
        return Err(format!("must be at most {MAX_FILTER_LEN} bytes"));
    }
    let tokens = lex(input)?;
    let mut terms = Vec::new();
    let mut rest = tokens.as_slice();
    if rest.is_empty() {
        return Ok(terms);
    }
    loop {
        match rest {
            [
                Token::Word(field),
                Token::Op(op),
                Token::Word(value) | Token::Quoted(value),
                tail @ ..,
            ] => {
                terms.push(Term {
                    field: field.clone(),
                    op: *op,
                    value: value.clone(),
                });
                rest = tail;
            }
            [Token::Word(field), ..] => {
                return Err(format!(
                    "{field} must be followed by an operator (=, :, <, <=, >, >=) and a value"
                ));
            }
            _ => return Err("expected a comparison such as home_branch = \"B01\"".into()),
        }
        match rest {
            [] => return Ok(terms),
            [Token::Word(and), tail @ ..] if and == "AND" && !tail.is_empty() => rest = tail,
            [Token::Word(op), ..] if op == "OR" || op == "NOT" => {
                return Err(format!("{op} is not supported; join comparisons with AND"));
            }
            _ => return Err("comparisons must be joined with AND".into()),
        }
    }
}

/// An RFC 3339 time compared with.
pub fn parse_time(term: &Term) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(&term.value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "{} needs an RFC 3339 time such as \"2026-01-31T00:00:00Z\"",
                term.field
            )
        })
}

/// `>`/`>=` set the lower bound, `<`/`<=` the upper (exclusive) one; Postgres
/// keeps microseconds, so the strict/inclusive difference is one of them.
pub fn time_range(
    term: &Term,
    from: &mut Option<DateTime<Utc>>,
    before: &mut Option<DateTime<Utc>>,
) -> Result<(), String> {
    let time = parse_time(term)?;
    let micro = Duration::microseconds(1);
    match term.op {
        Op::Ge => set_once(from, term, time),
        Op::Gt => set_once(from, term, time + micro),
        Op::Lt => set_once(before, term, time),
        Op::Le => set_once(before, term, time + micro),
        _ => Err(unsupported(term, "<, <=, > or >=")),
    }
}

/// Sets a field that may be compared only once.
pub fn set_once<T>(slot: &mut Option<T>, term: &Term, value: T) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{} may appear only once", term.field));
    }
    *slot = Some(value);
    Ok(())
}

/// The error for an operator a field does not support.
pub fn unsupported(term: &Term, supported: &str) -> String {
    format!(
        "{} does not support '{}'; use {supported}",
        term.field,
        term.op.symbol()
    )
}

impl CustomerFilter {
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut filter = CustomerFilter::default();
        for term in parse_terms(input)? {
            let value = term.value.clone();
            match (term.field.as_str(), term.op) {
                ("home_branch", Op::Eq) => set_once(&mut filter.home_branch, &term, value)?,
                ("relationship_manager", Op::Eq) => {
                    set_once(&mut filter.relationship_manager, &term, value)?
                }
                ("kind", Op::Eq) => {
                    let kind = CustomerKind::parse(&value).ok_or_else(|| {
                        format!("kind must be INDIVIDUAL or CORPORATE, not {value}")
                    })?;
                    set_once(&mut filter.kind, &term, kind)?
                }
                ("tier", Op::Eq) => {
                    let tier = Tier::parse(&value).ok_or_else(|| {
                        format!("tier must be VIP, MAJOR, ORDINARY or SMALL, not {value}")
                    })?;
                    set_once(&mut filter.tier, &term, tier)?
                }
                ("tags", Op::Has) => filter.tags.push(value),
                ("update_time", _) => {
                    time_range(&term, &mut filter.updated_from, &mut filter.updated_before)?
                }
                ("home_branch" | "relationship_manager" | "kind" | "tier", _) => {
                    return Err(unsupported(&term, "'='"));
                }
                ("tags", _) => return Err(unsupported(&term, "':' (tags:\"wealth\")")),
                (field, _) => {
                    return Err(format!(
                        "unknown field {field}: filter on home_branch, relationship_manager, kind, tier, tags or update_time"
                    ));
                }
            }
        }
        Ok(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_terms() {
        let f = CustomerFilter::parse(
            r#"home_branch = "B01" AND tier = VIP AND tags:"wealth" AND kind=CORPORATE AND tags:payroll"#,
        )
        .unwrap();
        assert_eq!(f.home_branch.as_deref(), Some("B01"));
        assert_eq!(f.tier, Some(Tier::Vip));
        assert_eq!(f.kind, Some(CustomerKind::Corporate));
        assert_eq!(f.tags, vec!["wealth".to_string(), "payroll".to_string()]);
        assert_eq!(
            CustomerFilter::parse("  ").unwrap(),
            CustomerFilter::default()
        );
    }

    #[test]
    fn quoted_values_keep_what_would_be_sql() {
        let f = CustomerFilter::parse(r#"home_branch = "B01' OR 1=1 --\"x""#).unwrap();
        assert_eq!(f.home_branch.as_deref(), Some("B01' OR 1=1 --\"x"));
    }

    #[test]
    fn refuses_unknown_fields_operators_and_shapes() {
        for bad in [
            "national_id = \"1\"",
            "tier > VIP",
            "tier != VIP",
            "tier = PLATINUM",
            "tags = \"x\"",
            "home_branch = \"B01\" OR tier = VIP",
            "home_branch = \"B01\" AND",
            "home_branch",
            "home_branch = \"B01\" AND home_branch = \"B02\"",
            "home_branch = \"unterminated",
            "tier = VIP tier = VIP",
        ] {
            assert!(CustomerFilter::parse(bad).is_err(), "{bad}");
        }
    }
}
