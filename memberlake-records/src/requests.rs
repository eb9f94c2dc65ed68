//! The matcher API's request grammar, as pure functions: strict, total (never panic on any
//! input), and fuzzed. The HTTP layer maps [`RequestError`] to a 400 with its message.

use std::collections::HashSet;

use serde::Deserialize;

use crate::ids::{AdvertiserId, EmailHash};

/// Most advertisers one `/v1/suppress` call may ask about.
pub const MAX_SUPPRESS_ADVERTISERS: usize = 1000;

/// What is wrong with a request, in words safe to return to the caller (never echoing more than
/// a short prefix of what it sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

fn err(msg: impl Into<String>) -> RequestError {
    RequestError(msg.into())
}

/// Parses `advertiser_id=A&email_hash=H` strictly: both required, once each, nothing else.
pub fn parse_match_query(query: &str) -> Result<(AdvertiserId, EmailHash), RequestError> {
    let mut advertiser = None;
    let mut hash = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match key.as_ref() {
            "advertiser_id" => &mut advertiser,
            "email_hash" => &mut hash,
            other => return Err(err(format!("unknown query parameter {:?}", truncate(other, 64)))),
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(err(format!("query parameter {key} given twice")));
        }
    }
    let advertiser = advertiser.ok_or_else(|| err("missing query parameter advertiser_id"))?;
    let hash = hash.ok_or_else(|| err("missing query parameter email_hash"))?;
    Ok((parse_advertiser(&advertiser)?, parse_hash(&hash)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressBody {
    email_hash: String,
    advertiser_ids: Vec<String>,
}

/// Parses a `/v1/suppress` body: the hash, and at most [`MAX_SUPPRESS_ADVERTISERS`] advertisers,
/// deduplicated in request order.
pub fn parse_suppress_body(body: &[u8]) -> Result<(EmailHash, Vec<AdvertiserId>), RequestError> {
    let request: SuppressBody = serde_json::from_slice(body)
        .map_err(|e| err(format!("invalid JSON body: {}", truncate(&e.to_string(), 200))))?;
    let hash = parse_hash(&request.email_hash)?;
    if request.advertiser_ids.len() > MAX_SUPPRESS_ADVERTISERS {
        return Err(err(format!(
            "at most {MAX_SUPPRESS_ADVERTISERS} advertiser_ids per call (got {})",
            request.advertiser_ids.len()
        )));
    }
    let mut seen = HashSet::with_capacity(request.advertiser_ids.len());
    let mut advertisers = Vec::with_capacity(request.advertiser_ids.len());
    for (i, raw) in request.advertiser_ids.iter().enumerate() {
        let adv = AdvertiserId::parse(raw).map_err(|e| err(format!("advertiser_ids[{i}]: {e}")))?;
        if seen.insert(adv.clone()) {
            advertisers.push(adv);
        }
    }
    Ok((hash, advertisers))
}

fn parse_hash(raw: &str) -> Result<EmailHash, RequestError> {
    EmailHash::from_hex(raw.as_bytes()).map_err(|e| err(e.to_string()))
}

fn parse_advertiser(raw: &str) -> Result<AdvertiserId, RequestError> {
    AdvertiserId::parse(raw).map_err(|e| err(format!("{e} (got {} bytes)", raw.len())))
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "c160f8cc69a4f0bf2b0362752353d060";

    #[test]
    fn match_queries() {
        let (a, h) = parse_match_query(&format!("advertiser_id=acme&email_hash={}", H.to_uppercase())).unwrap();
        assert_eq!((a.as_str(), h.to_hex().as_str()), ("acme", H));
        for bad in [
            "",
            "advertiser_id=acme",
            &format!("email_hash={H}"),
            &format!("advertiser_id=a&advertiser_id=b&email_hash={H}"),
            &format!("advertiser_id=a&email_hash={H}&x=1"),
            "advertiser_id=a%2Fb&email_hash=00",
        ] {
            assert!(parse_match_query(bad).is_err(), "{bad}");
        }
        let long = format!("{}=1", "k".repeat(10_000));
        assert!(parse_match_query(&long).unwrap_err().0.len() < 200, "errors do not echo long input");
    }

    #[test]
    fn suppress_bodies() {
        let (h, ads) =
            parse_suppress_body(format!(r#"{{"email_hash":"{H}","advertiser_ids":["b","a","b"]}}"#).as_bytes())
                .unwrap();
        assert_eq!(h.to_hex(), H);
        assert_eq!(ads.iter().map(|a| a.as_str()).collect::<Vec<_>>(), vec!["b", "a"]);
        let many: Vec<String> = (0..1001).map(|i| format!("\"a{i}\"")).collect();
        let body = format!(r#"{{"email_hash":"{H}","advertiser_ids":[{}]}}"#, many.join(","));
        assert!(parse_suppress_body(body.as_bytes()).unwrap_err().0.contains("at most 1000"));
        assert!(parse_suppress_body(b"{").is_err());
        assert!(parse_suppress_body(format!(r#"{{"email_hash":"{H}","advertiser_ids":[],"x":1}}"#).as_bytes()).is_err());
    }
}
