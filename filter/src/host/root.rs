//! The root context: reads and compiles the configuration, flushes counters
//! and watches streams paused for a body that never comes.

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::active::Active;
use super::{abi, inflight, limits, now, reply, Stream, Vm};
use crate::config::Plan;
use crate::reply::LocalReply;

/// How long a stream paused for its body may wait for the first body bytes
/// while this VM has never seen a paused request's body: without
/// `allow_on_headers_stop_iteration` Envoy never delivers them.
const BODY_WAIT: Duration = Duration::from_secs(5);
/// Once bodies are known to arrive, a stream still without one is a slow
/// client: it gets a 408 after this long (Envoy's own idle timeouts may
/// answer first).
const SLOW_BODY_WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Root {
    active: Option<Rc<Active>>,
    vm: Rc<Vm>,
    memory_gauge: Option<u32>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match abi::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(bytes) => bytes,
            Err(status) => {
                log::error!("cannot read the plugin configuration: host status {status}");
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
                log::info!(
                    "configured {} entries in {:.1} ms (VM memory {:.1} MiB)",
                    plan.entries.len(),
                    took.as_secs_f64() * 1000.0,
                    (core::arch::wasm32::memory_size(0) * 65536) as f64 / 1048576.0
                );
                // Ticks flush counters and watch streams waiting for a body.
                let _ = hostcalls::set_tick_period(Duration::from_secs(1));
                if let Some(previous) = &self.active {
                    previous.flush();
                }
                let active = Rc::new(Active::new(plan));
                limits::create_entry_buckets(&active);
                inflight::create_tables(&active);
                super::failover::start(&active);
                self.active = Some(active);
                true
            }
            Err(e) => {
                // Keep no half-built state: the previous plan (if any) stays.
                log::error!("invalid configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(active) = &self.active {
            active.flush();
            if active.uses_client_slots() {
                active.refresh_secret();
            }
            inflight::tick(active);
            super::failover::tick(active);
        }
        self.record_memory();
        self.answer_stalled_bodies();
    }

    /// Another VM of this plugin ejected a backend (`failover::peers`).
    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Some(active) = &self.active {
            super::failover::on_queue_ready(active, queue_id);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream::new(
            context_id,
            self.active.clone(),
            self.vm.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Root {
    /// The largest VM memory of this plugin's workers, as the gauge
    /// `agentroute_vm_memory_bytes` (each worker runs its own VM; a VM's
    /// memory only grows, so the largest one is the one to watch).
    fn record_memory(&mut self) {
        let bytes = (core::arch::wasm32::memory_size(0) * 65536) as u64;
        if self.memory_gauge.is_none() {
            self.memory_gauge = abi::define_metric(1, crate::stats::VM_MEMORY).ok();
        }
        let Some(id) = self.memory_gauge else {
            return;
        };
        let known = hostcalls::get_metric(id).unwrap_or(0);
        if bytes > known {
            let _ = hostcalls::record_metric(id, bytes);
        }
    }

    /// Answers streams whose body never came: Envoy stalls a stream paused
    /// in its headers unless the PluginConfig allows it, and a hang is the
    /// worst failure a gateway can show. Where bodies are known to arrive,
    /// a late one is a slow client, not a misconfiguration.
    fn answer_stalled_bodies(&self) {
        let Some(now) = now() else {
            return;
        };
        if self.vm.waiting.borrow().is_empty() {
            return;
        }
        let flag_set = self
            .active
            .as_ref()
            .is_some_and(|a| self.vm.bodies_arrive(a));
        let limit = if flag_set { SLOW_BODY_WAIT } else { BODY_WAIT };
        let expired: Vec<u32> = self
            .vm
            .waiting
            .borrow()
            .iter()
            .filter(|(_, w)| now.duration_since(w.since).is_ok_and(|d| d >= limit))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(waiting) = self.vm.waiting.borrow_mut().remove(&id) else {
                continue;
            };
            let mut answer = if flag_set {
                LocalReply::error(
                    408,
                    "invalid_request_error",
                    Some("request_timeout"),
                    None,
                    "the request body did not arrive in time",
                )
            } else {
                if !self.vm.warned_no_body.replace(true) {
                    log::error!(
                        "openai.model_from is \"body\" (model dispatch and MCP tool rules read bodies) but Envoy never delivered a request body to the filter: \
                         set allow_on_headers_stop_iteration: true in the Wasm PluginConfig (Envoy >= 1.35), \
                         or place json_to_metadata before agentroute and use openai.model_from: \"metadata\""
                    );
                }
                LocalReply::error(
                    500,
                    "server_error",
                    Some("gateway_misconfigured"),
                    None,
                    "the gateway could not read the request body to find the model (see the gateway log)",
                )
            };
            answer.headers.extend(waiting.cors);
            if hostcalls::set_effective_context(id).is_ok() {
                reply(&answer);
            }
        }
    }
}
