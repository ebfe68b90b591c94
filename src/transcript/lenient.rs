//! Deserialization helpers that accept the shapes real producers write rather than
//! the shapes they should write: a `message` that is a bare string, a token count that
//! is `null`, a content block that is not an object.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A value that is `T` when the input is a JSON object, and `Invalid` for any other
/// JSON value (string, number, array, …) instead of failing the whole line.
#[derive(Debug, Clone, PartialEq)]
pub enum Lenient<T> {
    /// The input was an object and decoded as `T`.
    Valid(T),
    /// The input was valid JSON of another shape; it is skipped.
    Invalid,
}

impl<T> Lenient<T> {
    /// The decoded value, if the input had the expected shape.
    pub fn valid(&self) -> Option<&T> {
        match self {
            Lenient::Valid(value) => Some(value),
            Lenient::Invalid => None,
        }
    }

    /// Consumes the wrapper, returning the decoded value if there was one.
    pub fn into_valid(self) -> Option<T> {
        match self {
            Lenient::Valid(value) => Some(value),
            Lenient::Invalid => None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(PhantomData))
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Lenient::Valid)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Lenient::Invalid)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Lenient::Invalid)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Lenient::Invalid)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Lenient::Invalid)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Lenient::Invalid)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Lenient::Invalid)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Lenient::Invalid)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Lenient::Invalid)
    }
}

/// Deserializes a token count written as a number, `null`, a float or a numeric
/// string; anything else counts as zero rather than failing the line.
pub fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct CountVisitor;
    impl<'de> Visitor<'de> for CountVisitor {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a token count")
        }
        fn visit_u64<E>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E>(self, v: i64) -> Result<u64, E> {
            Ok(u64::try_from(v).unwrap_or(0))
        }
        fn visit_f64<E>(self, v: f64) -> Result<u64, E> {
            Ok(if v.is_finite() && v > 0.0 {
                v as u64
            } else {
                0
            })
        }
        fn visit_str<E>(self, v: &str) -> Result<u64, E> {
            Ok(v.trim().parse().unwrap_or(0))
        }
        fn visit_unit<E>(self) -> Result<u64, E> {
            Ok(0)
        }
        fn visit_none<E>(self) -> Result<u64, E> {
            Ok(0)
        }
        fn visit_bool<E>(self, _: bool) -> Result<u64, E> {
            Ok(0)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(0)
        }
    }
    // No response has anywhere near 2^40 tokens; a larger number is garbage and
    // must not overflow the sums it goes into.
    deserializer
        .deserialize_any(CountVisitor)
        .map(|count| count.min(MAX_COUNT))
}

/// The largest token count taken as written.
pub const MAX_COUNT: u64 = 1 << 40;

/// The largest cost taken as written for one response, in USD. A response to the
/// largest context costs some dollars; a `costUSD` far beyond that is garbage,
/// and must not overflow the sums it goes into.
pub const MAX_COST_USD: f64 = 10_000.0;

/// Deserializes a `costUSD`: a number from 0 to [`MAX_COST_USD`]. Anything else
/// (another shape, a negative or absurd amount) is treated as absent, so the
/// response is priced from its tokens instead of failing the line.
pub fn cost_usd<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let cost: Option<f64> = optional(deserializer)?;
    Ok(cost.filter(|usd| (0.0..=MAX_COST_USD).contains(usd)))
}

/// Deserializes an optional value, treating a value of the wrong shape as absent.
pub fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Inner {
        a: u64,
    }

    #[derive(Deserialize)]
    struct Outer {
        x: Option<Lenient<Inner>>,
        #[serde(default, deserialize_with = "count")]
        n: u64,
    }

    #[test]
    fn lenient_accepts_other_shapes() {
        for (json, expected) in [
            (r#"{"x":{"a":1}}"#, Some(Lenient::Valid(Inner { a: 1 }))),
            (r#"{"x":"error"}"#, Some(Lenient::Invalid)),
            (r#"{"x":[1,{"b":2}]}"#, Some(Lenient::Invalid)),
            (r#"{"x":42}"#, Some(Lenient::Invalid)),
            (r#"{}"#, None),
        ] {
            let outer: Outer = serde_json::from_str(json).expect(json);
            assert_eq!(outer.x, expected, "{json}");
        }
    }

    #[test]
    fn counts_accept_null_strings_and_floats() {
        for (json, expected) in [
            (r#"{"n":7}"#, 7),
            (r#"{"n":null}"#, 0),
            (r#"{"n":"12"}"#, 12),
            (r#"{"n":3.0}"#, 3),
            (r#"{"n":-4}"#, 0),
            (r#"{"n":{"k":1}}"#, 0),
        ] {
            let outer: Outer = serde_json::from_str(json).expect(json);
            assert_eq!(outer.n, expected, "{json}");
        }
    }
}
