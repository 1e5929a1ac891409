//! Private wire helpers: list envelopes, lenient (de)serializers and the few response bodies
//! that never leave the crate. Public request and response types live in `types` and carry
//! their wire names as serde attributes; everything here is an implementation detail.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat};
use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer, Serializer};

use crate::ids::GroupId;
use crate::types::{FileEntry, Page};

/// Both list envelopes in one lenient struct:
/// `/ext/api/v2` `PaginatedList { count, page, total_pages, items }` and AlayaMarket
/// `PageCore { page, items_per_page, total_items, total_pages, items }` (notes 3.1).
/// Only `items` is required (AUTHX requires nothing else).
#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
pub(crate) struct AnyPage<T> {
    #[serde(default, deserialize_with = "null_default")]
    items: Vec<T>,
    #[serde(default)]
    page: Option<u32>,
    #[serde(default)]
    total_pages: Option<u32>,
    #[serde(default)]
    total_items: Option<u64>,
}

impl<T> AnyPage<T> {
    pub(crate) fn into_page(self, requested_page: u32) -> Page<T> {
        let page = self.page.unwrap_or(requested_page);
        Page {
            // A missing `total_pages` means "this is all there is".
            total_pages: self.total_pages.unwrap_or(page),
            page,
            total_items: self.total_items,
            items: self.items,
        }
    }
}

/// `{ "filepath": "..." }`, the outbox attachment upload answer.
#[derive(Deserialize)]
pub(crate) struct UploadAnswer {
    pub(crate) filepath: String,
}

/// The Files API folder listing: a bare array per its schema, or wrapped in `entries` as in
/// the sibling employee-attachments example (notes 10.1 \[CONFLICT\]: parse both).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum FolderListing {
    Bare(Vec<FileEntry>),
    Wrapped { entries: Vec<FileEntry> },
}

impl FolderListing {
    pub(crate) fn into_entries(self) -> Vec<FileEntry> {
        match self {
            Self::Bare(v) | Self::Wrapped { entries: v } => v,
        }
    }
}

/// `null` (or a missing field, with `#[serde(default)]`) becomes `T::default()`.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A string that some specs type as a number (service detail `service_id` example `347`,
/// referral `outbox_id`).
pub(crate) fn opt_string_lenient<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StrOrNum {
        S(String),
        I(i64),
        U(u64),
        F(f64),
    }
    Ok(Option::<StrOrNum>::deserialize(d)?.map(|v| match v {
        StrOrNum::S(s) => s,
        StrOrNum::I(i) => i.to_string(),
        StrOrNum::U(u) => u.to_string(),
        StrOrNum::F(f) => f.to_string(),
    }))
}

/// `YYYY-MM-DD`, or a date-time whose date part is taken as written (AUTHI-era responses
/// echo `2020-06-17T00:00:00+00:00`; notes 3.4). Unparseable values are an error, not `None`:
/// a reconcile that silently lost a date would re-create a duplicate.
pub(crate) fn opt_date_lenient<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<NaiveDate>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let head = s.get(..10).unwrap_or(s);
    NaiveDate::parse_from_str(head, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| de::Error::custom("date is not YYYY-MM-DD"))
}

/// RFC 3339 with offset; a naive date-time is read as UTC. Unparseable values are an error.
pub(crate) fn opt_datetime_lenient<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(dt));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(Some(naive.and_utc().fixed_offset()));
        }
    }
    Err(de::Error::custom("date-time is not RFC 3339"))
}

/// RFC 3339 with an explicit offset and whole seconds, e.g. `2023-04-01T00:00:00-05:00`
/// (the referral `start_at` / `end_at`; notes 3.4).
pub(crate) fn rfc3339_secs<S: Serializer>(
    dt: &DateTime<FixedOffset>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&dt.to_rfc3339_opts(SecondsFormat::Secs, false))
}

/// Group ids go out as `[{ "id": 1008 }]` (ACCloud reads only `id`).
pub(crate) fn group_refs<S: Serializer>(ids: &[GroupId], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(ids.len()))?;
    for id in ids {
        let mut m = BTreeMap::new();
        m.insert("id", *id);
        seq.serialize_element(&m)?;
    }
    seq.end()
}

pub(crate) fn opt_group_refs<S: Serializer>(
    ids: &Option<Vec<GroupId>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match ids {
        Some(ids) => group_refs(ids, s),
        None => s.serialize_none(),
    }
}

/// `is_primary` is an integer (0/1) in the Services spec; the guide's `true` is a doc slip
/// (notes 4.7 and 6.5).
pub(crate) fn bool_as_int<S: Serializer>(b: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(u8::from(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct D {
        #[serde(default, deserialize_with = "opt_date_lenient")]
        d: Option<NaiveDate>,
        #[serde(default, deserialize_with = "opt_datetime_lenient")]
        t: Option<DateTime<FixedOffset>>,
    }

    #[test]
    fn dates_parse_both_forms_and_reject_garbage() {
        let v: D =
            serde_json::from_str(r#"{"d":"2020-06-17T00:00:00+00:00","t":"2023-04-01T05:00:00Z"}"#)
                .unwrap();
        assert_eq!(v.d, NaiveDate::from_ymd_opt(2020, 6, 17));
        assert_eq!(v.t.unwrap().to_rfc3339(), "2023-04-01T05:00:00+00:00");
        let v: D = serde_json::from_str(r#"{"d":null,"t":"2023-04-01T05:00:00"}"#).unwrap();
        assert_eq!(v.d, None);
        assert!(v.t.is_some());
        assert!(serde_json::from_str::<D>(r#"{"d":"next week"}"#).is_err());
        assert!(serde_json::from_str::<D>(r#"{"t":"yesterday"}"#).is_err());
    }

    #[test]
    fn pages_accept_both_envelopes() {
        let a: AnyPage<u8> =
            serde_json::from_str(r#"{"count":2,"page":1,"total_pages":3,"items":[1,2]}"#).unwrap();
        let a = a.into_page(1);
        assert_eq!(
            (a.items.len(), a.page, a.total_pages, a.total_items),
            (2, 1, 3, None)
        );
        assert!(a.has_next());
        let b: AnyPage<u8> = serde_json::from_str(
            r#"{"page":2,"items_per_page":100,"total_items":101,"total_pages":2,"items":[1]}"#,
        )
        .unwrap();
        let b = b.into_page(2);
        assert_eq!((b.page, b.total_pages, b.total_items), (2, 2, Some(101)));
        assert!(!b.has_next());
        let c: AnyPage<u8> = serde_json::from_str(r#"{"items":[]}"#).unwrap();
        assert!(!c.into_page(4).has_next());
    }
}
