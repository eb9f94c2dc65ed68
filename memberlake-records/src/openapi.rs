//! The OpenAPI schemas of the identifiers and states that cross the APIs (feature `openapi`),
//! built from the constants their parsers use, so that the API documents state exactly what the
//! servers enforce. Each is a named component (`$ref: #/components/schemas/AdvertiserId`, ...):
//! a document registers the ones it uses.
//!
//! The tests below hold each schema equal to its parser: a value the schema admits parses, and
//! one it refuses does not.

use std::borrow::Cow;

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::ids::{AdvertiserId, EmailHash, FileId};
use crate::records::RejectReason;
use crate::states::FileState;

impl PartialSchema for AdvertiserId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(AdvertiserId::pattern()))
            .min_length(Some(1))
            .max_length(Some(AdvertiserId::MAX_LEN))
            .description(Some(
                "An advertiser: 1 to 64 of A-Z, a-z, 0-9, `_` and `-` (its directory under `advertisers/` in the lake)",
            ))
            .examples(["acme"])
            .into()
    }
}

impl ToSchema for AdvertiserId {
    fn name() -> Cow<'static, str> {
        "AdvertiserId".into()
    }
}

impl PartialSchema for EmailHash {
    /// The deployment's scheme's hashes (the document is built after the scheme is installed).
    fn schema() -> RefOr<Schema> {
        let scheme = crate::ids::HashScheme::deployment();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(EmailHash::pattern()))
            .min_length(Some(EmailHash::hex_len()))
            .max_length(Some(EmailHash::hex_len()))
            .description(Some(format!(
                "{} of the normalized email (this deployment's MEMBERLAKE_HASH): {} hex digits, either case in \
                 requests, lower case in answers",
                scheme.as_str().to_uppercase(),
                scheme.hex_len()
            )))
            .examples([scheme.hash(b"jane.doe@example.com").to_hex()])
            .into()
    }
}

impl ToSchema for EmailHash {
    fn name() -> Cow<'static, str> {
        "EmailHash".into()
    }
}

impl PartialSchema for FileId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(FileId::MIN))
            .maximum(Some(i64::MAX))
            .description(Some("A registered lake object; also the list version made from it"))
            .examples([42])
            .into()
    }
}

impl ToSchema for FileId {
    fn name() -> Cow<'static, str> {
        "FileId".into()
    }
}

impl PartialSchema for FileState {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(FileState::ALL.map(FileState::as_str)))
            .description(Some("A file's lifecycle state"))
            .into()
    }
}

impl ToSchema for FileState {
    fn name() -> Cow<'static, str> {
        "FileState".into()
    }
}

impl PartialSchema for RejectReason {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(RejectReason::ALL.map(RejectReason::as_str)))
            .description(Some("Why a row was rejected"))
            .into()
    }
}

impl ToSchema for RejectReason {
    fn name() -> Cow<'static, str> {
        "RejectReason".into()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// Whether `schema` (a string schema as served) admits `s`, by the facets the documents use.
    fn admits(schema: &Value, s: &str) -> bool {
        let len = s.chars().count() as u64;
        let pattern = regex::Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
        pattern.is_match(s)
            && schema["minLength"].as_u64().is_none_or(|min| len >= min)
            && schema["maxLength"].as_u64().is_none_or(|max| len <= max)
    }

    fn served<T: PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    /// Strings near the rules: the right alphabet and lengths around the bounds, a stray
    /// character, anything at all.
    fn candidates(alphabet: &'static str, max: usize) -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::string::string_regex(&format!("{alphabet}{{0,{}}}", max + 2)).unwrap(),
            (proptest::string::string_regex(&format!("{alphabet}{{0,{max}}}")).unwrap(), any::<char>(), any::<usize>())
                .prop_map(|(s, c, at)| {
                    let mut chars: Vec<char> = s.chars().collect();
                    chars.insert(at % (chars.len() + 1), c);
                    chars.into_iter().collect()
                }),
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn the_advertiser_id_schema_is_its_parser(s in candidates("[A-Za-z0-9_-]", AdvertiserId::MAX_LEN)) {
            prop_assert_eq!(admits(&served::<AdvertiserId>(), &s), AdvertiserId::parse(&s).is_ok(), "{:?}", s);
        }

        #[test]
        fn the_email_hash_schema_is_its_parser(s in candidates("[0-9A-Fa-f]", EmailHash::hex_len())) {
            prop_assert_eq!(admits(&served::<EmailHash>(), &s), EmailHash::from_hex(s.as_bytes()).is_ok(), "{:?}", s);
        }
    }

    #[test]
    fn the_bounds_themselves() {
        let id = served::<AdvertiserId>();
        assert!(
            admits(&id, &"a".repeat(AdvertiserId::MAX_LEN)) && !admits(&id, &"a".repeat(AdvertiserId::MAX_LEN + 1))
        );
        assert!(!admits(&id, "") && !admits(&id, "acme\n"));
        let hash = served::<EmailHash>();
        assert!(admits(&hash, &"aB".repeat(16)) && !admits(&hash, &"a".repeat(31)) && !admits(&hash, &"a".repeat(33)));
    }

    #[test]
    fn enums_list_every_wire_name() {
        let states = served::<FileState>();
        let names: Vec<_> = states["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        for state in FileState::ALL {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert_eq!(names, FileState::ALL.map(FileState::as_str));
        let reasons = served::<RejectReason>();
        assert_eq!(reasons["enum"].as_array().unwrap().len(), RejectReason::ALL.len());
        for reason in RejectReason::ALL {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }

    #[test]
    fn file_ids_are_bounded_like_their_type() {
        let schema = served::<FileId>();
        assert_eq!((&schema["minimum"], &schema["maximum"]), (&FileId::MIN.into(), &i64::MAX.into()));
    }
}
