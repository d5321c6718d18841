//! Sets of named bits (status flags, self-tests, capabilities).
//!
//! On the wire a set is an integer whose reserved bits must be zero; in JSON it is an array of
//! names in bit order, which reads well in dashboards and survives new names being added.

/// Defines a bit-set newtype with named constants, wire checks and JSON as an array of names.
macro_rules! bit_set {
    (
        $(#[$meta:meta])*
        $name:ident($repr:ty), field = $field:literal {
            $( $(#[$cmeta:meta])* $const:ident = $bit:literal, $text:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name($repr);

        impl $name {
            $( $(#[$cmeta])* pub const $const: $name = $name(1 << $bit); )+

            /// Every defined bit.
            pub const ALL: $name = $name(0 $(| (1 << $bit))+);

            /// Names in bit order, as the JSON form writes them.
            const NAMES: &'static [($repr, &'static str)] = &[$((1 << $bit, $text)),+];

            /// The empty set.
            pub const fn empty() -> Self {
                $name(0)
            }

            /// The set of these bits, or `None` if a reserved bit is set.
            pub const fn from_bits(bits: $repr) -> Option<Self> {
                if bits & !Self::ALL.0 == 0 { Some($name(bits)) } else { None }
            }

            /// The set from a wire value; reserved bits are an error.
            pub(crate) fn from_wire(bits: $repr) -> Result<Self, crate::Error> {
                Self::from_bits(bits).ok_or(crate::Error::ReservedBits { field: $field })
            }

            /// The wire value.
            pub const fn bits(self) -> $repr {
                self.0
            }

            /// Whether every bit of `other` is in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// Whether no bit is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// The union of two sets.
            #[must_use]
            pub const fn union(self, other: Self) -> Self {
                $name(self.0 | other.0)
            }

            /// The names of the bits set, in bit order.
            pub fn names(self) -> impl Iterator<Item = &'static str> {
                Self::NAMES.iter().filter(move |(b, _)| self.0 & b != 0).map(|(_, n)| *n)
            }

            /// The bit with this JSON name.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::NAMES.iter().find(|(_, n)| *n == name).map(|(b, _)| $name(*b))
            }
        }

        impl core::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self {
                self.union(rhs)
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.names())
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl<'de> serde::de::Visitor<'de> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                        write!(f, "an array of {} names", $field)
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<$name, A::Error> {
                        let mut set = $name::empty();
                        while let Some(name) = seq.next_element::<alloc::string::String>()? {
                            let bit = $name::from_name(&name).ok_or_else(|| {
                                serde::de::Error::custom(format_args!("unknown {} name {:?}", $field, name))
                            })?;
                            set = set.union(bit);
                        }
                        Ok(set)
                    }
                }
                deserializer.deserialize_seq(Visitor)
            }
        }
    };
}

pub(crate) use bit_set;
