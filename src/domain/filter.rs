//! The documented subset of AIP-160 filters for ListCustomers, parsed into a
//! typed query whose values are bound as SQL parameters, never spliced.
//!
//! Grammar: `term (AND term)*`, where a term is `home_branch = "B01"`,
//! `relationship_manager = "E1001"`, `kind = INDIVIDUAL`, `tier = VIP` or
//! `tags:"wealth"`. Values may be quoted (`"..."`, with `\"` and `\\`) or bare
//! words of letters, digits, `-` and `_`.

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Has,
}

fn lex(input: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                tokens.push(Token::Equals);
            }
            ':' => {
                chars.next();
                tokens.push(Token::Has);
            }
            '"' => {
                chars.next();
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
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    Ok(tokens)
}

fn set_once<T>(slot: &mut Option<T>, field: &str, value: T) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{field} may appear only once"));
    }
    *slot = Some(value);
    Ok(())
}

impl CustomerFilter {
    pub fn parse(input: &str) -> Result<Self, String> {
        if input.len() > MAX_FILTER_LEN {
            return Err(format!("must be at most {MAX_FILTER_LEN} bytes"));
        }
        let tokens = lex(input)?;
        let mut filter = CustomerFilter::default();
        let mut rest = tokens.as_slice();
        if rest.is_empty() {
            return Ok(filter);
        }
        loop {
            let (field, op, value) = match rest {
                [
                    Token::Word(field),
                    op @ (Token::Equals | Token::Has),
                    value,
                    tail @ ..,
                ] => {
                    rest = tail;
                    let value = match value {
                        Token::Word(v) | Token::Quoted(v) => v.clone(),
                        _ => return Err(format!("{field} needs a value")),
                    };
                    (field.as_str(), op, value)
                }
                [Token::Word(field), ..] => {
                    return Err(format!(
                        "{field} must be followed by '=' (or ':' for tags) and a value"
                    ));
                }
                _ => return Err("expected a comparison such as home_branch = \"B01\"".into()),
            };
            match (field, op) {
                ("home_branch", Token::Equals) => set_once(&mut filter.home_branch, field, value)?,
                ("relationship_manager", Token::Equals) => {
                    set_once(&mut filter.relationship_manager, field, value)?
                }
                ("kind", Token::Equals) => {
                    let kind = CustomerKind::parse(&value).ok_or_else(|| {
                        format!("kind must be INDIVIDUAL or CORPORATE, not {value}")
                    })?;
                    set_once(&mut filter.kind, field, kind)?
                }
                ("tier", Token::Equals) => {
                    let tier = Tier::parse(&value).ok_or_else(|| {
                        format!("tier must be VIP, MAJOR, ORDINARY or SMALL, not {value}")
                    })?;
                    set_once(&mut filter.tier, field, tier)?
                }
                ("tags", Token::Has) => filter.tags.push(value),
                ("home_branch" | "relationship_manager" | "kind" | "tier", _) => {
                    return Err(format!("{field} supports only '='"));
                }
                ("tags", _) => return Err("tags supports only ':' (tags:\"wealth\")".into()),
                _ => {
                    return Err(format!(
                        "unknown field {field}: filter on home_branch, relationship_manager, kind, tier or tags"
                    ));
                }
            }
            match rest {
                [] => return Ok(filter),
                [Token::Word(and), tail @ ..] if and == "AND" && !tail.is_empty() => rest = tail,
                [Token::Word(op), ..] if op == "OR" || op == "NOT" => {
                    return Err(format!("{op} is not supported; join comparisons with AND"));
                }
                _ => return Err("comparisons must be joined with AND".into()),
            }
        }
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
