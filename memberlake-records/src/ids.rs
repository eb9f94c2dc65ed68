//! Identifiers that cross service boundaries. Each is parsed once at the edge and is valid
//! from then on ("parse, don't validate").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an identifier did not parse; the message is safe to return to a caller (it never
/// echoes an email, only the shape of what was wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("advertiser_id must match [A-Za-z0-9_-]{{1,{max}}}", max = AdvertiserId::MAX_LEN)]
    InvalidAdvertiserId,
    #[error("email_hash must be {len} hexadecimal digits", len = EmailHash::HEX_LEN)]
    InvalidEmailHash,
}

/// An advertiser: `[A-Za-z0-9_-]{1,64}`, the directory name under `advertisers/` in the lake.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AdvertiserId(String);

impl AdvertiserId {
    pub const MAX_LEN: usize = 64;

    /// The rule [`parse`](Self::parse) enforces, as a regular expression (ECMA-262 and Rust
    /// `regex` read it alike): what the API documents state, built from [`Self::MAX_LEN`] so the
    /// two cannot drift; a property test holds it equal to `parse`.
    pub fn pattern() -> String {
        format!("^[A-Za-z0-9_-]{{1,{}}}$", Self::MAX_LEN)
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        let valid = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::InvalidAdvertiserId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AdvertiserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AdvertiserId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for AdvertiserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// MD5 of a normalized email: 16 raw bytes in storage, 32 lower-case hex digits in every API.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailHash(pub [u8; 16]);

impl EmailHash {
    /// Hex digits of a hash on the wire.
    pub const HEX_LEN: usize = 32;

    /// What [`from_hex`](Self::from_hex) accepts, as a regular expression (see
    /// [`AdvertiserId::pattern`]). Answers are lower case, a subset.
    pub fn pattern() -> String {
        format!("^[0-9A-Fa-f]{{{}}}$", Self::HEX_LEN)
    }

    /// Parses 32 hex digits, either case.
    pub fn from_hex(s: &[u8]) -> Result<Self, IdError> {
        if s.len() != Self::HEX_LEN {
            return Err(IdError::InvalidEmailHash);
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| IdError::InvalidEmailHash)?;
        Ok(Self(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for EmailHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for EmailHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailHash({})", self.to_hex())
    }
}

impl FromStr for EmailHash {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s.as_bytes())
    }
}

impl Serialize for EmailHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for EmailHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// A registered lake object. Its id doubles as the advertiser's list version: ids grow with
/// registration order, and a version is only ever compared within one advertiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
pub struct FileId(pub i64);

impl FileId {
    /// The smallest id (a Postgres serial): a file id the APIs accept is at least this.
    pub const MIN: i64 = 1;
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The version of an advertiser's list stored with every membership row. Equal to the
/// [`FileId`] of the file the rows came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
pub struct ListVersion(pub i64);

impl From<FileId> for ListVersion {
    fn from(f: FileId) -> Self {
        ListVersion(f.0)
    }
}

impl fmt::Display for ListVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Postgres encoding of [`AdvertiserId`]: `TEXT`, validated again when decoded, so a row
/// can never smuggle an invalid id past the type.
#[cfg(feature = "sqlx")]
mod postgres {
    use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef, Postgres};
    use sqlx::{Decode, Encode, Type};

    use super::{AdvertiserId, EmailHash};

    impl Type<Postgres> for AdvertiserId {
        fn type_info() -> PgTypeInfo {
            <String as Type<Postgres>>::type_info()
        }
        fn compatible(ty: &PgTypeInfo) -> bool {
            <String as Type<Postgres>>::compatible(ty)
        }
    }

    impl Encode<'_, Postgres> for AdvertiserId {
        fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
            <&str as Encode<Postgres>>::encode(self.as_str(), buf)
        }
    }

    impl<'r> Decode<'r, Postgres> for AdvertiserId {
        fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
            let s = <&str as Decode<Postgres>>::decode(value)?;
            Ok(AdvertiserId::parse(s)?)
        }
    }

    /// `BYTEA`, the raw bytes; a value of another width fails to decode.
    impl Type<Postgres> for EmailHash {
        fn type_info() -> PgTypeInfo {
            <&[u8] as Type<Postgres>>::type_info()
        }
        fn compatible(ty: &PgTypeInfo) -> bool {
            <&[u8] as Type<Postgres>>::compatible(ty)
        }
    }

    impl Encode<'_, Postgres> for EmailHash {
        fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
            <&[u8] as Encode<Postgres>>::encode(&self.0[..], buf)
        }
    }

    impl<'r> Decode<'r, Postgres> for EmailHash {
        fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
            let bytes = <&[u8] as Decode<Postgres>>::decode(value)?;
            Ok(EmailHash(bytes.try_into().map_err(|_| format!("an email hash of {} bytes", bytes.len()))?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertiser_id_rules() {
        assert!(AdvertiserId::parse("acme_01-x").is_ok());
        assert!(AdvertiserId::parse(&"a".repeat(64)).is_ok());
        assert!(AdvertiserId::parse(&"a".repeat(65)).is_err());
        assert!(AdvertiserId::parse("").is_err());
        assert!(AdvertiserId::parse("a/b").is_err());
        assert!(AdvertiserId::parse("a b").is_err());
        assert!(AdvertiserId::parse("é").is_err());
    }

    #[test]
    fn email_hash_hex_round_trip_and_case() {
        let h = EmailHash::from_hex(b"0123456789ABCDEFabcdef0123456789").unwrap();
        assert_eq!(h.to_hex(), "0123456789abcdefabcdef0123456789");
        assert!(EmailHash::from_hex(b"0123").is_err());
        assert!(EmailHash::from_hex(b"0123456789abcdefabcdef012345678g").is_err());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, "\"0123456789abcdefabcdef0123456789\"");
        let back: EmailHash = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
    }
}
