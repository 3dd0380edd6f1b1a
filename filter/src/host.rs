//! The only module that talks to the Proxy-Wasm host.
//!
//! Host calls go through `hostcalls` directly: the SDK's trait helpers panic on
//! an unexpected status, and a panic is a wasm trap that fails the stream.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::config::Plan;
use crate::request::{decide, Decision, HeaderOp, LocalReply, RequestHead};
use crate::stats::Stat;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

fn log(level: LogLevel, message: &str) {
    // Logging is best effort: there is nowhere to report a failed log call.
    let _ = hostcalls::log(level, message);
}

/// A compiled plan with the stats defined for it so far in this VM.
struct Active {
    plan: Plan,
    /// Metric ids per entry and stat, defined on first use: defining every
    /// stat of 10,000 agents up front would slow start-up for stats nobody hits.
    metrics: RefCell<Vec<[Option<u32>; Stat::COUNT]>>,
}

impl Active {
    fn new(plan: Plan) -> Self {
        let metrics = RefCell::new(vec![[None; Stat::COUNT]; plan.entries.len()]);
        Active { plan, metrics }
    }

    fn bump(&self, entry: usize, stat: Stat, delta: i64) {
        let Some(id) = self.metric(entry, stat) else {
            return;
        };
        let _ = hostcalls::increment_metric(id, delta);
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

#[derive(Default)]
struct Root {
    active: Option<Rc<Active>>,
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
        let started = hostcalls::get_current_time().ok();
        match Plan::from_json(&bytes) {
            Ok(plan) => {
                let took = started
                    .and_then(|t0| hostcalls::get_current_time().ok()?.duration_since(t0).ok())
                    .unwrap_or_default();
                log(
                    LogLevel::Info,
                    &format!(
                        "configured {} entries in {:.1} ms",
                        plan.entries.len(),
                        took.as_secs_f64() * 1000.0
                    ),
                );
                self.active = Some(Rc::new(Active::new(plan)));
                true
            }
            Err(e) => {
                // Keep no half-built state: the previous plan (if any) stays.
                log(LogLevel::Error, &format!("invalid configuration: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            active: self.active.clone(),
            upgrade_entry: None,
            connected: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    active: Option<Rc<Active>>,
    /// The entry of a matched upgrade request, until its response is seen.
    upgrade_entry: Option<usize>,
    /// Whether this stream counts in the entry's open-connections gauge.
    connected: bool,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
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
        let pairs = match hostcalls::get_map(MapType::HttpRequestHeaders) {
            Ok(pairs) => pairs,
            Err(status) => return fail(&format!("cannot read request headers: {status:?}")),
        };
        let head = RequestHead::from_pairs(&pairs, &active.plan.dispatch_header);
        match decide(&active.plan, &head) {
            Decision::Forward { entry, ops } => {
                if let Err(message) = apply(&ops) {
                    return fail(&message);
                }
                if let Some(entry) = entry {
                    active.bump(entry, Stat::Requests, 1);
                    if head.upgrade {
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
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let (Some(entry), Some(active)) = (self.upgrade_entry.take(), &self.active) else {
            return Action::Continue;
        };
        if let Ok(Some(status)) = hostcalls::get_map_value(MapType::HttpResponseHeaders, ":status")
        {
            if status == "101" {
                active.bump(entry, Stat::ConnectionsActive, 1);
                self.upgrade_entry = Some(entry);
                self.connected = true;
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let (true, Some(entry), Some(active)) =
            (self.connected, self.upgrade_entry, &self.active)
        {
            active.bump(entry, Stat::ConnectionsActive, -1);
        }
    }
}

fn apply(ops: &[HeaderOp<'_>]) -> Result<(), String> {
    for op in ops {
        let (name, value) = match op {
            HeaderOp::Set(name, value) => (*name, Some(value.as_ref())),
            HeaderOp::Remove(name) => (*name, None),
        };
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value)
            .map_err(|status| format!("cannot set request header {name}: {status:?}"))?;
    }
    Ok(())
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
