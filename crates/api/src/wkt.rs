//! Well-known protobuf types whose JSON form we write ourselves.
//!
//! All other `google.protobuf.*` types come from `pbjson-types`. Its
//! `Timestamp` writes `+00:00` where protojson requires `Z`, so
//! `google.protobuf.Timestamp` is mapped to [`Timestamp`] instead.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Seconds of 0001-01-01T00:00:00Z, the earliest protojson timestamp.
const MIN_SECONDS: i64 = -62_135_596_800;
/// Seconds of 9999-12-31T23:59:59Z, the latest protojson timestamp.
const MAX_SECONDS: i64 = 253_402_300_799;
/// Largest valid `nanos`.
const MAX_NANOS: i32 = 999_999_999;

/// `google.protobuf.Timestamp`: a UTC instant as seconds and nanoseconds since
/// the Unix epoch. Same wire format as the well-known type.
///
/// JSON follows protojson: RFC 3339 in UTC with a `Z` suffix and 0, 3, 6 or 9
/// fractional digits out (`"2024-01-02T03:04:05.500Z"`); any RFC 3339 offset
/// in. Values outside years 1 to 9999, or with `nanos` outside
/// `0..=999_999_999`, are refused both ways.
#[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Non-negative fraction of a second, in nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    /// The instant as a `chrono` date-time, if it is in the protojson range.
    #[must_use]
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&self.seconds)
            || !(0..=MAX_NANOS).contains(&self.nanos)
        {
            return None;
        }
        DateTime::from_timestamp(self.seconds, u32::try_from(self.nanos).ok()?)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(time: DateTime<Utc>) -> Self {
        Self {
            seconds: time.timestamp(),
            // Below one second, so it always fits.
            nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(MAX_NANOS),
        }
    }
}

impl From<pbjson_types::Timestamp> for Timestamp {
    fn from(t: pbjson_types::Timestamp) -> Self {
        Self {
            seconds: t.seconds,
            nanos: t.nanos,
        }
    }
}

impl From<Timestamp> for pbjson_types::Timestamp {
    fn from(t: Timestamp) -> Self {
        Self {
            seconds: t.seconds,
            nanos: t.nanos,
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(datetime) = self.to_datetime() else {
            return Err(serde::ser::Error::custom(format_args!(
                "timestamp out of range: {}s {}ns",
                self.seconds, self.nanos
            )));
        };
        serializer.serialize_str(&datetime.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let parsed = Self::from(pbjson_types::Timestamp::deserialize(deserializer)?);
        if parsed.to_datetime().is_none() {
            return Err(serde::de::Error::custom(
                "timestamp outside years 1 to 9999",
            ));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(seconds: i64, nanos: i32) -> String {
        serde_json::to_string(&Timestamp { seconds, nanos }).unwrap()
    }

    #[test]
    fn writes_utc_with_z_and_minimal_fraction_groups() {
        assert_eq!(json(0, 0), r#""1970-01-01T00:00:00Z""#);
        assert_eq!(
            json(1_700_000_000, 500_000_000),
            r#""2023-11-14T22:13:20.500Z""#
        );
        assert_eq!(
            json(1_700_000_000, 1_000),
            r#""2023-11-14T22:13:20.000001Z""#
        );
        assert_eq!(
            json(1_700_000_000, 1),
            r#""2023-11-14T22:13:20.000000001Z""#
        );
        assert_eq!(json(MIN_SECONDS, 0), r#""0001-01-01T00:00:00Z""#);
        assert_eq!(
            json(MAX_SECONDS, MAX_NANOS),
            r#""9999-12-31T23:59:59.999999999Z""#
        );
    }

    #[test]
    fn refuses_out_of_range_values() {
        for (seconds, nanos) in [
            (MIN_SECONDS - 1, 0),
            (MAX_SECONDS + 1, 0),
            (0, -1),
            (0, MAX_NANOS + 1),
        ] {
            assert!(
                serde_json::to_string(&Timestamp { seconds, nanos }).is_err(),
                "{seconds} {nanos}"
            );
        }
    }

    #[test]
    fn reads_any_offset() {
        let read = |s: &str| serde_json::from_str::<Timestamp>(s).unwrap();
        let expected = Timestamp {
            seconds: 1_700_000_000,
            nanos: 500_000_000,
        };
        assert_eq!(read(r#""2023-11-14T22:13:20.5Z""#), expected);
        assert_eq!(read(r#""2023-11-15T00:13:20.500+02:00""#), expected);
        assert!(serde_json::from_str::<Timestamp>(r#""2023-11-14""#).is_err());
        assert!(serde_json::from_str::<Timestamp>("1700000000").is_err());
    }
}
