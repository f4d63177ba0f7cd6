//! `rest_proxy_json.plain_json_values(body, max_record_bytes)`: the Rust twin of
//! `services.rest_proxy.parsing.plain_json_values(load_document(body), max_record_bytes)`.
//!
//! Why native code: under batched load the proxy's event loop spent about half its time turning each request's
//! JSON into Python objects (orjson), re-serializing every value and freeing the objects again (py-spy). Here
//! serde_json reads the body and each value is streamed back out compactly, with no tree built in between; Python
//! sees only the finished bytes. (serde_json's own `Value` tree was measured first: slower than orjson.)
//!
//! The contract is the Python function's: a list of serialized values when every record is `{"value": <not
//! null>}` (and the body has no schema fields), otherwise None, which sends the request down the general path
//! (orjson, then pydantic) that owns every error message. Wherever this code and orjson could write different
//! bytes it answers None too: a float that needs an exponent (the two libraries spell those differently; integers
//! beyond 64 bits arrive as such floats), a negative zero, an object with a repeated key (orjson keeps the last
//! value), and anything serde_json refuses (lone surrogates, nesting deeper than 128). A unit test compares both
//! paths on the samples and on generated documents.

use std::borrow::Cow;
use std::fmt;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    records: Vec<Record<'a>>,
    // Present and not null: a schema format's fields, which the general path rejects or handles.
    #[serde(borrow)]
    key_schema: Option<&'a RawValue>,
    #[serde(borrow)]
    value_schema: Option<&'a RawValue>,
    #[serde(borrow)]
    key_schema_id: Option<&'a RawValue>,
    #[serde(borrow)]
    value_schema_id: Option<&'a RawValue>,
}

/// A record that is an object with one field, `value`: Some(value) unless that is null. A record in any other
/// shape fails to deserialize (serde's derive would also take `[value]`, so this is written out).
struct Record<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Record<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordVisitor;
        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = Record<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("an object with one field, value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Record<'de>, A::Error> {
                let Some(Key(name)) = fields.next_key::<Key>()? else {
                    return Err(de::Error::custom("no value"));
                };
                if name != "value" {
                    return Err(de::Error::custom("not only a value"));
                }
                let value: Option<&'de RawValue> = fields.next_value()?;
                if fields.next_key::<Key>()?.is_some() {
                    return Err(de::Error::custom("not only a value"));
                }
                Ok(Record(value))
            }
        }
        deserializer.deserialize_map(RecordVisitor)
    }
}

/// Writes the value it reads, compactly, the way orjson.dumps(orjson.loads(...)) would; clears `same` where
/// orjson's bytes could differ.
struct Compact<'o> {
    out: &'o mut Vec<u8>,
    same: &'o mut bool,
}

impl Compact<'_> {
    fn reborrow(&mut self) -> Compact<'_> {
        Compact { out: self.out, same: self.same }
    }

    fn string(&mut self, text: &str) {
        // serde_json escapes what JSON requires (quote, backslash, control characters), as orjson does.
        serde_json::to_writer(&mut *self.out, text).expect("writing to a Vec cannot fail");
    }
}

impl<'de> DeserializeSeed<'de> for Compact<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// An object's key, borrowed from the body unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(value)))
            }
            fn visit_str<E>(self, value: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(value.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for Compact<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_bool<E>(self, value: bool) -> Result<(), E> {
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
        Ok(())
    }

    fn visit_i64<E>(self, value: i64) -> Result<(), E> {
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        Ok(())
    }

    fn visit_u64<E>(self, value: u64) -> Result<(), E> {
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        Ok(())
    }

    fn visit_f64<E>(self, value: f64) -> Result<(), E> {
        if !value.is_finite() || (value == 0.0 && value.is_sign_negative()) {
            *self.same = false;
            return Ok(());
        }
        let mut buffer = ryu::Buffer::new();
        let text = buffer.format_finite(value);
        if text.contains('e') {
            *self.same = false;
        }
        self.out.extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn visit_str<E>(mut self, value: &str) -> Result<(), E> {
        self.string(value);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut items: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        loop {
            let mark = self.out.len();
            if !first {
                self.out.push(b',');
            }
            if items.next_element_seed(self.reborrow())?.is_none() {
                self.out.truncate(mark);
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut fields: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        while let Some(Key(key)) = fields.next_key::<Key>()? {
            if keys.contains(&key) {
                *self.same = false; // orjson keeps the last value at the first key's place
            }
            if !keys.is_empty() {
                self.out.push(b',');
            }
            self.string(&key);
            self.out.push(b':');
            fields.next_value_seed(self.reborrow())?;
            keys.push(key);
        }
        self.out.push(b'}');
        Ok(())
    }
}

fn compact(raw: &RawValue) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.get().len());
    let mut same = true;
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    Compact { out: &mut out, same: &mut same }.deserialize(&mut deserializer).ok()?;
    same.then_some(out)
}

fn values(body: &[u8], max_record_bytes: usize) -> Option<Vec<Vec<u8>>> {
    let text = std::str::from_utf8(body).ok()?;
    let body: Body = serde_json::from_str(text).ok()?;
    let schema = [body.key_schema, body.value_schema, body.key_schema_id, body.value_schema_id];
    if body.records.is_empty() || schema.iter().any(Option::is_some) {
        return None;
    }
    let mut encoded = Vec::with_capacity(body.records.len());
    for record in body.records {
        let bytes = compact(record.0?)?;
        if bytes.len() > max_record_bytes {
            return None;
        }
        encoded.push(bytes);
    }
    Some(encoded)
}

#[pyfunction]
fn plain_json_values<'py>(py: Python<'py>, body: &[u8], max_record_bytes: usize) -> Option<Vec<Bound<'py, PyBytes>>> {
    let encoded = values(body, max_record_bytes)?;
    Some(encoded.iter().map(|bytes| PyBytes::new(py, bytes)).collect())
}

#[pymodule]
fn rest_proxy_json(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(plain_json_values, module)?)
}
