//! The only module that talks to the Proxy-Wasm host.
//!
//! Host calls go through `hostcalls` directly, not the SDK's trait helpers
//! (which panic on an unexpected status: a wasm trap that fails the stream),
//! and request headers through the raw ABI (`abi` below), because the SDK's
//! header reads panic on a value that is not UTF-8.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::config::{ModelSource, Per, Plan, RateLimit};
use crate::openai::{self, ModelError, UsageMeter};
use crate::ratelimit::{self, BucketSpec, SharedStore, StoreError};
use crate::request::{
    apply_to, decide, decide_model, rate_limit_headers, rate_limited, Decision, Flags, HeaderOp,
    LocalReply, RequestHead,
};
use crate::stats::Stat;
use crate::wire;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// How long a stream paused for its body may wait for the first body bytes.
/// Without `allow_on_headers_stop_iteration` Envoy never delivers them.
const BODY_WAIT: Duration = Duration::from_secs(5);

fn log(level: LogLevel, message: &str) {
    // Logging is best effort: there is nowhere to report a failed log call.
    let _ = hostcalls::log(level, message);
}

fn now() -> Option<SystemTime> {
    hostcalls::get_current_time().ok()
}

/// A compiled plan with the stats defined for it so far in this VM.
struct Active {
    plan: Plan,
    /// Metric ids per entry and stat, defined on first use: defining every
    /// stat of 10,000 agents up front would slow start-up for stats nobody hits.
    metrics: RefCell<Vec<[Option<u32>; Stat::COUNT]>>,
    /// Prefix of this plugin's shared-data keys (see [`bucket_key`]).
    key_prefix: String,
    /// Counter increments not yet handed to Envoy: a host call per request
    /// for a counter measurably slows the hot path, so counters are summed
    /// here and flushed once a second (`on_tick`).
    pending: RefCell<HashMap<(usize, Stat), i64>>,
}

impl Active {
    fn new(plan: Plan, key_prefix: String) -> Self {
        let metrics = RefCell::new(vec![[None; Stat::COUNT]; plan.entries.len()]);
        Active {
            plan,
            metrics,
            key_prefix,
            pending: RefCell::new(HashMap::new()),
        }
    }

    /// Counts `delta` for a stat: gauges at once, counters at the next flush.
    fn bump(&self, entry: usize, stat: Stat, delta: i64) {
        if stat.is_gauge() {
            self.record(entry, stat, delta);
        } else {
            *self.pending.borrow_mut().entry((entry, stat)).or_default() += delta;
        }
    }

    fn flush(&self) {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for ((entry, stat), delta) in pending {
            self.record(entry, stat, delta);
        }
    }

    fn record(&self, entry: usize, stat: Stat, delta: i64) {
        if let Some(id) = self.metric(entry, stat) {
            let _ = hostcalls::increment_metric(id, delta);
        }
    }

    fn metric(&self, entry: usize, stat: Stat) -> Option<u32> {
        let mut metrics = self.metrics.borrow_mut();
        let slot = metrics.get_mut(entry)?.get_mut(stat.index())?;
        if slot.is_none() {
            let kind = if stat.is_gauge() {
                MetricType::Gauge
            } else {
                MetricType::Counter
            };
            let name = stat.name(self.plan.entries.get(entry)?);
            *slot = hostcalls::define_metric(kind, &name).ok();
        }
        *slot
    }
}

/// Streams paused for their body, by context id, with the time they paused.
type Waiting = Rc<RefCell<HashMap<u32, SystemTime>>>;

#[derive(Default)]
struct Root {
    active: Option<Rc<Active>>,
    waiting: Waiting,
    warned_no_body: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                log(
                    LogLevel::Error,
                    &format!("cannot read plugin configuration: {status:?}"),
                );
                return false;
            }
        };
        let started = now();
        match Plan::from_json(&bytes) {
            Ok(mut plan) => {
                let finished = now();
                let took = started
                    .zip(finished)
                    .and_then(|(t0, t1)| t1.duration_since(t0).ok())
                    .unwrap_or_default();
                plan.created = finished
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                log(
                    LogLevel::Info,
                    &format!(
                        "configured {} entries in {:.1} ms (VM memory {:.1} MiB)",
                        plan.entries.len(),
                        took.as_secs_f64() * 1000.0,
                        (core::arch::wasm32::memory_size(0) * 65536) as f64 / 1048576.0
                    ),
                );
                // Ticks flush counters and watch streams waiting for a body.
                let _ = hostcalls::set_tick_period(Duration::from_secs(1));
                if let Some(previous) = &self.active {
                    previous.flush();
                }
                self.active = Some(Rc::new(Active::new(plan, key_prefix())));
                true
            }
            Err(e) => {
                // Keep no half-built state: the previous plan (if any) stays.
                log(LogLevel::Error, &format!("invalid configuration: {e}"));
                false
            }
        }
    }

    /// Flushes counters, and answers streams whose body never came: Envoy
    /// stalls a stream paused in its headers unless the PluginConfig allows
    /// it, and a hang is the worst failure a gateway can show.
    fn on_tick(&mut self) {
        if let Some(active) = &self.active {
            active.flush();
        }
        let Some(now) = now() else {
            return;
        };
        let expired: Vec<u32> = self
            .waiting
            .borrow()
            .iter()
            .filter(|(_, since)| now.duration_since(**since).is_ok_and(|d| d >= BODY_WAIT))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.waiting.borrow_mut().remove(&id);
            if !self.warned_no_body {
                self.warned_no_body = true;
                log(
                    LogLevel::Error,
                    "openai.model_from is \"body\" but Envoy never delivered a request body to the filter: \
                     set allow_on_headers_stop_iteration: true in the Wasm PluginConfig (Envoy >= 1.35), \
                     or place json_to_metadata before agentroute and use openai.model_from: \"metadata\"",
                );
            }
            if hostcalls::set_effective_context(id).is_ok() {
                reply(&LocalReply::error(
                    500,
                    "server_error",
                    Some("gateway_misconfigured"),
                    None,
                    "the gateway could not read the request body to find the model (see the gateway log)",
                ));
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            id: context_id,
            active: self.active.clone(),
            waiting: self.waiting.clone(),
            body_for: None,
            upgrade_entry: None,
            connected: false,
            limit_headers: None,
            budget: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    id: u32,
    active: Option<Rc<Active>>,
    waiting: Waiting,
    /// Set while the body is buffered to read its model, with the request
    /// headers as read (nothing can change them while the stream is paused).
    body_for: Option<(Flags, Vec<u8>)>,
    /// The entry of a matched upgrade request, until its response is seen.
    upgrade_entry: Option<usize>,
    /// Whether this stream counts in the entry's open-connections gauge.
    connected: bool,
    /// `x-ratelimit-*` headers for the response of an admitted request.
    limit_headers: Option<[(&'static str, String); 3]>,
    /// The token budget this response's `usage` is debited from.
    budget: Option<Budget>,
}

struct Budget {
    entry: usize,
    key: String,
    spec: BucketSpec,
    meter: Option<UsageMeter>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let Some(active) = self.active.clone() else {
            // Unreachable when Envoy honours a failed on_configure; fail closed.
            return reply(&LocalReply::error(
                500,
                "server_error",
                None,
                None,
                "agentroute is not configured",
            ));
        };
        let raw = match abi::get_pairs(MapType::HttpRequestHeaders) {
            Ok(raw) => raw,
            Err(message) => return fail(&message),
        };
        let Some(pairs) = wire::parse(&raw) else {
            return fail("malformed request header map");
        };
        let plan = &active.plan;
        let head = RequestHead::from_pairs(&pairs, &plan.dispatch_header);
        match decide(plan, &head) {
            Decision::ReadModel(flags) => match plan.openai.model_from {
                ModelSource::Metadata => {
                    let model = metadata_model(&plan.openai.metadata_namespace);
                    let decision = decide_model(plan, model.as_deref(), flags);
                    self.carry_out(&active, decision, flags.upgrade, Some(&pairs))
                }
                ModelSource::Body if end_of_stream => {
                    let decision = decide_model(plan, Err(&ModelError::Missing), flags);
                    self.carry_out(&active, decision, flags.upgrade, Some(&pairs))
                }
                ModelSource::Body => {
                    self.body_for = Some((flags, raw));
                    if let Some(t) = now() {
                        self.waiting.borrow_mut().insert(self.id, t);
                    }
                    Action::Pause
                }
            },
            decision => self.carry_out(&active, decision, head.flags.upgrade, Some(&pairs)),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(_), Some(active)) = (&self.body_for, self.active.clone()) else {
            return Action::Continue;
        };
        self.waiting.borrow_mut().remove(&self.id);
        let max = active.plan.openai.max_body_bytes;
        if body_size as u64 > max {
            self.body_for = None;
            return reply(&openai::too_large(max));
        }
        if !end_of_stream {
            // Pause buffers: Envoy calls again with the whole body so far.
            return Action::Pause;
        }
        self.dispatch_body(&active, body_size)
    }

    /// A body followed by trailers never sees `end_of_stream`: it ends here.
    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        match (&self.body_for, self.active.clone()) {
            (Some(_), Some(active)) => self.dispatch_body(&active, usize::MAX),
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Some(headers) = self.limit_headers.take() {
            for (name, value) in &headers {
                let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
            }
        }
        if let Some(budget) = &mut self.budget {
            let content_type =
                hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, "content-type")
                    .ok()
                    .flatten();
            let content_type = content_type
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok());
            budget.meter = UsageMeter::new(content_type);
        }
        let (Some(entry), Some(active)) = (self.upgrade_entry.take(), &self.active) else {
            return Action::Continue;
        };
        if let Ok(Some(status)) =
            hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status")
        {
            if status == b"101" {
                active.bump(entry, Stat::ConnectionsActive, 1);
                self.upgrade_entry = Some(entry);
                self.connected = true;
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if let Some(meter) = self.budget.as_mut().and_then(|b| b.meter.as_mut()) {
            if let Ok(Some(chunk)) =
                hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
            {
                meter.feed(&chunk);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.waiting.borrow_mut().remove(&self.id);
        if let (Some(budget), Some(active)) = (self.budget.take(), &self.active) {
            debit_tokens(active, budget);
        }
        if let (true, Some(entry), Some(active)) =
            (self.connected, self.upgrade_entry, &self.active)
        {
            active.bump(entry, Stat::ConnectionsActive, -1);
        }
    }
}

impl Stream {
    /// Reads the model from the buffered body (up to `size` bytes) and
    /// dispatches the paused request on it.
    fn dispatch_body(&mut self, active: &Active, size: usize) -> Action {
        let Some((flags, raw)) = self.body_for.take() else {
            return Action::Continue;
        };
        let body = match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size) {
            Ok(body) => body.unwrap_or_default(),
            Err(status) => return fail(&format!("cannot read request body: {status:?}")),
        };
        let model = openai::model_from_body(&body);
        let decision = decide_model(&active.plan, model.as_deref(), flags);
        let pairs = wire::parse(&raw);
        self.carry_out(active, decision, flags.upgrade, pairs.as_deref())
    }

    /// Draws from the entry's buckets. Shared-data trouble fails open: a
    /// broken limiter must not take the agent down with it.
    fn admit(
        &mut self,
        active: &Active,
        entry: usize,
        pairs: Option<&[(&str, &[u8])]>,
    ) -> Result<(), LocalReply> {
        let Some(limit) = active
            .plan
            .entries
            .get(entry)
            .and_then(|e| e.rate_limit.as_ref())
        else {
            return Ok(());
        };
        let Some(now) = now().and_then(|t| t.duration_since(UNIX_EPOCH).ok()) else {
            return Ok(());
        };
        let now = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        let client = client_value(&limit.per, pairs);
        if let Some(tpm) = limit.tokens_per_minute {
            let spec = BucketSpec {
                capacity: tpm as f64,
                rate_per_second: tpm as f64 / 60.0,
            };
            let key = bucket_key(active, entry, limit, "tokens", client.as_deref());
            match ratelimit::peek(&HostStore, &key, spec, now) {
                Ok(o) if !o.allowed => return Err(rate_limited("tokens", tpm, &o)),
                Ok(_) => {}
                Err(e) => log(
                    LogLevel::Warn,
                    &format!("token budget unavailable, admitting: {e:?}"),
                ),
            }
            self.budget = Some(Budget {
                entry,
                key,
                spec,
                meter: None,
            });
        }
        if let Some(rate) = limit.requests {
            let spec = BucketSpec {
                capacity: f64::from(rate.burst),
                rate_per_second: rate.requests_per_second,
            };
            let key = bucket_key(active, entry, limit, "requests", client.as_deref());
            match ratelimit::acquire(&HostStore, &key, spec, 1.0, now) {
                Ok(o) => {
                    if o.cas_retries > 0 {
                        active.bump(entry, Stat::CasRetries, i64::from(o.cas_retries));
                    }
                    if !o.allowed {
                        self.budget = None;
                        return Err(rate_limited("requests", u64::from(rate.burst), &o));
                    }
                    self.limit_headers = Some(rate_limit_headers(u64::from(rate.burst), &o));
                }
                Err(e) => log(
                    LogLevel::Warn,
                    &format!("rate limit bucket unavailable, admitting: {e:?}"),
                ),
            }
        }
        active.bump(entry, Stat::RateLimitAdmitted, 1);
        Ok(())
    }

    /// Applies a decision: header changes then continue, or a local reply.
    /// `upgrade` streams are watched for their 101 to count open connections.
    /// `pairs` are the request headers when at hand (per-header limits).
    fn carry_out(
        &mut self,
        active: &Active,
        decision: Decision<'_>,
        upgrade: bool,
        pairs: Option<&[(&str, &[u8])]>,
    ) -> Action {
        match decision {
            Decision::Forward { entry, ops } => {
                if let Some(entry) = entry {
                    if let Err(r) = self.admit(active, entry, pairs) {
                        active.bump(entry, Stat::RateLimited, 1);
                        return reply(&r);
                    }
                }
                if let Err(message) = apply(&ops, pairs) {
                    return fail(&message);
                }
                if let Some(entry) = entry {
                    active.bump(entry, Stat::Requests, 1);
                    if upgrade {
                        self.upgrade_entry = Some(entry);
                    }
                }
                Action::Continue
            }
            Decision::Reply { entry, reply: r } => {
                if let Some(entry) = entry {
                    active.bump(entry, Stat::Refused, 1);
                }
                reply(&r)
            }
            // Only `decide` asks for a model, and its caller handles that.
            Decision::ReadModel(_) => fail("internal: model requested twice"),
        }
    }
}

/// Debits the tokens a finished response used from its entry's budget.
fn debit_tokens(active: &Active, budget: Budget) {
    let Some(tokens) = budget.meter.and_then(UsageMeter::finish) else {
        return;
    };
    let Some(now) = now().and_then(|t| t.duration_since(UNIX_EPOCH).ok()) else {
        return;
    };
    let now = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
    match ratelimit::debit(&HostStore, &budget.key, budget.spec, tokens as f64, now) {
        Ok(o) => {
            active.bump(
                budget.entry,
                Stat::TokensDebited,
                i64::try_from(tokens).unwrap_or(i64::MAX),
            );
            if o.cas_retries > 0 {
                active.bump(budget.entry, Stat::CasRetries, i64::from(o.cas_retries));
            }
        }
        Err(e) => log(
            LogLevel::Warn,
            &format!("cannot debit {tokens} tokens: {e:?}"),
        ),
    }
}

/// Proxy-Wasm shared data: one store per VM id, shared by every worker.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        hostcalls::get_shared_data(key).map_err(|_| StoreError::Unavailable)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            Status::CasMismatch => StoreError::CasMismatch,
            _ => StoreError::Unavailable,
        })
    }
}

/// Shared-data keys are per VM id, and Istio sets none: every key carries
/// the plugin's name so two plugins (or two agentroute filters) sharing a VM
/// id never share buckets.
fn key_prefix() -> String {
    let name = hostcalls::get_property(vec!["plugin_name"])
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    format!("agentroute/{name}")
}

/// The bucket of an entry (or of one client of it). The limit's parameters
/// are part of the key: a configuration change that keeps an entry's limit
/// carries its bucket over, one that changes the limit starts a fresh, full
/// bucket.
fn bucket_key(
    active: &Active,
    entry: usize,
    limit: &RateLimit,
    what: &str,
    client: Option<&str>,
) -> String {
    let id = active
        .plan
        .entries
        .get(entry)
        .map(|e| e.id())
        .unwrap_or_default();
    let params = match (what, limit.requests) {
        ("requests", Some(r)) => format!("{}r{}b", r.requests_per_second, r.burst),
        _ => format!("{}tpm", limit.tokens_per_minute.unwrap_or(0)),
    };
    let key = format!("{}/{id}/{what}/{params}", active.key_prefix);
    match client {
        Some(c) => ratelimit::client_key(&key, c),
        None => key,
    }
}

/// The client a per-client limit counts: a header value, or the peer address
/// without its port. A request without one shares the entry's own bucket.
fn client_value(per: &Per, pairs: Option<&[(&str, &[u8])]>) -> Option<String> {
    match per {
        Per::Entry => None,
        Per::Header(name) => {
            let value = match pairs {
                Some(pairs) => pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.to_vec()),
                None => hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
                    .ok()
                    .flatten(),
            };
            value.map(|v| String::from_utf8_lossy(&v).into_owned())
        }
        Per::ClientIp => {
            let addr = hostcalls::get_property(vec!["source", "address"])
                .ok()
                .flatten()?;
            let addr = String::from_utf8(addr).ok()?;
            Some(match addr.rsplit_once(':') {
                Some((ip, port)) if port.bytes().all(|b| b.is_ascii_digit()) => ip.to_string(),
                _ => addr,
            })
        }
    }
}

/// The model Envoy's json_to_metadata filter wrote: `<ns>.model`, or
/// `<ns>.model_error` (`missing`, `invalid_json`) as the shipped configs set.
fn metadata_model(namespace: &str) -> Result<String, ModelError> {
    let read = |key: &str| {
        hostcalls::get_property(vec!["metadata", "filter_metadata", namespace, key])
            .ok()
            .flatten()
    };
    if let Some(model) = read("model") {
        // Envoy hands over a number or bool as its raw bytes (a little-endian
        // double, one byte): model ids are printable text, those are not.
        return match String::from_utf8(model) {
            Ok(m) if m.is_empty() => Err(ModelError::Empty),
            Ok(m) if !m.chars().any(char::is_control) => Ok(m),
            _ => Err(ModelError::NotAString),
        };
    }
    match read("model_error").as_deref() {
        Some(b"invalid_json") => Err(ModelError::InvalidJson(
            "json_to_metadata could not parse it".to_string(),
        )),
        Some(_) => Err(ModelError::Missing),
        None => Err(ModelError::NoMetadata(namespace.to_string())),
    }
}

/// Applies header changes in one host call that replaces the whole map:
/// each host call costs more than Envoy rebuilding a small map.
fn apply(ops: &[HeaderOp<'_>], pairs: Option<&[(&str, &[u8])]>) -> Result<(), String> {
    if ops.is_empty() {
        return Ok(());
    }
    let raw;
    let parsed;
    let pairs = match pairs {
        Some(pairs) => pairs,
        None => {
            raw = abi::get_pairs(MapType::HttpRequestHeaders)?;
            parsed = wire::parse(&raw).ok_or("malformed request header map")?;
            &parsed[..]
        }
    };
    abi::set_pairs(
        MapType::HttpRequestHeaders,
        &wire::serialize(&apply_to(pairs, ops)),
    )
}

/// Header maps through the raw ABI: the SDK's versions panic on a non-UTF-8
/// value or an unexpected status, and a panic traps the VM.
mod abi {
    use proxy_wasm::types::MapType;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
        fn proxy_set_header_map_pairs(map_type: u32, data: *const u8, size: usize) -> u32;
    }

    pub fn get_pairs(map: MapType) -> Result<Vec<u8>, String> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size = 0usize;
        // SAFETY: the host writes a buffer it allocated through the SDK's
        // proxy_on_memory_allocate (a boxed slice of exactly `size` bytes),
        // whose ownership passes to us.
        let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
        match status {
            0 if data.is_null() => Ok(Vec::new()),
            0 => Ok(unsafe { Vec::from_raw_parts(data, size, size) }),
            s => Err(format!("cannot read headers: host status {s}")),
        }
    }

    pub fn set_pairs(map: MapType, serialized: &[u8]) -> Result<(), String> {
        // SAFETY: the host only reads `size` bytes from `data` during the call.
        match unsafe {
            proxy_set_header_map_pairs(map as u32, serialized.as_ptr(), serialized.len())
        } {
            0 => Ok(()),
            s => Err(format!("cannot set headers: host status {s}")),
        }
    }
}

fn reply(r: &LocalReply) -> Action {
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Err(status) = hostcalls::send_http_response(r.status, headers, Some(r.body.as_bytes())) {
        log(
            LogLevel::Error,
            &format!("cannot send local reply: {status:?}"),
        );
    }
    Action::Pause
}

/// A request whose routing headers could not be applied must not go on: it
/// could still carry a client-chosen backend.
fn fail(message: &str) -> Action {
    log(LogLevel::Error, message);
    reply(&LocalReply::error(
        500,
        "server_error",
        None,
        None,
        "gateway routing failed",
    ))
}
