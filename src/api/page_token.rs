//! Opaque, tamper-checked page tokens (AIP-158): a cursor plus a hash of the
//! query it belongs to, signed with HMAC-SHA256.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::Error;

type HmacSha256 = Hmac<Sha256>;

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 1000;

#[derive(Clone)]
pub struct PageTokens {
    keyed: HmacSha256,
    /// Encoded bytes of the items one page may carry, so that a full page
    /// of the longest texts still fits the largest message the server sends.
    page_bytes: usize,
}

/// The share of `server.max_message_bytes` a page's items may take; the rest
/// is the response's other fields and framing.
const PAGE_SHARE: (usize, usize) = (3, 4);

impl PageTokens {
    /// Keys the HMAC once, at start-up; each token clones the keyed state.
    pub fn new(key: &[u8]) -> Self {
        PageTokens {
            keyed: HmacSha256::new_from_slice(key).expect("HMAC takes any key length"),
            page_bytes: 4 << 20,
        }
    }

    /// Bounds pages by the server's largest message (`server.max_message_bytes`).
    pub fn with_max_message_bytes(mut self, max_message_bytes: usize) -> Self {
        self.page_bytes = max_message_bytes / PAGE_SHARE.1 * PAGE_SHARE.0;
        self
    }

    fn mac(&self, body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(body);
        mac
    }

    /// A token resuming after `cursor` for the query described by `context`
    /// (method, caller and filter).
    pub fn encode(&self, cursor: &str, context: &str) -> String {
        let mut body = Sha256::digest(context.as_bytes())[..8].to_vec();
        body.extend_from_slice(cursor.as_bytes());
        let tag = self.mac(&body).finalize().into_bytes();
        body.extend_from_slice(&tag[..16]);
        URL_SAFE_NO_PAD.encode(body)
    }

    /// Trims a page read with one row more than `limit` and returns the token
    /// of the next page, made from the last row kept; empty on the last page.
    pub fn next_page<T>(
        &self,
        page: &mut Vec<T>,
        limit: i64,
        context: &str,
        cursor: impl FnOnce(&T) -> String,
    ) -> String {
        self.next_sized_page(page, limit, context, |_| 0, |last, _| cursor(last))
    }

    /// `next_page` for items whose size varies widely (notes, bodies): the
    /// page also ends before its items' encoded `size` exceeds the byte
    /// budget (keeping at least one item). `cursor` gets the last item kept
    /// and how many were kept (for offset tokens).
    pub fn next_sized_page<T>(
        &self,
        page: &mut Vec<T>,
        limit: i64,
        context: &str,
        size: impl Fn(&T) -> usize,
        cursor: impl FnOnce(&T, usize) -> String,
    ) -> String {
        let limit = usize::try_from(limit).unwrap_or(0).max(1);
        let mut bytes = 0usize;
        let fits = page
            .iter()
            .take(limit)
            .position(|item| {
                bytes = bytes.saturating_add(size(item));
                bytes > self.page_bytes
            })
            .unwrap_or(limit.min(page.len()))
            .max(1);
        if page.len() <= fits {
            return String::new();
        }
        page.truncate(fits);
        page.last()
            .map(|last| self.encode(&cursor(last, fits), context))
            .unwrap_or_default()
    }

    /// The cursor of a token made by `encode` for the same `context`; `None`
    /// for the empty token (the first page).
    pub fn decode(&self, token: &str, context: &str) -> Result<Option<String>, Error> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || {
            Error::invalid(
                "page_token",
                "is not a page token this service issued for this query",
            )
        };
        if token.len() > 1024 {
            return Err(invalid());
        }
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if raw.len() < 8 + 16 {
            return Err(invalid());
        }
        let (body, tag) = raw.split_at(raw.len() - 16);
        let mac = self.mac(body);
        mac.verify_truncated_left(tag).map_err(|_| invalid())?;
        if body[..8] != Sha256::digest(context.as_bytes())[..8] {
            return Err(invalid());
        }
        String::from_utf8(body[8..].to_vec())
            .map(Some)
            .map_err(|_| invalid())
    }
}

/// AIP-158 page size: 0 → default, capped at the maximum, negative refused.
pub fn page_size(requested: i32) -> Result<i64, Error> {
    match requested {
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok(i64::from(n).min(MAX_PAGE_SIZE)),
    }
}

/// Cursor text of keyset tokens: fields joined by a separator ids never hold.
pub fn join_cursor(parts: &[&str]) -> String {
    parts.join("|")
}

fn not_of_this_list() -> Error {
    Error::invalid("page_token", "is not a page token of this list")
}

/// The `N` fields of a cursor made by `join_cursor`.
pub fn split_cursor<const N: usize>(cursor: &str) -> Result<[String; N], Error> {
    let parts: Vec<String> = cursor.split('|').map(String::from).collect();
    parts.try_into().map_err(|_| not_of_this_list())
}

/// A time field of a cursor, in microseconds since the epoch (what Postgres
/// keeps), back as a time.
pub fn time_from_micros(text: &str) -> Result<DateTime<Utc>, Error> {
    text.parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(not_of_this_list)
}

/// The cursor of a list in (time, id) order: "micros|id".
pub fn time_cursor(time: DateTime<Utc>, id: &str) -> String {
    join_cursor(&[&time.timestamp_micros().to_string(), id])
}

/// A cursor made by `time_cursor`, back as (time, id).
pub fn parse_time_cursor(cursor: &str) -> Result<(DateTime<Utc>, String), Error> {
    let [micros, id] = split_cursor::<2>(cursor)?;
    Ok((time_from_micros(&micros)?, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_cursors_round_trip_and_refuse_other_shapes() {
        let time = DateTime::from_timestamp_micros(1_765_000_000_123_456).unwrap();
        let cursor = time_cursor(time, "cust-42");
        assert_eq!(cursor, "1765000000123456|cust-42");
        assert_eq!(
            parse_time_cursor(&cursor).unwrap(),
            (time, "cust-42".into())
        );
        assert!(parse_time_cursor("cust-42").is_err());
        assert!(parse_time_cursor("soon|cust-42").is_err());
        assert!(parse_time_cursor("1|a|b").is_err());
        assert!(split_cursor::<3>("1|a|b").is_ok());
    }

    #[test]
    fn round_trips_and_refuses_tampering() {
        let tokens = PageTokens::new(b"0123456789abcdef0123456789abcdef");
        let token = tokens.encode("cust-42", "ListCustomers|E1|tier = VIP");
        assert_eq!(
            tokens
                .decode(&token, "ListCustomers|E1|tier = VIP")
                .unwrap(),
            Some("cust-42".to_string())
        );
        assert!(tokens.decode(&token, "ListCustomers|E1|").is_err());
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        raw[9] ^= 1;
        assert!(
            tokens
                .decode(&URL_SAFE_NO_PAD.encode(raw), "ListCustomers|E1|tier = VIP")
                .is_err()
        );
        assert!(tokens.decode("garbage!", "x").is_err());
        let other = PageTokens::new(b"another key of thirty-two bytes!");
        assert!(other.decode(&token, "ListCustomers|E1|tier = VIP").is_err());
        assert_eq!(tokens.decode("", "x").unwrap(), None);
    }

    #[test]
    fn page_sizes_follow_aip_158() {
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(5000).unwrap(), 1000);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn pages_end_before_their_items_outgrow_the_message() {
        // 4 KiB messages: items may take 3 KiB.
        let tokens =
            PageTokens::new(b"0123456789abcdef0123456789abcdef").with_max_message_bytes(4096);
        let mut page: Vec<usize> = vec![1000; 11];
        let mut kept_seen = 0;
        let token = tokens.next_sized_page(
            &mut page,
            10,
            "ctx",
            |s| *s,
            |_, kept| {
                kept_seen = kept;
                "cursor".into()
            },
        );
        assert_eq!((page.len(), kept_seen), (3, 3));
        assert_eq!(
            tokens.decode(&token, "ctx").unwrap().as_deref(),
            Some("cursor")
        );

        // One item larger than the budget still goes out alone.
        let mut page: Vec<usize> = vec![10_000, 10];
        let token = tokens.next_sized_page(&mut page, 10, "ctx", |s| *s, |_, _| "c".into());
        assert_eq!(page, vec![10_000]);
        assert!(!token.is_empty());

        // Small items: the count limit rules, and the last page has no token.
        let mut page: Vec<usize> = vec![10; 5];
        assert!(
            tokens
                .next_sized_page(&mut page, 10, "ctx", |s| *s, |_, _| "c".into())
                .is_empty()
        );
        assert_eq!(page.len(), 5);
    }
}
