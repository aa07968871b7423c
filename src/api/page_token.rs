//! Opaque, tamper-checked page tokens (AIP-158): a cursor plus a hash of the
//! query it belongs to, signed with HMAC-SHA256.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{
    domain::filter::ListOrder,
    error::{Error, Violations},
};

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

/// The `order_by` of a list request (AIP-132); an unknown order is a
/// violation of `order_by`, reported with the request's others.
pub fn list_order(order_by: &str, violations: &mut Violations) -> ListOrder {
    ListOrder::parse(order_by)
        .inspect_err(|e| violations.add("order_by", e.clone()))
        .unwrap_or_default()
}

/// How a list's page tokens are made, fixed per list.
#[derive(Debug, Clone, Copy)]
pub struct ListTokens {
    /// The list's natural order leads with a time (a timeline, due or
    /// creation times); false where it is by ids alone (its cursor is the
    /// last id).
    pub natural_timed: bool,
    /// The context names the order even for the natural one, as
    /// ListCustomers' tokens did from the start. Otherwise the natural order
    /// keeps the context of the tokens issued before `order_by` existed.
    pub order_always_named: bool,
}

/// Where a keyset page resumes: the sort time of the last row read (None
/// for an order by ids alone) and the ids that break ties, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset<const N: usize> {
    pub time: Option<DateTime<Utc>>,
    pub ids: [String; N],
}

impl<const N: usize> Keyset<N> {
    /// "micros|id|…" (as `time_cursor` and `join_cursor` write it), or the
    /// ids alone.
    fn text(&self) -> String {
        let micros = self.time.map(|t| t.timestamp_micros().to_string());
        let parts: Vec<&str> = micros
            .iter()
            .chain(self.ids.iter())
            .map(String::as_str)
            .collect();
        join_cursor(&parts)
    }

    fn parse(text: &str, timed: bool) -> Result<Self, Error> {
        let mut parts = text.split('|');
        let time = if timed {
            Some(time_from_micros(parts.next().unwrap_or_default())?)
        } else {
            None
        };
        let ids: Vec<String> = parts.map(String::from).collect();
        let ids = ids.try_into().map_err(|_| not_of_this_list())?;
        Ok(Keyset { time, ids })
    }

    /// The time and ids of a cursor of a timed order.
    pub fn timed(self) -> Result<(DateTime<Utc>, [String; N]), Error> {
        Ok((self.time.ok_or_else(not_of_this_list)?, self.ids))
    }
}

/// A row's place in either order of its list.
#[derive(Debug, Clone)]
pub struct RowKeys<const N: usize> {
    /// Its sort time in the natural order; None where that is by ids alone.
    pub natural_time: Option<DateTime<Utc>>,
    /// When it last changed: its sort time in `update_time` order.
    pub update_time: DateTime<Utc>,
    /// The ids that break ties, in the order the list sorts by them.
    pub ids: [String; N],
}

/// The page tokens of one list request under the order it asked for: the
/// query a token is bound to (order included) and the keyset a page resumes
/// after. One mechanism for every list that can follow changes, so a token
/// issued for one order is refused for the other and the default order's
/// tokens stay what they were.
pub struct OrderedPages<'a> {
    tokens: &'a PageTokens,
    order: ListOrder,
    natural_timed: bool,
    context: String,
}

impl PageTokens {
    /// Tokens of `list` in `order` for `query` (method, caller, parent,
    /// filter: whatever tells one query of the list from another).
    pub fn ordered(&self, list: ListTokens, order: ListOrder, query: String) -> OrderedPages<'_> {
        let context = if order == ListOrder::Natural && !list.order_always_named {
            query
        } else {
            format!("{query}|{order:?}")
        };
        OrderedPages {
            tokens: self,
            order,
            natural_timed: list.natural_timed,
            context,
        }
    }
}

impl OrderedPages<'_> {
    pub fn order(&self) -> ListOrder {
        self.order
    }

    fn timed(&self) -> bool {
        self.order == ListOrder::UpdateTime || self.natural_timed
    }

    /// Where the page of `page_token` resumes in this order; None for the
    /// first page.
    pub fn resume<const N: usize>(&self, page_token: &str) -> Result<Option<Keyset<N>>, Error> {
        self.tokens
            .decode(page_token, &self.context)?
            .map(|cursor| Keyset::parse(&cursor, self.timed()))
            .transpose()
    }

    /// `PageTokens::next_sized_page` in this order: the token of the next
    /// page holds the keyset of the last row kept, from its `keys`.
    pub fn next_page<T, const N: usize>(
        &self,
        page: &mut Vec<T>,
        limit: i64,
        size: impl Fn(&T) -> usize,
        keys: impl FnOnce(&T) -> RowKeys<N>,
    ) -> String {
        self.tokens
            .next_sized_page(page, limit, &self.context, size, |last, _| {
                let keys = keys(last);
                debug_assert_eq!(keys.natural_time.is_some(), self.natural_timed);
                let time = match self.order {
                    ListOrder::Natural => keys.natural_time,
                    ListOrder::UpdateTime => Some(keys.update_time),
                };
                Keyset {
                    time,
                    ids: keys.ids,
                }
                .text()
            })
    }
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

    const BY_ID: ListTokens = ListTokens {
        natural_timed: false,
        order_always_named: false,
    };

    #[test]
    fn ordered_tokens_keep_the_contexts_issued_before_order_by() {
        let tokens = PageTokens::new(b"0123456789abcdef0123456789abcdef");
        let query = || "ListKnowledgeItems|E1|".to_string();
        // A token of the natural order from before: the bare query.
        let before = tokens.encode("item-7", &query());
        let pages = tokens.ordered(BY_ID, ListOrder::Natural, query());
        let keyset = pages.resume::<1>(&before).unwrap().unwrap();
        assert_eq!(keyset.time, None);
        assert_eq!(keyset.ids, ["item-7".to_string()]);
        // ListCustomers named its order from the start.
        let named = ListTokens {
            order_always_named: true,
            ..BY_ID
        };
        let before = tokens.encode("cust-1", "ListCustomers|E1||Natural");
        let pages = tokens.ordered(named, ListOrder::Natural, "ListCustomers|E1|".into());
        assert!(pages.resume::<1>(&before).unwrap().is_some());
        // update_time order: "|UpdateTime" appended, a time cursor.
        let before = tokens.encode(
            "1765000000123456|item-7",
            "ListKnowledgeItems|E1||UpdateTime",
        );
        let pages = tokens.ordered(BY_ID, ListOrder::UpdateTime, query());
        let (time, ids) = pages
            .resume::<1>(&before)
            .unwrap()
            .unwrap()
            .timed()
            .unwrap();
        assert_eq!(time.timestamp_micros(), 1_765_000_000_123_456);
        assert_eq!(ids, ["item-7".to_string()]);
    }

    #[test]
    fn a_token_of_one_order_is_refused_for_the_other() {
        let tokens = PageTokens::new(b"0123456789abcdef0123456789abcdef");
        let due = ListTokens {
            natural_timed: true,
            order_always_named: false,
        };
        let time = DateTime::from_timestamp_micros(1_765_000_000_000_001).unwrap();
        let next = |order| {
            let pages = tokens.ordered(due, order, "ListFollowUps|E1|customers/-|".into());
            let mut page = vec![1, 2];
            let token = pages.next_page(
                &mut page,
                1,
                |_| 0,
                |_| RowKeys {
                    natural_time: Some(time),
                    update_time: time + chrono::Duration::seconds(1),
                    ids: ["c1".to_string(), "f1".to_string()],
                },
            );
            (pages, token)
        };
        let (natural, natural_token) = next(ListOrder::Natural);
        let (by_update, update_token) = next(ListOrder::UpdateTime);
        let (at, ids) = natural
            .resume::<2>(&natural_token)
            .unwrap()
            .unwrap()
            .timed()
            .unwrap();
        assert_eq!((at, ids), (time, ["c1".to_string(), "f1".to_string()]));
        let (at, _) = by_update
            .resume::<2>(&update_token)
            .unwrap()
            .unwrap()
            .timed()
            .unwrap();
        assert_eq!(at, time + chrono::Duration::seconds(1));
        assert!(natural.resume::<2>(&update_token).is_err());
        assert!(by_update.resume::<2>(&natural_token).is_err());
        // A cursor of another shape (one id where two are kept) is refused.
        let one_id = tokens.encode("1|f1", "ListFollowUps|E1|customers/-|");
        assert!(natural.resume::<2>(&one_id).is_err());
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
