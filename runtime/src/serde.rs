//! Serdes: how keys and values become bytes at topics and state stores
//! (Kafka's `Serde<T>`), and back.
//!
//! Built in: [`StringSerde`], [`BytesSerde`], [`I32Serde`], [`I64Serde`],
//! [`F64Serde`] (big-endian, as Kafka's serializers), and [`Json<T>`] for
//! any `Serialize + DeserializeOwned` type. Kafka's null is Rust's `None`:
//! [`OptionSerde`] wraps any serde so that `Option<T>` maps `None` to null;
//! a null for a type that is not an `Option` is a deserialization error.
//! Users write their own by implementing [`Serde`].

use std::marker::PhantomData;

use bytes::Bytes;

/// Why bytes could not become a value (or a value bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SerdeError(pub String);

/// Turns values of `T` into bytes and back.
pub trait Serde<T>: Send + Sync {
    /// The bytes of a value; `None` is Kafka's null.
    fn serialize(&self, value: &T) -> Result<Option<Bytes>, SerdeError>;
    /// The value of some bytes (`None`: null).
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError>;
}

fn non_null<'a>(bytes: Option<&'a [u8]>, what: &str) -> Result<&'a [u8], SerdeError> {
    bytes.ok_or_else(|| SerdeError(format!("null where {what} was expected; use an Option type to accept nulls")))
}

fn fixed<const N: usize>(bytes: Option<&[u8]>, what: &str) -> Result<[u8; N], SerdeError> {
    let b = non_null(bytes, what)?;
    b.try_into().map_err(|_| SerdeError(format!("{} bytes where {what} ({N} bytes) was expected", b.len())))
}

/// UTF-8 strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, value: &String) -> Result<Option<Bytes>, SerdeError> {
        Ok(Some(Bytes::copy_from_slice(value.as_bytes())))
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<String, SerdeError> {
        let b = non_null(bytes, "a string")?;
        String::from_utf8(b.to_vec()).map_err(|e| SerdeError(format!("not UTF-8: {e}")))
    }
}

/// Raw bytes, unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Bytes> for BytesSerde {
    fn serialize(&self, value: &Bytes) -> Result<Option<Bytes>, SerdeError> {
        Ok(Some(value.clone()))
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Bytes, SerdeError> {
        Ok(Bytes::copy_from_slice(non_null(bytes, "bytes")?))
    }
}

macro_rules! number_serde {
    ($name:ident, $t:ty, $what:literal) => {
        #[doc = concat!("`", stringify!($t), "`, big-endian (Kafka's serializer).")]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl Serde<$t> for $name {
            fn serialize(&self, value: &$t) -> Result<Option<Bytes>, SerdeError> {
                Ok(Some(Bytes::copy_from_slice(&value.to_be_bytes())))
            }
            fn deserialize(&self, bytes: Option<&[u8]>) -> Result<$t, SerdeError> {
                Ok(<$t>::from_be_bytes(fixed(bytes, $what)?))
            }
        }
    };
}

number_serde!(I32Serde, i32, "an i32");
number_serde!(I64Serde, i64, "an i64");
number_serde!(F64Serde, f64, "an f64");

/// JSON for any type serde can read and write.
#[derive(Debug)]
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// The JSON serde of `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> Serde<T> for Json<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize(&self, value: &T) -> Result<Option<Bytes>, SerdeError> {
        serde_json::to_vec(value).map(|v| Some(Bytes::from(v))).map_err(|e| SerdeError(format!("JSON: {e}")))
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        serde_json::from_slice(non_null(bytes, "JSON")?).map_err(|e| SerdeError(format!("JSON: {e}")))
    }
}

/// `Option<T>` over a serde of `T`: `None` is Kafka's null.
#[derive(Debug, Clone, Default)]
pub struct OptionSerde<S>(pub S);

impl<T, S: Serde<T>> Serde<Option<T>> for OptionSerde<S> {
    fn serialize(&self, value: &Option<T>) -> Result<Option<Bytes>, SerdeError> {
        match value {
            Some(v) => self.0.serialize(v),
            None => Ok(None),
        }
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        bytes.map(|b| self.0.deserialize(Some(b))).transpose()
    }
}

/// `()` for topics whose keys (or values) are ignored: writes null, reads anything.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitSerde;

impl Serde<()> for UnitSerde {
    fn serialize(&self, _: &()) -> Result<Option<Bytes>, SerdeError> {
        Ok(None)
    }
    fn deserialize(&self, _: Option<&[u8]>) -> Result<(), SerdeError> {
        Ok(())
    }
}

/// A shared serde is a serde (so builders can hand one serde to many nodes).
impl<T, S: Serde<T> + ?Sized> Serde<T> for std::sync::Arc<S> {
    fn serialize(&self, value: &T) -> Result<Option<Bytes>, SerdeError> {
        (**self).serialize(value)
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        (**self).deserialize(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: PartialEq + std::fmt::Debug>(serde: &dyn Serde<T>, value: T) {
        let bytes = serde.serialize(&value).expect("serializes");
        assert_eq!(serde.deserialize(bytes.as_deref()).expect("deserializes"), value);
    }

    #[test]
    fn built_in_serdes_round_trip_and_refuse_bad_input() {
        round_trip(&StringSerde, "héllo".to_owned());
        round_trip(&I64Serde, -42);
        round_trip(&I32Serde, 7);
        round_trip(&F64Serde, 2.5);
        round_trip(&Json::<Vec<u32>>::new(), vec![1, 2, 3]);
        round_trip(&OptionSerde(StringSerde), None);
        round_trip(&OptionSerde(StringSerde), Some("x".to_owned()));
        assert_eq!(I64Serde.serialize(&1).expect("ok").as_deref(), Some(&[0, 0, 0, 0, 0, 0, 0, 1][..]));
        assert!(I64Serde.deserialize(Some(&[1, 2])).expect_err("short").0.contains("2 bytes"));
        assert!(StringSerde.deserialize(None).expect_err("null").0.contains("Option"));
        assert!(StringSerde.deserialize(Some(&[0xff])).is_err());
        assert!(Json::<u32>::new().deserialize(Some(b"{")).is_err());
    }
}
