//! `rest_proxy_produce.Producer`: the proxy's one shared producer, librdkafka driven from Rust (the `rdkafka` crate).
//!
//! Why native code: with confluent-kafka, every record cost the event loop a Python dict for `produce_batch`, a
//! Message object for its delivery report (with a copy of its value) and a Python callback call. Here the records
//! of a request are produced, and their delivery reports collected, without any Python object per record; Python
//! sees one entry per *request* when all of its records are settled (`poll`), then takes the results (`take`).
//!
//! Threading is confluent-kafka's: librdkafka's own threads batch and send, and delivery reports, errors and OAuth
//! token refreshes are served by `poll`, called by the proxy on its event loop, so every callback into Python
//! runs on that thread with the GIL held. The request table is behind a mutex only because rdkafka requires a
//! `Sync` context; it is never contended.

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, Timestamp};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext, PurgeConfig,
};

use crate::PlainValues;

/// Request ids are unique in the process, across producers (a fatal error replaces the producer).
/// They wrap after 2^40 (a trillion requests) to stay within the delivery opaque.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
const ID_MASK: u64 = (1 << (usize::BITS - INDEX_BITS)) - 1;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("the delivery opaque packs a request id and a record index into 64 bits");

/// A delivery opaque carries the request id in its high bits and the record's index in the low ones.
const INDEX_BITS: u32 = 24;
const MAX_RECORDS: usize = 1 << INDEX_BITS;

fn opaque(id: u64, index: u32) -> usize {
    ((id as usize) << INDEX_BITS) | index as usize
}
/// librdkafka's RD_KAFKA_RESP_ERR__FATAL: the code `report_fatal` gives the error callback.
const FATAL: i32 = -150;
/// Upper bound of poll(0) calls in one `poll`: each serves one event (a batch of delivery reports).
const MAX_EVENTS_PER_POLL: usize = 1000;

#[derive(Clone, Copy)]
enum Outcome {
    Pending,
    Acknowledged {
        partition: i32,
        offset: i64,
        timestamp_ms: i64,
    },
    Failed {
        code: i32,
        /// librdkafka's message status said the record may be in the log (sent, but no definitive answer):
        /// the client must not re-send it.
        possibly_persisted: bool,
    },
}

struct Request {
    remaining: usize,
    outcomes: Vec<Outcome>,
    /// Values not yet queued (librdkafka's queue was full): `resume` queues them.
    backlog: Vec<(u32, Vec<u8>)>,
    topic: String,
    partition: i32,
}

#[derive(Default)]
struct Table {
    requests: HashMap<u64, Request>,
    settled: Vec<u64>,
    events: u64, // delivery reports, errors, log lines and token refreshes served: `poll` goes on while they come
}

impl Table {
    fn settle(&mut self, id: u64, index: usize, outcome: Outcome) {
        if let Some(request) = self.requests.get_mut(&id) {
            if let Some(Outcome::Pending) = request.outcomes.get(index) {
                request.outcomes[index] = outcome;
                request.remaining -= 1;
                if request.remaining == 0 {
                    self.settled.push(id);
                }
            }
        }
    }
}

struct Context {
    table: Mutex<Table>,
    on_error: PyObject,
    on_log: Option<PyObject>,
    oauth_cb: Option<PyObject>,
}

impl Context {
    fn call(&self, callback: &PyObject, args: impl for<'py> IntoPyObject<'py, Target = PyTuple>) {
        Python::with_gil(|py| {
            if let Err(raised) = callback.call1(py, args) {
                raised.print(py);
            }
        });
    }
}

/// librdkafka's own view of a failed record: `RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED` when it was sent to the
/// broker but no definitive answer came (a timeout or purge while in flight). rust-rdkafka does not wrap
/// `rd_kafka_message_status`, hence the binding call.
fn possibly_persisted(message: &rdkafka::message::BorrowedMessage<'_>) -> bool {
    // SAFETY: the pointer is the delivered message, valid for the whole delivery callback.
    let status = unsafe { rdkafka::bindings::rd_kafka_message_status(message.ptr()) };
    matches!(
        status,
        rdkafka::bindings::rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED
    )
}

fn code_of(error: &KafkaError) -> i32 {
    error.rdkafka_error_code().map_or(-1, |code| code as i32)
}

impl ClientContext for Context {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    /// Never fatal here: a fatal error arrives with its underlying code, and `Producer::report_fatal` is what
    /// reports it as fatal. rdkafka 0.38's BaseProducer::poll hands each error event to this method twice.
    fn error(&self, error: KafkaError, reason: &str) {
        self.table.lock().unwrap().events += 1;
        self.call(&self.on_error, (code_of(&error), reason, false));
    }

    /// librdkafka's log lines (served by `poll`, once rdkafka has set the log queue) go to Python's logging.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.table.lock().unwrap().events += 1;
        if let Some(on_log) = &self.on_log {
            self.call(on_log, (level as i32, facility, message));
        }
    }

    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        // confluent-kafka's oauth_cb contract: oauth_cb(config) -> (token, expiry in seconds since the epoch[,
        // principal[, extensions]]). Extensions are not passed on (rdkafka's OAuthToken has none; MSK needs none).
        self.table.lock().unwrap().events += 1;
        let callback = self.oauth_cb.as_ref().ok_or("no oauth_cb configured")?;
        Python::with_gil(|py| {
            let answer = callback.call1(py, (oauthbearer_config,))?;
            let answer = answer.bind(py).downcast::<PyTuple>()?;
            let token: String = answer.get_item(0)?.extract()?;
            let expiry_s: f64 = answer.get_item(1)?.extract()?;
            let principal_name = match answer.get_item(2) {
                Ok(principal) if !principal.is_none() => principal.extract()?,
                _ => String::new(),
            };
            Ok(rdkafka::client::OAuthToken {
                token,
                principal_name,
                lifetime_ms: (expiry_s * 1000.0) as i64,
            })
        })
        .map_err(|error: PyErr| error.to_string().into())
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let outcome = match result {
            Ok(message) => Outcome::Acknowledged {
                partition: message.partition(),
                offset: message.offset(),
                timestamp_ms: match message.timestamp() {
                    Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => ms,
                    Timestamp::NotAvailable => -1,
                },
            },
            Err((error, message)) => Outcome::Failed {
                code: code_of(error),
                possibly_persisted: possibly_persisted(message),
            },
        };
        let mut table = self.table.lock().unwrap();
        table.events += 1;
        table.settle(
            (opaque >> INDEX_BITS) as u64,
            opaque & (MAX_RECORDS - 1),
            outcome,
        );
    }
}

const ACKNOWLEDGED_HEAD: &[u8] = b"{\"offsets\":[";
const ACKNOWLEDGED_TAIL: &[u8] = b"],\"key_schema_id\":null,\"value_schema_id\":null}";

/// The v2 produce response when every record was acknowledged in `partition`: byte for byte what
/// `orjson.dumps(produce.produce_response(...))` writes (a unit test holds them together).
fn acknowledged_response(partition: i32, offsets: &[i64]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(ACKNOWLEDGED_HEAD.len() + ACKNOWLEDGED_TAIL.len() + offsets.len() * 64);
    let mut numbers = itoa::Buffer::new();
    let partition = numbers.format(partition).to_owned();
    out.extend_from_slice(ACKNOWLEDGED_HEAD);
    for (index, offset) in offsets.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"partition\":");
        out.extend_from_slice(partition.as_bytes());
        out.extend_from_slice(b",\"offset\":");
        out.extend_from_slice(numbers.format(*offset).as_bytes());
        out.extend_from_slice(b",\"error_code\":null,\"error\":null}");
    }
    out.extend_from_slice(ACKNOWLEDGED_TAIL);
    out
}

/// `acknowledged_response` for Python (the unit test).
#[pyfunction]
pub fn offsets_response<'py>(
    py: Python<'py>,
    partition: i32,
    offsets: Vec<i64>,
) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &acknowledged_response(partition, &offsets))
}

type Record<'a> = BaseRecord<'a, [u8], [u8], usize>;

#[pyclass(module = "rest_proxy_produce")]
pub struct Producer {
    inner: ManuallyDrop<BaseProducer<Context>>,
    fatal_reported: AtomicBool,
}

impl Drop for Producer {
    /// rdkafka's drop purges, flushes for up to 0.5 s and joins librdkafka's threads, which may be waiting for the
    /// GIL in a callback: do it without the GIL.
    fn drop(&mut self) {
        let inner = &mut self.inner;
        Python::with_gil(|py| py.allow_threads(|| unsafe { ManuallyDrop::drop(inner) }));
    }
}

impl Producer {
    /// A fatal error reaches the error callback with its underlying code (rdkafka does not pass on
    /// `rd_kafka_event_error_is_fatal`), so `poll` asks librdkafka and reports it once more, as `(FATAL, reason,
    /// true)`: confluent-kafka's `error.fatal()`.
    fn report_fatal(&self) {
        // rd_kafka_fatal_error without a buffer is an atomic read.
        let code = unsafe {
            rdkafka::bindings::rd_kafka_fatal_error(
                self.inner.client().native_ptr(),
                std::ptr::null_mut(),
                0,
            )
        };
        if code as i32 != 0 && !self.fatal_reported.swap(true, Ordering::Relaxed) {
            let reason = self
                .inner
                .client()
                .fatal_error()
                .map_or_else(String::new, |(code, reason)| format!("{code}: {reason}"));
            let context = self.inner.context();
            context.call(&context.on_error, (FATAL, reason, true));
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.context().table.lock().unwrap()
    }

    fn open(&self, count: usize, topic: &str, partition: i32) -> PyResult<u64> {
        if count >= MAX_RECORDS {
            return Err(PyValueError::new_err(format!(
                "at most {} records per request",
                MAX_RECORDS - 1
            )));
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed) & ID_MASK;
        let mut table = self.table();
        table.requests.insert(
            id,
            Request {
                remaining: count,
                outcomes: vec![Outcome::Pending; count],
                backlog: Vec::new(),
                topic: topic.to_owned(),
                partition,
            },
        );
        if count == 0 {
            table.settled.push(id);
        }
        Ok(id)
    }

    /// Queue one record: Ok(true) queued or failed for good (recorded), Ok(false) librdkafka's queue is full.
    fn queue(&self, id: u64, index: u32, record: Record<'_>) -> bool {
        match self.inner.send(record) {
            Ok(()) => true,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => false,
            Err((error, _)) => {
                self.table().settle(
                    id,
                    index as usize,
                    Outcome::Failed {
                        code: code_of(&error),
                        possibly_persisted: false,
                    },
                );
                true
            }
        }
    }

    /// Queue a request's backlog in order, stopping at the first full queue (what is left stays in the backlog);
    /// true when nothing is left.
    fn drain_backlog(&self, id: u64) -> bool {
        let (topic, partition, backlog) = {
            let mut table = self.table();
            let Some(request) = table.requests.get_mut(&id) else {
                return true;
            };
            (
                request.topic.clone(),
                request.partition,
                std::mem::take(&mut request.backlog),
            )
        };
        let mut rest = backlog.into_iter();
        while let Some((index, value)) = rest.next() {
            let record = Record::with_opaque_to(&topic, opaque(id, index))
                .payload(&value[..])
                .partition(partition);
            if !self.queue(id, index, record) {
                let mut left: Vec<(u32, Vec<u8>)> = vec![(index, value)];
                left.extend(rest);
                if let Some(request) = self.table().requests.get_mut(&id) {
                    request.backlog = left;
                }
                return false;
            }
        }
        true
    }
}

fn config_value(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(flag) = value.extract::<bool>() {
        return Ok(flag.to_string());
    }
    Ok(value.str()?.to_string())
}

#[pymethods]
impl Producer {
    /// `config`: librdkafka properties (values are turned into strings, booleans as true/false); `on_error(code,
    /// reason, fatal)` gets global errors; `oauth_cb(config) -> (token, expiry_s)` as in confluent-kafka;
    /// `on_log(syslog level, facility, message)` gets librdkafka's log lines.
    #[new]
    #[pyo3(signature = (config, on_error, oauth_cb=None, on_log=None))]
    fn new(
        py: Python<'_>,
        config: &Bound<'_, PyDict>,
        on_error: PyObject,
        oauth_cb: Option<PyObject>,
        on_log: Option<PyObject>,
    ) -> PyResult<Self> {
        let mut client_config = ClientConfig::new();
        for (name, value) in config.iter() {
            client_config.set(name.extract::<String>()?, config_value(&value)?);
        }
        let context = Context {
            table: Mutex::new(Table::default()),
            on_error,
            on_log,
            oauth_cb,
        };
        // Without the GIL: librdkafka's threads may call back into Python (a log line) before it returns.
        let inner = py
            .allow_threads(|| client_config.create_with_context(context))
            .map_err(|error| {
                PyValueError::new_err(format!("cannot create the producer: {error}"))
            })?;
        Ok(Producer {
            inner: ManuallyDrop::new(inner),
            fatal_reported: AtomicBool::new(false),
        })
    }

    /// The hot path: queue the values of a plain produce body (`plain_values`) to one partition, in order, and
    /// return `(request id, fully queued)`. `fully queued` false: librdkafka's queue was full, call `resume` later.
    fn produce_values(
        &self,
        topic: &str,
        partition: i32,
        mut values: PyRefMut<'_, PlainValues>,
    ) -> PyResult<(u64, bool)> {
        let encoded = std::mem::take(&mut values.encoded);
        let id = self.open(encoded.len(), topic, partition)?;
        if let Some(request) = self.table().requests.get_mut(&id) {
            request.backlog = (0..).zip(encoded).collect();
        }
        Ok((id, self.drain_backlog(id)))
    }

    /// Queue what a full queue left of request `id`; true when all of it is queued.
    fn resume(&self, id: u64) -> bool {
        self.drain_backlog(id)
    }

    /// A request of `count` records for `produce` (the general path); returns its id.
    fn open_request(&self, count: usize) -> PyResult<u64> {
        self.open(count, "", -1)
    }

    /// Queue record `index` of request `id`; partition -1 lets the partitioner choose. False: the queue is full,
    /// try again after polling. A record librdkafka refuses outright is settled as failed.
    #[pyo3(signature = (id, index, topic, partition, key, value, headers=None, timestamp_ms=0))]
    #[allow(clippy::too_many_arguments)]
    fn produce(
        &self,
        id: u64,
        index: u32,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<Vec<(String, Option<Vec<u8>>)>>,
        timestamp_ms: i64,
    ) -> bool {
        let mut record = Record::with_opaque_to(topic, opaque(id, index)).partition(partition);
        record.key = key;
        record.payload = value;
        if timestamp_ms > 0 {
            record = record.timestamp(timestamp_ms);
        }
        if let Some(headers) = &headers {
            let mut owned = OwnedHeaders::new_with_capacity(headers.len());
            for (name, value) in headers {
                owned = owned.insert(Header {
                    key: name,
                    value: value.as_deref(),
                });
            }
            record = record.headers(owned);
        }
        self.queue(id, index, record)
    }

    /// Serve delivery reports, errors and token refreshes; returns the ids of the requests now fully settled.
    fn poll(&self) -> Vec<u64> {
        for _ in 0..MAX_EVENTS_PER_POLL {
            let before = self.table().events;
            self.inner.poll(Duration::ZERO);
            if self.table().events == before {
                break;
            }
        }
        self.report_fatal();
        std::mem::take(&mut self.table().settled)
    }

    /// Remove settled request `id` and return its results. All acknowledged in one partition and not `detailed`:
    /// the v2 produce response body (`offsets_response`). Otherwise a list, per record, of `(partition, offset,
    /// timestamp_ms or None, None)` or `(None, None, None, librdkafka error code)`.
    #[pyo3(signature = (id, detailed=false))]
    fn take<'py>(&self, py: Python<'py>, id: u64, detailed: bool) -> PyResult<Bound<'py, PyAny>> {
        let request = self
            .table()
            .requests
            .remove(&id)
            .ok_or_else(|| PyKeyError::new_err(id))?;
        if !detailed {
            let mut offsets = Vec::with_capacity(request.outcomes.len());
            let mut partition = None;
            for outcome in &request.outcomes {
                match *outcome {
                    Outcome::Acknowledged {
                        partition: p,
                        offset,
                        ..
                    } if partition.is_none_or(|q| q == p) => {
                        partition = Some(p);
                        offsets.push(offset);
                    }
                    _ => break,
                }
            }
            if let (Some(partition), true) = (partition, offsets.len() == request.outcomes.len()) {
                return Ok(
                    PyBytes::new(py, &acknowledged_response(partition, &offsets)).into_any(),
                );
            }
        }
        let none = py.None();
        let entries = request
            .outcomes
            .iter()
            .map(|outcome| -> PyResult<PyObject> {
                Ok(match *outcome {
                    Outcome::Acknowledged {
                        partition,
                        offset,
                        timestamp_ms,
                    } => {
                        let timestamp = if timestamp_ms > 0 {
                            Some(timestamp_ms)
                        } else {
                            None
                        };
                        (partition, offset, timestamp, none.clone_ref(py))
                            .into_pyobject(py)?
                            .into_any()
                            .unbind()
                    }
                    Outcome::Failed {
                        code,
                        possibly_persisted,
                    } => (
                        none.clone_ref(py),
                        none.clone_ref(py),
                        none.clone_ref(py),
                        code,
                        possibly_persisted,
                    )
                        .into_pyobject(py)?
                        .into_any()
                        .unbind(),
                    Outcome::Pending => {
                        return Err(PyValueError::new_err(format!(
                            "request {id} is not settled"
                        )))
                    }
                })
            });
        Ok(PyList::new(py, entries.collect::<PyResult<Vec<_>>>()?)?.into_any())
    }

    /// Forget request `id` (its caller gave up waiting); reports still due for it are ignored.
    fn discard(&self, id: u64) {
        self.table().requests.remove(&id);
    }

    /// Requests in the table: produced and not yet taken or discarded.
    fn open_requests(&self) -> usize {
        self.table().requests.len()
    }

    /// Records queued or in flight (confluent-kafka's `len(producer)`).
    fn __len__(&self) -> usize {
        self.inner.in_flight_count().max(0) as usize
    }

    /// The fatal error that stopped this producer, as `(code, reason)`, or None.
    fn fatal_error(&self) -> Option<(i32, String)> {
        self.inner
            .client()
            .fatal_error()
            .map(|(code, reason)| (code as i32, reason))
    }

    /// Fail every record still queued, not yet sent (their reports arrive on the next polls). Records in flight
    /// keep their real outcome: they may already be written.
    fn purge(&self) {
        self.inner.purge(PurgeConfig::default().queue());
    }

    /// librdkafka's `rd_kafka_test_fatal_error`: the fatal error an idempotent producer gets when the broker
    /// reports a sequence gap (OUT_OF_ORDER_SEQUENCE_NUMBER), raised on demand. For tests.
    fn test_fatal_error(&self, reason: &str) -> PyResult<()> {
        let reason = std::ffi::CString::new(reason)
            .map_err(|error| PyValueError::new_err(error.to_string()))?;
        let result = unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                self.inner.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            )
        };
        match result as i32 {
            0 => Ok(()),
            other => Err(PyValueError::new_err(format!(
                "test_fatal_error: librdkafka error {other}"
            ))),
        }
    }
}
