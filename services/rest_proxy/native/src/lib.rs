//! The REST proxy's native produce path: the shared producer (`producer.rs`) and the JSON path,
//! `rest_proxy_produce.plain_values(body, max_record_bytes)`, the Rust twin of the Python reference
//! `plain_json_values(load_document(body), max_record_bytes)` in
//! tests/unit/services/rest_proxy/test_rest_proxy_hot_path.py (the tests compare the two through
//! `rest_proxy_produce.plain_json_values`, the same values as Python bytes).
//!
//! Why native code: under batched load the proxy's event loop spent about half its time turning each request's
//! JSON into Python objects (orjson), re-serializing every value and freeing the objects again (py-spy). Here
//! serde_json reads the body once and streams each value back out compactly as it goes, with no tree built in
//! between; Python sees only the finished bytes. (Measured first and dropped: serde_json's own `Value` tree, slower
//! than orjson, and a first pass to `RawValue`s before the compact one.)
//!
//! The contract is the Python function's: a list of serialized values when every record is `{"value": <not
//! null>}` (and the body has no schema fields), otherwise None, which sends the request down the general path
//! (orjson, then pydantic) that owns every error message. Wherever this code and orjson could write different
//! bytes it answers None too: a float that needs an exponent (the two libraries spell those differently; integers
//! beyond 64 bits arrive as such floats), a negative zero, an object with a repeated key (orjson keeps the last
//! value), and anything serde_json refuses (lone surrogates, nesting deeper than 128). A unit test compares both
//! paths on the samples and on generated documents.
//!
//! The same pass counts the records (`scan_produce`, what the proxy calls): of any body, plain or not, so the proxy
//! refuses one with too many records before anything is built per record, and it stops reading at the first record
//! past the limit. Each value is written to one scratch buffer and copied out at its own length (a 1,024-byte
//! buffer per record made 200,000 one-byte values cost 210 MB).

use std::borrow::Cow;
use std::fmt;

mod producer;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// What one pass over the body collects.
struct Values {
    encoded: Vec<Vec<u8>>,
    records_seen: bool,
    same: bool,  // false: somewhere orjson could write different bytes
    plain: bool, // false: not a body of plain values; the records are still counted, their values skipped
    count: usize,
    max_records: usize,
    too_many: bool,
    max_record_bytes: usize,
    /// Each value is written here first, then copied out at its own length: a record costs its value's bytes
    /// (and a `Vec` header), not a buffer sized for the largest value.
    scratch: Vec<u8>,
}

fn refuse<E: de::Error>(why: &str) -> E {
    E::custom(why) // the message is never shown: any error means "take the general path"
}

/// The body: an object with `records` and no non-null schema field; other fields are read and ignored.
struct BodySeed<'v>(&'v mut Values);

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a produce request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<(), A::Error> {
        while let Some(Key(name)) = fields.next_key::<Key>()? {
            match name.as_ref() {
                "records" if self.0.records_seen => return Err(refuse("records twice")),
                "records" => {
                    fields.next_value_seed(RecordsSeed(&mut *self.0))?;
                    self.0.records_seen = true;
                }
                "key_schema" | "value_schema" | "key_schema_id" | "value_schema_id" => {
                    if fields.next_value::<Option<IgnoredAny>>()?.is_some() {
                        self.0.plain = false; // a schema format: the general path; the records are still counted
                    }
                }
                _ => {
                    fields.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct RecordsSeed<'v>(&'v mut Values);

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a list of records")
    }

    /// Counts the records, and stops at the first one beyond `max_records`, before anything is built for it.
    fn visit_seq<A: SeqAccess<'de>>(self, mut records: A) -> Result<(), A::Error> {
        loop {
            let more = if self.0.count == self.0.max_records {
                let extra = records.next_element::<IgnoredAny>()?.is_some();
                if extra {
                    self.0.too_many = true;
                    return Err(refuse("too many records"));
                }
                false
            } else if self.0.plain {
                records
                    .next_element_seed(RecordSeed(&mut *self.0))?
                    .is_some()
            } else {
                records.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(());
            }
            self.0.count += 1;
        }
    }
}

/// A record: plain when it is an object with one field, `value`, not null; any other shape clears `plain` and
/// is skipped (the general path reads it), so that the records are still counted.
struct RecordSeed<'v>(&'v mut Values);

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn skip_fields<'de, A: MapAccess<'de>>(fields: &mut A) -> Result<(), A::Error> {
    while fields.next_key::<IgnoredAny>()?.is_some() {
        fields.next_value::<IgnoredAny>()?;
    }
    Ok(())
}

impl RecordSeed<'_> {
    fn not_plain<E>(self) -> Result<(), E> {
        self.0.plain = false;
        Ok(())
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<(), A::Error> {
        match fields.next_key::<Key>()? {
            Some(Key(name)) if name == "value" => {}
            Some(_) => {
                fields.next_value::<IgnoredAny>()?;
                skip_fields(&mut fields)?;
                return self.not_plain();
            }
            None => return self.not_plain(),
        }
        let values = &mut *self.0;
        values.scratch.clear();
        fields.next_value_seed(Compact {
            out: &mut values.scratch,
            same: &mut values.same,
        })?;
        if fields.next_key::<IgnoredAny>()?.is_some() {
            fields.next_value::<IgnoredAny>()?;
            skip_fields(&mut fields)?;
            return self.not_plain();
        }
        if values.scratch == b"null" || values.scratch.len() > values.max_record_bytes {
            return self.not_plain();
        }
        values.encoded.push(values.scratch.as_slice().to_vec()); // exactly the value's length
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        while items.next_element::<IgnoredAny>()?.is_some() {}
        self.not_plain()
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.not_plain()
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.not_plain()
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.not_plain()
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.not_plain()
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.not_plain()
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.not_plain()
    }
}

const MAX_KEYS: usize = 64;

/// Writes the value it reads, compactly, the way orjson.dumps(orjson.loads(...)) would; clears `same` where
/// orjson's bytes could differ.
struct Compact<'o> {
    out: &'o mut Vec<u8>,
    same: &'o mut bool,
}

impl Compact<'_> {
    fn reborrow(&mut self) -> Compact<'_> {
        Compact {
            out: self.out,
            same: self.same,
        }
    }

    fn string(&mut self, text: &str) {
        // serde_json escapes what JSON requires (quote, backslash, control characters), as orjson does.
        serde_json::to_writer(&mut *self.out, text).expect("writing to a Vec cannot fail");
    }

    /// A string read without escapes holds nothing JSON requires escaping (serde_json refuses raw control
    /// characters), so it is written back as it was.
    fn unescaped_string(&mut self, text: &str) {
        self.out.push(b'"');
        self.out.extend_from_slice(text.as_bytes());
        self.out.push(b'"');
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
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        Ok(())
    }

    fn visit_i64<E>(self, value: i64) -> Result<(), E> {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        Ok(())
    }

    fn visit_u64<E>(self, value: u64) -> Result<(), E> {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
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

    fn visit_borrowed_str<E>(mut self, value: &'de str) -> Result<(), E> {
        self.unescaped_string(value);
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
        // Where each key's written bytes are, to find a repeated key (written keys are canonical, so equal keys
        // are equal bytes) without allocating; an object with more keys than this takes the Python path.
        let mut keys = [(0usize, 0usize); MAX_KEYS];
        let mut count = 0;
        while let Some(Key(key)) = fields.next_key::<Key>()? {
            if count > 0 {
                self.out.push(b',');
            }
            let start = self.out.len();
            match key {
                Cow::Borrowed(text) => self.unescaped_string(text),
                Cow::Owned(text) => self.string(&text),
            }
            let written = &self.out[start..];
            if count == MAX_KEYS
                || keys[..count]
                    .iter()
                    .any(|&(s, e)| &self.out[s..e] == written)
            {
                *self.same = false; // orjson keeps the last value at the first key's place
            } else {
                keys[count] = (start, self.out.len());
                count += 1;
            }
            self.out.push(b':');
            fields.next_value_seed(self.reborrow())?;
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// What `scan` learnt of a body.
struct Scan {
    /// The values, when the body is plain values (and they were wanted).
    values: Option<Vec<Vec<u8>>>,
    /// The records counted, `max_records + 1` when there were more; None when serde_json could not read the
    /// body (not JSON, or JSON it refuses: the general path decides) or it has no `records` list.
    count: Option<usize>,
}

fn scan(body: &[u8], max_record_bytes: usize, max_records: usize, want_values: bool) -> Scan {
    let unread = Scan {
        values: None,
        count: None,
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return unread;
    };
    let mut values = Values {
        encoded: Vec::new(),
        records_seen: false,
        same: true,
        plain: want_values,
        count: 0,
        max_records,
        too_many: false,
        max_record_bytes,
        scratch: Vec::new(),
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let read = BodySeed(&mut values).deserialize(&mut deserializer);
    if values.too_many {
        return Scan {
            values: None,
            count: Some(max_records + 1),
        };
    }
    if read.is_err() || deserializer.end().is_err() || !values.records_seen {
        return unread; // end(): nothing but whitespace may follow the body
    }
    let plain = values.plain && values.same && !values.encoded.is_empty();
    Scan {
        values: plain.then_some(values.encoded),
        count: Some(values.count),
    }
}

fn values(body: &[u8], max_record_bytes: usize) -> Option<Vec<Vec<u8>>> {
    scan(body, max_record_bytes, usize::MAX - 1, true).values
}

/// `plain_values` as Python bytes, for the tests that compare it with the Python reference.
#[pyfunction]
fn plain_json_values<'py>(
    py: Python<'py>,
    body: &[u8],
    max_record_bytes: usize,
) -> Option<Vec<Bound<'py, PyBytes>>> {
    let encoded = values(body, max_record_bytes)?;
    Some(
        encoded
            .iter()
            .map(|bytes| PyBytes::new(py, bytes))
            .collect(),
    )
}

/// The values of a plain produce body, held in Rust until `Producer.produce_values` queues them.
#[pyclass(module = "rest_proxy_produce")]
pub struct PlainValues {
    encoded: Vec<Vec<u8>>,
}

#[pymethods]
impl PlainValues {
    fn __len__(&self) -> usize {
        self.encoded.len()
    }
}

/// `plain_json_values` without the Python bytes.
#[pyfunction]
fn plain_values(body: &[u8], max_record_bytes: usize) -> Option<PlainValues> {
    values(body, max_record_bytes).map(|encoded| PlainValues { encoded })
}

/// What the proxy's produce path uses: `(plain values or None, record count or None)` in one pass over a v2
/// produce body. The count stops at `max_records + 1`: a body with more records is not read further, so the
/// proxy refuses it before building anything per record. `want_values` false (not the json format, or a
/// partition in the path): only count.
#[pyfunction]
#[pyo3(signature = (body, max_record_bytes, max_records, want_values=true))]
fn scan_produce(
    body: &[u8],
    max_record_bytes: usize,
    max_records: usize,
    want_values: bool,
) -> (Option<PlainValues>, Option<usize>) {
    let found = scan(body, max_record_bytes, max_records, want_values);
    (
        found.values.map(|encoded| PlainValues { encoded }),
        found.count,
    )
}

#[pymodule]
fn rest_proxy_produce(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(plain_json_values, module)?)?;
    module.add_function(wrap_pyfunction!(plain_values, module)?)?;
    module.add_function(wrap_pyfunction!(scan_produce, module)?)?;
    module.add_function(wrap_pyfunction!(producer::offsets_response, module)?)?;
    module.add_class::<PlainValues>()?;
    module.add_class::<producer::Producer>()
}
