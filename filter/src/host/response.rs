//! The response phase: limit headers, the open-connections gauge, usage
//! metering for token budgets, agent cards rewritten to point at the
//! gateway, and A2A answers translated back to OpenAI.

use proxy_wasm::types::{Action, BufferType, MapType};

use super::{abi, CardState, Stream, MAX_METERING_BYTES, MAX_TRANSLATION_BYTES};
use crate::a2a::card::{self, CardOutcome, Unchanged, MAX_CARD_BYTES};
use crate::cors;
use crate::stats::Stat;
use crate::usage::UsageMeter;

const RESPONSE: MapType = MapType::HttpResponseHeaders;

fn header(name: &str) -> Option<Vec<u8>> {
    abi::get_header(RESPONSE, name).ok().flatten()
}

fn header_text(name: &str) -> Option<String> {
    header(name).and_then(|v| String::from_utf8(v).ok())
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"))
}

impl Stream {
    pub(super) fn response_headers(&mut self, end_of_stream: bool) -> Action {
        self.response_started = true;
        if self.failover.is_some() {
            self.observe_failover(end_of_stream);
        }
        // Before CORS is taken: the refusal carries it.
        if let Some(refused) = self.refuse_legacy_stream() {
            return refused;
        }
        if let Some(answer) = self.cors.take() {
            apply_cors(&answer);
        }
        if let Some(status) = self.limit_status.take() {
            for (name, value) in &status.headers() {
                let _ = abi::replace_header(RESPONSE, name, value.as_bytes());
            }
        }
        if let Some(status) = self.token_status.take() {
            for (name, value) in &status.token_headers() {
                let _ = abi::replace_header(RESPONSE, name, value.as_bytes());
            }
        }
        let watch = self.meters_answer()
            || self.upgrade
            || self.card.is_some()
            || self.translation.is_some()
            || self.tool_list.is_some()
            || self.oauth.is_some();
        if !watch {
            return Action::Continue;
        }
        let status: u32 = header_text(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if self.upgrade {
            self.count_connection(status);
        }
        if self.meters_answer() && self.translation.is_none() {
            self.start_meter();
        }
        if self.tool_list.is_some() {
            self.watch_tool_list(status);
        }
        if let Some(CardState::Asked(address)) = self.card.take() {
            self.card = self.watch_card(status, address);
        }
        if self.oauth.is_some() {
            self.watch_oauth(status);
        }
        if self.translation.is_some() && !end_of_stream {
            return self.translation_headers(status);
        }
        Action::Continue
    }

    pub(super) fn response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            // The answer is whole: no cut to watch for.
            self.failover_open = None;
        }
        if self.meter.is_some() {
            self.meter_chunk(body_size);
            if end_of_stream {
                // Before Envoy's access log runs (at the stream's end,
                // ahead of this filter's `on_log`).
                self.finish_meter(true);
            }
        }
        if self.card.is_some() {
            return self.card_body(body_size, end_of_stream);
        }
        if self.oauth.as_ref().is_some_and(|o| o.buffering) {
            return self.oauth_document_body(body_size, end_of_stream);
        }
        if self.tool_list.is_some() {
            return self.tool_list_body(body_size, end_of_stream);
        }
        if self.translation.is_some() {
            return self.translation_body(body_size, end_of_stream);
        }
        Action::Continue
    }

    /// An upgrade succeeded: 101 (HTTP/1.1), or 200 for an HTTP/2 extended
    /// CONNECT.
    fn count_connection(&mut self, status: u32) {
        let upgraded = status == 101 || (self.extended_connect && status == 200);
        if let (true, Some(entry), Some(active)) = (upgraded, self.entry, &self.active) {
            active.bump(entry, Stat::ConnectionsActive, 1);
            self.connected = true;
        }
    }

    /// Token budgets and token counters need the answer's usage:
    /// uncompressed JSON or SSE. The request went without `accept-encoding`;
    /// an answer compressed anyway cannot be read and is counted as
    /// unmetered.
    fn start_meter(&mut self) {
        let encoded = header_text("content-encoding")
            .is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"));
        if encoded {
            self.count_unmetered("the answer is compressed");
            return;
        }
        self.meter = UsageMeter::new(header_text("content-type").as_deref());
    }

    fn count_unmetered(&mut self, why: &str) {
        if let (Some(entry), Some(active)) = (self.entry, &self.active) {
            active.bump(entry, Stat::TokensUnmetered, 1);
            log::debug!("answer not metered: {why}");
        }
        self.meter = None;
    }

    fn meter_chunk(&mut self, body_size: usize) {
        let chunk = match abi::get_buffer(BufferType::HttpResponseBody, 0, body_size) {
            Ok(chunk) => chunk,
            Err(_) => return self.count_unmetered("the body could not be read"),
        };
        let Some(meter) = self.meter.as_mut() else {
            return;
        };
        meter.feed(&chunk);
        let held = meter.held();
        let total = self.vm.metering.get() - self.meter_held + held;
        self.vm.metering.set(total);
        self.meter_held = held;
        if total > MAX_METERING_BYTES {
            self.release_meter();
            self.count_unmetered("the VM's metering memory is spent");
        }
    }

    /// Gives this stream's metering memory back to the VM's bound.
    pub(super) fn release_meter(&mut self) {
        let total = self.vm.metering.get().saturating_sub(self.meter_held);
        self.vm.metering.set(total);
        self.meter_held = 0;
    }

    /// An MCP server's answer that may name its OAuth URLs: a 401's
    /// `resource_metadata` is pointed at the gateway (a header read on
    /// 401s only); its protected-resource metadata (200 JSON, small,
    /// uncompressed) is buffered to rewrite its `resource`.
    fn watch_oauth(&mut self, status: u32) {
        let Some(state) = self.oauth.as_mut() else {
            return;
        };
        if status == 401 {
            let rewritten = header_text("www-authenticate").and_then(|v| {
                crate::identity::oauth::rewrite_challenge(&v, &state.rewrite.address)
            });
            if let Some(value) = rewritten {
                let _ = abi::replace_header(RESPONSE, "www-authenticate", value.as_bytes());
            }
            self.oauth = None;
            return;
        }
        // Only the document's answer is read further (two header reads).
        if !state.rewrite.document || status != 200 {
            self.oauth = None;
            return;
        }
        let content_type = header_text("content-type");
        let encoded = header("content-encoding").is_some_and(|e| !e.is_empty());
        if !is_json(content_type.as_deref()) || encoded {
            self.oauth = None;
            return;
        }
        if let Some(state) = self.oauth.as_mut() {
            state.buffering = true;
        }
        let _ = abi::remove_header(RESPONSE, "content-length");
        let _ = abi::remove_header(RESPONSE, "etag");
        let _ = abi::add_header(RESPONSE, "vary", b"host, x-forwarded-proto");
    }

    fn oauth_document_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if body_size > crate::identity::oauth::MAX_DOCUMENT_BYTES {
            self.oauth = None;
            log::debug!("protected-resource metadata over the limit passed unchanged");
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let Some(state) = self.oauth.take() else {
            return Action::Continue;
        };
        let Ok(body) = abi::get_buffer(BufferType::HttpResponseBody, 0, body_size) else {
            return Action::Continue;
        };
        match crate::identity::oauth::rewrite_document(&body, &state.rewrite.address) {
            Some(new) => {
                if let Err(status) =
                    abi::set_buffer(BufferType::HttpResponseBody, 0, body.len(), &new)
                {
                    log::warn!(
                        "cannot rewrite the protected-resource metadata: host status {status}"
                    );
                }
            }
            None => log::info!("protected-resource metadata passed unchanged"),
        }
        Action::Continue
    }

    /// A card request's answer: a 200 JSON card, uncompressed and small
    /// enough, is buffered for rewriting; anything else passes untouched.
    fn watch_card(&mut self, status: u32, address: card::CardAddress) -> Option<CardState> {
        let content_type = header_text("content-type");
        let encoded = header("content-encoding").is_some_and(|e| !e.is_empty());
        let length: Option<usize> = header_text("content-length").and_then(|l| l.parse().ok());
        if status != 200
            || !is_json(content_type.as_deref())
            || encoded
            || length.is_some_and(|l| l > MAX_CARD_BYTES)
        {
            if status == 200 {
                log::debug!("agent card passed unchanged: not a small uncompressed JSON answer");
            }
            return None;
        }
        // The body will change: its length and validators go.
        let _ = abi::remove_header(RESPONSE, "content-length");
        let _ = abi::remove_header(RESPONSE, "etag");
        // The card now depends on the address the client used: a shared
        // cache must not hand one client's card to another.
        let _ = abi::add_header(RESPONSE, "vary", b"host, x-forwarded-proto");
        Some(CardState::Buffering(address))
    }

    fn card_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if body_size > MAX_CARD_BYTES {
            self.card = None;
            log::debug!("agent card over {MAX_CARD_BYTES} bytes passed unchanged");
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let Some(CardState::Buffering(address)) = self.card.take() else {
            return Action::Continue;
        };
        let Ok(body) = abi::get_buffer(BufferType::HttpResponseBody, 0, body_size) else {
            return Action::Continue;
        };
        let rewrite_signed = self
            .entry
            .zip(self.active.as_ref())
            .and_then(|(e, a)| a.plan.entries.get(e))
            .is_some_and(|e| e.rewrite_signed_cards);
        match card::rewrite_card(&body, &address, rewrite_signed) {
            CardOutcome::Rewritten { body: new, .. } => {
                if let Err(status) =
                    abi::set_buffer(BufferType::HttpResponseBody, 0, body.len(), &new)
                {
                    log::warn!("cannot rewrite the agent card: host status {status}");
                }
            }
            CardOutcome::Unchanged(Unchanged::Signed) => {
                if !self.vm.warned_signed_card.replace(true) {
                    log::warn!(
                        "agent card passed unchanged: {}",
                        Unchanged::Signed.reason()
                    );
                }
            }
            CardOutcome::Unchanged(why) => {
                log::info!("agent card passed unchanged: {}", why.reason())
            }
        }
        Action::Continue
    }

    /// The answer of a translated chat: a stream is translated event by
    /// event; a whole answer is buffered. Its status can still change only
    /// when the headers may wait (Envoy delivers bodies to a filter that
    /// paused them only with `allow_on_headers_stop_iteration`, which this VM
    /// has seen to be set).
    fn translation_headers(&mut self, status: u32) -> Action {
        let content_type = header_text("content-type");
        let body_seen = self
            .active
            .as_ref()
            .is_some_and(|a| self.vm.bodies_arrive(a));
        let Some(t) = self.translation.as_mut() else {
            return Action::Continue;
        };
        let sse = content_type
            .as_deref()
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/event-stream"));
        let _ = abi::remove_header(RESPONSE, "content-length");
        let _ = abi::remove_header(RESPONSE, "etag");
        if t.stream && status == 200 && sse {
            let _ = abi::replace_header(RESPONSE, "content-type", b"text/event-stream");
            return Action::Continue;
        }
        // A whole answer: a non-streamed one, or for a streamed request an
        // error before the stream began (or an agent that does not stream).
        t.whole = Some(status);
        if body_seen {
            // Status and content type are decided once the answer is read.
            t.headers_paused = true;
            return Action::Pause;
        }
        let content_type: &[u8] = if t.stream {
            // The client reads a stream: an error comes as an SSE error event.
            b"text/event-stream"
        } else {
            b"application/json"
        };
        let _ = abi::replace_header(RESPONSE, "content-type", content_type);
        if !self.vm.warned_metadata_status.replace(true) {
            log::warn!(
                "a translated backend's failure reaches clients with the backend's HTTP status: \
                 set allow_on_headers_stop_iteration: true (model_from: body) for translated error statuses"
            );
        }
        Action::Continue
    }

    fn translation_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(t) = self.translation.as_mut() else {
            return Action::Continue;
        };
        if let Some(status) = t.whole {
            if !end_of_stream {
                return Action::Pause;
            }
            let body =
                abi::get_buffer(BufferType::HttpResponseBody, 0, body_size).unwrap_or_default();
            // A streamed request is answered as a stream: always when the
            // status is already out, and for an answer the backend gave
            // whole; an error with the headers paused goes as OpenAI (and
            // Anthropic) do before a stream begins, a JSON error with its
            // status.
            let json = t.whole_answer(status, &body, false);
            let answer = if t.streams() && (!t.headers_paused || json.status == 200) {
                t.whole_answer(status, &body, true)
            } else {
                json
            };
            if t.headers_paused {
                let _ =
                    abi::replace_header(RESPONSE, ":status", answer.status.to_string().as_bytes());
                let _ =
                    abi::replace_header(RESPONSE, "content-type", answer.content_type.as_bytes());
                let _ = abi::replace_header(
                    RESPONSE,
                    "content-length",
                    answer.body.len().to_string().as_bytes(),
                );
                if let (Some(after), None) = (&answer.retry_after, header("retry-after")) {
                    let _ = abi::replace_header(RESPONSE, "retry-after", after.as_bytes());
                }
            }
            if let Err(status) =
                abi::set_buffer(BufferType::HttpResponseBody, 0, body.len(), &answer.body)
            {
                log::warn!("cannot replace the backend's answer: host status {status}");
            }
            self.finish_translation_usage(true);
            return Action::Continue;
        }
        if !t.streams() {
            return Action::Continue;
        }
        let chunk = abi::get_buffer(BufferType::HttpResponseBody, 0, body_size).unwrap_or_default();
        // This stream may hold what the VM's budget leaves beside the others.
        let others = self
            .vm
            .translating
            .get()
            .saturating_sub(self.translation_held);
        let room = MAX_TRANSLATION_BYTES.saturating_sub(others);
        let was_cut = t.cut_short();
        let mut out = t.feed_within(&chunk, room);
        if end_of_stream {
            out.extend(t.finish());
        }
        let held = t.held();
        let cut_now = !was_cut && t.cut_short();
        self.vm.translating.set(others + held);
        self.translation_held = held;
        if cut_now {
            self.count_cut_stream();
        }
        if let Err(status) = abi::set_buffer(BufferType::HttpResponseBody, 0, chunk.len(), &out) {
            log::warn!("cannot translate the backend's stream: host status {status}");
        }
        if end_of_stream {
            self.finish_translation_usage(true);
        }
        Action::Continue
    }

    /// What a translated answer reported of its tokens, for the token
    /// budget, the token counters and the access log (once).
    pub(super) fn finish_translation_usage(&mut self, logged_after: bool) {
        if self.metered.is_some() || !self.meters_answer() {
            return;
        }
        let Some(t) = self.translation.as_ref() else {
            return;
        };
        let metered = match t.usage() {
            Some(usage) => crate::usage::Metered::Reported(usage),
            None => crate::usage::Metered::Unknown,
        };
        self.record_metered(metered, logged_after);
    }

    fn count_cut_stream(&self) {
        if let (Some(entry), Some(active)) = (self.entry, &self.active) {
            active.bump(entry, Stat::TranslationsCut, 1);
        }
        if !self.vm.warned_translation_memory.replace(true) {
            log::warn!(
                "a translated stream was cut short: this worker's translated streams hold \
                 {MAX_TRANSLATION_BYTES} bytes (see agentroute_translations_cut_total)"
            );
        }
    }

    /// Gives this stream's translation memory back to the VM's bound.
    pub(super) fn release_translation(&mut self) {
        let total = self
            .vm
            .translating
            .get()
            .saturating_sub(self.translation_held);
        self.vm.translating.set(total);
        self.translation_held = 0;
    }
}

/// The answer to a request with an `Origin` under a CORS policy, whoever
/// made it (the backend, or Envoy for an upstream failure): the backend's
/// own `access-control-*` headers are replaced by the policy's (none for
/// an origin it does not allow), and `vary` says the answer depends on the
/// origin.
fn apply_cors(answer: &cors::Answer) {
    let Ok(raw) = abi::get_pairs(RESPONSE) else {
        return;
    };
    let Some(pairs) = crate::wire::parse(&raw) else {
        return;
    };
    let mut varies = false;
    let mut owned: Vec<&str> = Vec::new();
    for (name, value) in &pairs {
        if cors::is_cors_header(name) && !owned.contains(name) {
            owned.push(name);
        } else if *name == "vary" {
            varies |= cors::varies_on_origin(value);
        }
    }
    for name in owned {
        let _ = abi::remove_header(RESPONSE, name);
    }
    for (name, value) in answer.headers() {
        if name == "vary" {
            if !varies {
                // Added beside the backend's own `vary`, which keeps its say.
                let _ = abi::add_header(RESPONSE, name, value.as_bytes());
            }
        } else {
            let _ = abi::replace_header(RESPONSE, name, value.as_bytes());
        }
    }
}
