//! The parts of the proto3 JSON mapping that serde's derives do not give for free: zero-value
//! omission for the `gw` and `common` packages, tolerant `oneof`s, enums kept by name, the
//! doubles of a `google.protobuf.Struct` and UUID ids that may be empty.

use core::fmt;
use core::marker::PhantomData;
use std::string::String;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Parses a message that must be a JSON object.
///
/// Derived struct deserializers also take a JSON array of the fields in order; for a whole
/// MQTT payload that is never what ChirpStack sent, so it is refused here.
pub(crate) fn from_json_object<T: DeserializeOwned>(
    payload: &[u8],
) -> Result<T, serde_json::Error> {
    struct ObjectVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let message = deserializer.deserialize_map(ObjectVisitor(PhantomData))?;
    deserializer.end()?;
    Ok(message)
}

/// True for a proto3 zero value (`0`, `0.0`, `false`, `""`, empty list or map, first enum
/// value), which the `gw` and `common` packages leave out of their JSON.
///
/// `-0.0 == 0.0` and `NaN != 0.0`, as in the generated serializers, so `-0.0` is left out and
/// `NaN` is kept.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `serialize_with` for an optional `google.protobuf.Struct` field (`object`): every number,
/// however deeply nested, is written as a double (`7.0`, not `7`), as ChirpStack writes it,
/// because a `Struct` has no integer type. Reading needs no counterpart: any JSON number is
/// accepted.
pub(crate) fn serialize_struct<S: Serializer>(
    object: &Option<Map<String, Value>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match object {
        Some(members) => Doubles::Object(members).serialize(serializer),
        None => serializer.serialize_none(),
    }
}

/// A JSON value written with every number as a double.
enum Doubles<'a> {
    Value(&'a Value),
    Object(&'a Map<String, Value>),
}

impl Serialize for Doubles<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Self::Object(members) => serializer.collect_map(
                members
                    .iter()
                    .map(|(key, value)| (key, Doubles::Value(value))),
            ),
            Self::Value(Value::Object(members)) => Doubles::Object(members).serialize(serializer),
            Self::Value(Value::Array(items)) => {
                serializer.collect_seq(items.iter().map(Doubles::Value))
            }
            Self::Value(Value::Number(number)) => match number.as_f64() {
                Some(double) => serializer.serialize_f64(double),
                // Only a number outside the f64 range under serde_json's
                // `arbitrary_precision`; ChirpStack could not have produced it.
                None => number.serialize(serializer),
            },
            Self::Value(other) => other.serialize(serializer),
        }
    }
}

/// `serde(with)` for an `Option<Uuid>` written as ChirpStack writes an id string: `""` for
/// none, lowercase hyphenated otherwise; read from `""` or any UUID text.
pub(crate) mod uuid_or_empty {
    use core::fmt;

    use serde::{Deserializer, Serializer, de};
    use uuid::Uuid;

    pub(crate) fn serialize<S: Serializer>(
        id: &Option<Uuid>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => serializer.collect_str(&id.hyphenated()),
            None => serializer.serialize_str(""),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Uuid>, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = Option<Uuid>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a UUID or an empty string")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Option<Uuid>, E> {
                if text.is_empty() {
                    return Ok(None);
                }
                Uuid::parse_str(text)
                    .map(Some)
                    .map_err(|error| E::custom(format_args!("invalid id {text:?}: {error}")))
            }
        }

        deserializer.deserialize_str(Visitor)
    }
}

/// A proto3 `oneof` read through a struct with one optional field per member.
///
/// Reading through the struct rather than a serde enum keeps the parse tolerant: unknown
/// members (added by a later ChirpStack) are ignored, and `{}` is an unset `oneof`.
pub(crate) trait OneOf: Sized {
    /// One `Option` field per member; unknown fields ignored.
    type Repr;

    /// The first member that is set, or `None` when none is.
    fn from_repr(repr: Self::Repr) -> Option<Self>;
}

/// `deserialize_with` for an optional message field holding a [`OneOf`]: `null`, `{}` and an
/// object with only unknown members all read as absent.
pub(crate) fn optional_oneof<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: OneOf,
    T::Repr: Deserialize<'de>,
{
    Ok(Option::<T::Repr>::deserialize(deserializer)?.and_then(T::from_repr))
}

/// Defines an enum that is written as its proto name and read from its name or, where the
/// proto gives one, its number, keeping any other name in an `Other(String)` variant.
///
/// ChirpStack adds enum values between minor versions (`LogCode` gained `F_CNT_DOWN`,
/// `EXPIRED` and `RELAY_NEW_END_DEVICE`, `CodeRate` the `CR_LI_*` rates); with a closed enum
/// one new name would make a whole event unreadable, with `Other` it only makes one field
/// unrecognised. A number without a name is kept as its decimal text.
macro_rules! proto_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $text:literal $(($number:literal))?
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(
                $(#[$vmeta])*
                $variant,
            )+
            /// A value this version does not know, kept as written.
            Other(std::string::String),
        }

        impl $name {
            /// The name as written in JSON.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(name) => name,
                }
            }

            /// The value with this JSON name; an unknown name becomes `Other`.
            pub fn from_name(name: &str) -> Self {
                match name {
                    $($text => Self::$variant,)+
                    other => Self::Other(std::string::ToString::to_string(other)),
                }
            }

            fn from_number(number: i64) -> Self {
                $($(
                    if number == $number {
                        return Self::$variant;
                    }
                )?)+
                Self::Other(std::string::ToString::to_string(&number))
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                Self::from_name(name)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;

                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name or number"))
                    }

                    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<$name, E> {
                        Ok($name::from_name(name))
                    }

                    fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<$name, E> {
                        Ok($name::from_number(number))
                    }

                    fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<$name, E> {
                        match i64::try_from(number) {
                            Ok(number) => Ok($name::from_number(number)),
                            Err(_) => Ok($name::Other(std::string::ToString::to_string(&number))),
                        }
                    }
                }

                deserializer.deserialize_any(Visitor)
            }
        }
    };
}

pub(crate) use proto_enum;
