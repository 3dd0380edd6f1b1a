//! The only module that talks to the Proxy-Wasm host, split by phase:
//! [`root`] (configuration, ticks), [`request`] (routing, admission, model
//! dispatch, A2A requests), [`response`] (limit headers, usage metering,
//! agent cards, A2A answers), [`limits`] (buckets in shared data and the
//! rate limit service), with host calls that can fail in [`abi`].

mod abi;
mod active;
mod failover;
mod inflight;
mod limits;
mod mcp;
mod observe;
mod request;
mod response;
mod root;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use crate::a2a::card::CardAddress;
use crate::canary::{self, Rng};
use crate::cors;
use crate::reply::{self, LimitStatus, LocalReply};
use crate::stats::Stat;
use crate::usage::{Metered, UsageMeter};

use active::Active;
use inflight::Slot;
use limits::Budget;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}

/// What every stream of one VM shares.
#[derive(Default)]
struct Vm {
    /// Streams paused for their request body, by context id.
    waiting: RefCell<HashMap<u32, Waiting>>,
    /// Random draws of canary splits (seeded on first use).
    rng: Cell<Option<Rng>>,
    /// A paused request's body has reached this VM: Envoy's
    /// `allow_on_headers_stop_iteration` is evidently set, so a late body is a
    /// slow client, and a response may be paused too. Shared with the other
    /// workers through shared data (see [`Vm::bodies_arrive`]).
    body_seen: Cell<bool>,
    /// Bytes all usage meters hold now (bounded per VM).
    metering: Cell<usize>,
    /// Bytes all translated A2A streams hold now (bounded per VM).
    translating: Cell<usize>,
    /// One log line per VM for things that repeat per request.
    warned_signed_card: Cell<bool>,
    warned_no_body: Cell<bool>,
    warned_metadata_status: Cell<bool>,
    warned_translation_memory: Cell<bool>,
}

/// A stream paused for its body: since when, and the CORS headers a reply
/// to it carries.
struct Waiting {
    since: SystemTime,
    cors: Vec<(&'static str, String)>,
}

impl Vm {
    /// A random draw, without a host call once seeded (std's `RandomState`
    /// is seeded from the host's random source).
    fn random(&self) -> u64 {
        let mut rng = self.rng.get().unwrap_or_else(|| {
            use std::hash::BuildHasher;
            Rng(std::collections::hash_map::RandomState::new().hash_one(0u8))
        });
        let draw = rng.next_u64();
        self.rng.set(Some(rng));
        draw
    }

    /// Whether Envoy delivers the body of a paused request, as seen by this
    /// worker or any other of the process (each worker runs its own VM).
    fn bodies_arrive(&self, active: &Active) -> bool {
        if self.body_seen.get() {
            return true;
        }
        let seen = proxy_wasm::hostcalls::get_shared_data(&active.bodies_key())
            .is_ok_and(|(value, _)| value.is_some());
        self.body_seen.set(seen);
        seen
    }

    /// Records that a paused request's body arrived, once per VM.
    fn saw_body(&self, active: &Active) {
        if !self.body_seen.replace(true) {
            let _ = proxy_wasm::hostcalls::set_shared_data(&active.bodies_key(), Some(b"1"), None);
        }
    }
}

/// Usage meters of one VM hold at most this much between them; past it an
/// answer goes unmetered (and counted) rather than growing the VM.
const MAX_METERING_BYTES: usize = 8 * 1024 * 1024;

/// Translated A2A streams of one VM hold at most this much between them
/// (unfinished events, answer text that cannot go out yet); a stream that
/// would take more ends with an error event (and is counted) rather than
/// growing the VM. A budget of its own: slow agents must not leave token
/// budgets unmetered, nor the other way round.
const MAX_TRANSLATION_BYTES: usize = 8 * 1024 * 1024;

fn now() -> Option<SystemTime> {
    proxy_wasm::hostcalls::get_current_time().ok()
}

fn now_nanos() -> Option<u64> {
    let since = now()?.duration_since(UNIX_EPOCH).ok()?;
    Some(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// One HTTP stream.
struct Stream {
    id: u32,
    active: Option<Rc<Active>>,
    vm: Rc<Vm>,
    /// Request headers as read, kept while the request is paused for its
    /// body (nothing can change them meanwhile).
    held_headers: Option<Vec<u8>>,
    /// The OpenAI request body is being buffered to read its model.
    reading_model: bool,
    /// An MCP request body is being buffered to read its JSON-RPC message.
    reading_message: bool,
    /// The message read from the body, for the decision made on it.
    rpc_message: Option<crate::mcp::rpc::Message>,
    /// The message was judged from metadata: the body's first byte still
    /// has to show it is no batch (json_to_metadata reads keys out of an
    /// array as if it were an object).
    batch_watch: Option<crate::mcp::batch::BatchWatch>,
    /// A `tools/list` answer to filter.
    tool_list: Option<mcp::ToolList>,
    /// Bytes of an OpenAI body counted as they pass (model from metadata):
    /// past `max_body_bytes` the request is refused.
    counting_body: Option<u64>,
    /// The rate limit service's answer is awaited (gRPC token).
    awaiting_limit: Option<u32>,
    /// Admitted while the body was still arriving: its last chunk lets the
    /// request go on.
    resume_after_body: bool,
    /// The request has ended (headers, body or trailers with end of stream).
    request_complete: bool,
    /// A body chunk reached this filter while it held the request: Envoy
    /// delivers bodies to paused filters here.
    body_while_paused: bool,
    /// The matched entry, once dispatched.
    entry: Option<usize>,
    /// An upgrade request (WebSocket), watched for its 101 (or 200 for an
    /// HTTP/2 extended CONNECT).
    upgrade: bool,
    extended_connect: bool,
    /// The upstream's response headers arrived.
    response_started: bool,
    /// CORS of a request with an `Origin` under a policy: what its answer
    /// gets. `None` for every other request, whose answer is not touched.
    cors: Option<cors::Answer>,
    /// The in-flight slot the stream holds until it ends.
    slot: Option<Slot>,
    /// The caller's verified claims, read from `jwt_authn`'s metadata on
    /// first use (only for entries with `access` or per-claim limits).
    /// `None` for plans whose entries never read claims (no allocation).
    claims: Option<Rc<ClaimsCache>>,
    /// The rules of the entry's `access` that admitted the caller.
    grant: Option<crate::identity::access::Grant>,
    /// An MCP server doing its own OAuth: its OAuth URLs are rewritten.
    oauth: Option<OAuthState>,
    /// The token a `tools/call` took from its tool's limit, given back if
    /// one of the entry's own limits refuses the call after it.
    tool_token: Option<mcp::ToolToken>,
    /// Whether this stream counts in the entry's open-connections gauge.
    connected: bool,
    /// `x-ratelimit-*` of an admitted request, for its response.
    limit_status: Option<LimitStatus>,
    /// The token budget after an admitted request's hold, for its response.
    token_status: Option<LimitStatus>,
    /// The token budget this answer's usage settles.
    budget: Option<Budget>,
    meter: Option<UsageMeter>,
    /// Bytes `meter` held at the last count (for the VM-wide bound).
    meter_held: usize,
    /// What the finished meter found.
    metered: Option<Metered>,
    /// The model label of this answer's token counters, when they count it
    /// (`openai.usage_metrics`, dispatched by model).
    model_label: Option<String>,
    /// An agent card on its way back: rewritten to point at the gateway.
    card: Option<CardState>,
    /// A request translated for its backend (a chat for an A2A agent, a
    /// request for another provider's API), and its answer back.
    translation: Option<crate::llm::session::Session>,
    /// The request is on the Anthropic surface: the filter's refusals are
    /// Anthropic-shaped.
    anthropic_surface: bool,
    /// Bytes the translated stream held at the last count (for the
    /// VM-wide bound).
    translation_held: usize,
    /// A forwarded request of an entry with failover: the backends it may
    /// try, judged at its answer.
    failover: Option<crate::request::Tries>,
    /// A healthy answer of an entry with failover whose end is not seen
    /// yet, with the attempt that gave it.
    failover_open: Option<(crate::request::Tries, usize)>,
}

enum CardState {
    /// The request asked for a card; the answer is not seen yet.
    Asked(CardAddress),
    /// A 200 JSON card is being buffered.
    Buffering(CardAddress),
}

impl Stream {
    fn new(id: u32, active: Option<Rc<Active>>, vm: Rc<Vm>) -> Self {
        Stream {
            id,
            active,
            vm,
            held_headers: None,
            reading_model: false,
            reading_message: false,
            rpc_message: None,
            batch_watch: None,
            tool_token: None,
            claims: None,
            grant: None,
            oauth: None,
            tool_list: None,
            counting_body: None,
            awaiting_limit: None,
            resume_after_body: false,
            request_complete: false,
            body_while_paused: false,
            entry: None,
            upgrade: false,
            extended_connect: false,
            response_started: false,
            cors: None,
            slot: None,
            connected: false,
            limit_status: None,
            token_status: None,
            budget: None,
            meter: None,
            meter_held: 0,
            metered: None,
            model_label: None,
            card: None,
            translation: None,
            anthropic_surface: false,
            translation_held: 0,
            failover: None,
            failover_open: None,
        }
    }
}

impl Context for Stream {
    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, response_size: usize) {
        self.on_limit_answer(token, status_code, response_size);
    }

    /// The stream is destroyed: its slot goes back if `on_log` has not
    /// given it back already (every stream gets both; whichever comes
    /// first releases).
    fn on_done(&mut self) -> bool {
        self.release_slot();
        true
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        self.request_headers(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.request_body(body_size, end_of_stream)
    }

    /// A body followed by trailers never sees `end_of_stream`: it ends here.
    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        self.request_trailers()
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        self.response_headers(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.response_body(body_size, end_of_stream)
    }

    /// The stream ended, whatever ended it (completed, reset by either side,
    /// timed out, WebSocket closed): its in-flight slot goes back here.
    fn on_log(&mut self) {
        self.release_slot();
        self.vm.waiting.borrow_mut().remove(&self.id);
        // An answer cut short: Envoy's access log has already run.
        self.finish_meter(false);
        self.finish_translation_usage(false);
        self.release_meter();
        self.release_translation();
        self.settle_budget();
        self.failover_cut_short();
        if let (true, Some(entry), Some(active)) = (self.connected, self.entry, &self.active) {
            active.bump(entry, Stat::ConnectionsActive, -1);
        }
    }
}

impl Stream {
    /// Sends a local reply with the CORS headers the request's origin gets
    /// (none without an `Origin`).
    fn reply(&mut self, r: &LocalReply) -> Action {
        // No backend answers this request: nothing to judge.
        self.failover = None;
        // The filter's refusals, in Anthropic's shape on its surface (an
        // answer of its own, `count_tokens`, is already that).
        if self.anthropic_surface && r.status >= 400 {
            let shaped = crate::llm::session::anthropic_reply(r.clone());
            self.anthropic_surface = false;
            return self.reply(&shaped);
        }
        // The reply is answered here: the response phase, should Envoy run
        // it for the reply, leaves it alone.
        match self.cors.take() {
            Some(answer) => {
                let mut with_cors = r.clone();
                with_cors.headers.extend(answer.headers());
                reply(&with_cors)
            }
            None => reply(r),
        }
    }

    /// [`fail`], with the request's CORS headers.
    fn fail(&mut self, message: &str) -> Action {
        log::error!("{message}");
        self.reply(&reply::routing_failed())
    }

    fn release_slot(&mut self) {
        if let Some(slot) = self.slot.take() {
            inflight::release(self.active.as_deref(), slot);
        }
    }

    /// A request one of the entry's limits refused after admission began:
    /// it holds no in-flight slot and has taken nothing from its tool's
    /// limit (a refusal by one limit spends nothing of another).
    fn undo_admission(&mut self) {
        self.release_slot();
        if let Some(token) = self.tool_token.take() {
            token.give_back();
        }
    }
}

/// The OAuth URLs of an MCP server's answer, rewritten to the gateway's.
struct OAuthState {
    rewrite: Box<crate::request::OAuthRewrite>,
    /// Its protected-resource metadata is being buffered.
    buffering: bool,
}

/// A request's verified claims, read once.
#[derive(Default)]
struct ClaimsCache(std::cell::OnceCell<Option<crate::identity::claims::Claims>>);

impl ClaimsCache {
    /// The claims `jwt_authn` verified, under `key` of its metadata
    /// namespace: `None` without a verified token (or with one whose
    /// payload cannot be read, logged).
    fn get(&self, key: &str) -> Option<&crate::identity::claims::Claims> {
        self.0
            .get_or_init(|| {
                let path = [
                    "metadata",
                    "filter_metadata",
                    crate::identity::JWT_AUTHN_NAMESPACE,
                    key,
                ];
                let bytes = abi::get_property(&path).ok().flatten()?;
                match crate::identity::claims::decode_payload(&bytes) {
                    Ok(claims) => Some(claims),
                    Err(e) => {
                        log::warn!("cannot read the verified claims ({e:?}): no identity");
                        None
                    }
                }
            })
            .as_ref()
    }
}

/// The identity seam of the pure core: claims read on first use.
struct HostCaller<'a> {
    cache: Option<&'a ClaimsCache>,
    key: &'a str,
}

impl crate::identity::Caller for HostCaller<'_> {
    fn claims(&self) -> Option<&crate::identity::claims::Claims> {
        self.cache?.get(self.key)
    }
}

impl Stream {
    /// The caller's verified claims (read on first use).
    fn claims(&self) -> Option<&crate::identity::claims::Claims> {
        let key = &self.active.as_ref()?.plan.identity.metadata_key;
        self.claims.as_ref()?.get(key)
    }

    /// The claims cache of a plan that reads claims (made once per stream).
    fn claims_cache(&mut self, plan: &crate::config::Plan) -> Option<Rc<ClaimsCache>> {
        if plan.uses_claims && self.claims.is_none() {
            self.claims = Some(Rc::default());
        }
        self.claims.clone()
    }
}

/// What the canary split may ask about the client: its address (a host
/// call, only for a split by `client_ip`) and random draws.
struct HostClient<'v> {
    vm: &'v Vm,
}

impl canary::Client for HostClient<'_> {
    fn ip(&self) -> Option<Vec<u8>> {
        limits::client_ip().map(String::into_bytes)
    }

    fn random(&self) -> u64 {
        self.vm.random()
    }
}

/// Sends a local reply; the stream goes no further.
fn reply(r: &LocalReply) -> Action {
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Err(status) = abi::send_response(r.status, &headers, r.body.as_bytes()) {
        log::error!("cannot send a local reply: host status {status}");
    }
    Action::Pause
}

/// A request whose routing could not be finished must not go on: it could
/// still carry a client-chosen backend.
fn fail(message: &str) -> Action {
    log::error!("{message}");
    reply(&reply::routing_failed())
}
