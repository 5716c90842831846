//! Typed query and path parameters: the value types of the routes' parameter structs.
//!
//! A parameter struct (`#[derive(Deserialize, JsonSchema)]`, `deny_unknown_fields`) is
//! both what a handler reads ([`crate::extract::Query`], [`crate::extract::PathParams`])
//! and what the OpenAPI document lists (each field a parameter, its doc comment the
//! description). The types here parse one text value each and refuse a bad one with a
//! message for a person; the extractor names the parameter in the envelope's `field`.

use std::borrow::Cow;
use std::fmt::Display;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};

/// Deserialize from a string through `FromStr`, the error's text becoming the message.
fn from_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let s = Cow::<str>::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

macro_rules! deserialize_from_str {
    ($($t:ty),+) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                from_text(d)
            }
        }
    )+};
}

/// One value of a type that parses from text (`Kind`, `Status`...), documented with that
/// type's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Param<T>(pub T);

impl<'de, T> Deserialize<'de> for Param<T>
where
    T: FromStr,
    T::Err: Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d).map(Param)
    }
}

impl<T: JsonSchema> JsonSchema for Param<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// Comma-separated values, each parsed; repeated parameters add values
/// (`kind=tool&kind=skill` is `kind=tool,skill`); empty ones are skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Csv<T>(pub Vec<T>);

impl<T> Default for Csv<T> {
    fn default() -> Self {
        Csv(Vec::new())
    }
}

impl<'de, T> Deserialize<'de> for Csv<T>
where
    T: FromStr,
    T::Err: Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| v.parse().map_err(serde::de::Error::custom))
            .collect::<Result<Vec<T>, _>>()
            .map(Csv)
    }
}

impl<T> JsonSchema for Csv<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "CommaSeparated".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string"})
    }
}

/// The values of an optional list parameter (none when absent).
pub fn values<T>(p: Option<Csv<T>>) -> Vec<T> {
    p.map(|c| c.0).unwrap_or_default()
}

/// A page size: a whole number from 1 to [`quiver_engine::MAX_PAGE`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageSize(pub usize);

impl FromStr for PageSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let max = quiver_engine::MAX_PAGE;
        match s.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(PageSize(n)),
            _ => Err(format!("'{s}' is not a whole number from 1 to {max}")),
        }
    }
}

impl JsonSchema for PageSize {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "PageSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "minimum": 1,
            "maximum": quiver_engine::MAX_PAGE,
            "default": 20,
        })
    }
}

/// `true`/`1` or `false`/`0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flag(pub bool);

impl FromStr for Flag {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "true" | "1" => Ok(Flag(true)),
            "false" | "0" => Ok(Flag(false)),
            v => Err(format!("'{v}' is not true or false")),
        }
    }
}

impl JsonSchema for Flag {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Flag".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "boolean"})
    }
}

/// An RFC 3339 time (`2026-11-22T06:00:00Z`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Time(pub jiff::Timestamp);

impl FromStr for Time {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse()
            .map(Time)
            .map_err(|_| format!("'{s}' is not an RFC 3339 time such as 2026-11-22T06:00:00Z"))
    }
}

impl JsonSchema for Time {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Time".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "date-time"})
    }
}

deserialize_from_str!(PageSize, Flag, Time);

/// A word out of a fixed set, with the message naming the set.
macro_rules! word_param {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? } else $expected:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, schemars::JsonSchema)]
        pub enum $name {
            $(#[serde(rename = $word)] $variant),+
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($word => Ok($name::$variant),)+
                    other => Err(format!(concat!("'{}' is not ", $expected), other)),
                }
            }
        }

        deserialize_from_str!($name);
    };
}

word_param!(
    /// The order of search hits.
    SortParam { Relevance = "relevance", Popularity = "popularity", Recent = "recent", Name = "name" }
    else "relevance, popularity, recent or name"
);

word_param!(
    /// Which relations of an entry.
    DirectionParam { Outgoing = "outgoing", Incoming = "incoming", Both = "both" }
    else "outgoing, incoming or both"
);

word_param!(
    /// The state of a review.
    ReviewStateParam {
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
        ChangesRequested = "changes_requested",
    }
    else "pending, approved, rejected or changes_requested"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_with_messages() {
        let csv: Csv<quiver_model::Kind> =
            serde_json::from_value(serde_json::json!("tool, ,skill")).unwrap();
        assert_eq!(csv.0.len(), 2);
        let e = serde_json::from_value::<Csv<quiver_model::Kind>>(serde_json::json!("gadget"))
            .unwrap_err();
        assert!(e.to_string().contains("gadget"), "{e}");
        for bad in ["-1", "0", "101", "x"] {
            let e = serde_json::from_value::<PageSize>(serde_json::json!(bad)).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("'{bad}' is not a whole number from 1 to 100")
            );
        }
        assert_eq!(
            serde_json::from_value::<PageSize>(serde_json::json!("100")).unwrap(),
            PageSize(100)
        );
        let e = serde_json::from_value::<SortParam>(serde_json::json!("sideways")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "'sideways' is not relevance, popularity, recent or name"
        );
        assert_eq!(
            serde_json::from_value::<Flag>(serde_json::json!("1")).unwrap(),
            Flag(true)
        );
    }
}
