//! The request phase: route the headers, read an OpenAI model (from the body
//! or from metadata), admit by the entry's limits, translate A2A chats.

use proxy_wasm::types::{Action, BufferType, MapType};

use super::active::Active;
use super::failover::HostHealth;
use super::{abi, fail, inflight, now, reply, HostClient, Stream, Vm, Waiting};
use crate::config::{ModelSource, Plan};
use crate::llm::session::{Kind, Session};
use crate::mcp::judge as mcp_judge;
use crate::mcp::rpc::{self, Invalid, Message};
use crate::observe::Refusal;
use crate::openai::{self, BodyFacts, ModelError};
use crate::reply::{self as replies, LocalReply};
use crate::request::{
    apply_to, cors_policy, decide, decide_model, Decision, Forward, HeaderOp, McpStep, RequestHead,
    Translate,
};
use crate::stats::Stat;
use crate::wire;

/// What the request body told, for a decision made once it is read.
pub(super) struct Body<'b> {
    pub bytes: &'b [u8],
    pub max_tokens: Option<u64>,
    /// `background: true` (the Responses API).
    pub background: bool,
}

impl Stream {
    pub(super) fn request_headers(&mut self, end_of_stream: bool) -> Action {
        self.request_complete = end_of_stream;
        #[cfg(feature = "fault-injection")]
        if abi::get_header(MapType::HttpRequestHeaders, "x-agentroute-trap")
            .is_ok_and(|v| v.is_some())
        {
            // The test build's fault on demand: the VM stops here, as on a
            // bug, with whatever it holds.
            core::arch::wasm32::unreachable();
        }
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
            Err(status) => {
                return fail(&format!(
                    "cannot read request headers: host status {status}"
                ))
            }
        };
        let plan = &active.plan;
        let vm = self.vm.clone();
        let claims = self.claims_cache(&active.plan);
        let seams = Seams::new(&vm, &active, claims.as_deref());
        let read_model = {
            let Some(pairs) = wire::parse(&raw) else {
                return fail("malformed request header map");
            };
            let head = seams.head(&pairs, plan);
            self.upgrade = head.flags.upgrade;
            self.extended_connect = head.method == "CONNECT";
            let decision = decide(plan, &head);
            if let Decision::Preflight(answer) = &decision {
                // Answered here, with its own CORS headers: never admitted,
                // never counted.
                return reply(answer);
            }
            // Only a request with an Origin costs any CORS work.
            if let (Some(origin), false) = (head.origin, plan.cors.is_empty()) {
                self.cors = cors_policy(plan, &head, &decision).map(|p| p.answer(origin));
            }
            if matches!(decision, Decision::ReadModel) {
                self.anthropic_surface = matches!(
                    openai::endpoint(head.method, head.path, false),
                    Some(openai::Endpoint::Dispatch(api)) if api.is_anthropic()
                );
            }
            match decision {
                Decision::ReadModel => match plan.openai.model_from {
                    ModelSource::Metadata => {
                        let model = metadata_model(&plan.openai.metadata_namespace);
                        let decision = decide_model(plan, &head, model.as_deref());
                        if !end_of_stream {
                            // A chunked body passes uncounted by Envoy: count it.
                            self.counting_body = Some(0);
                        }
                        let model = model.as_deref().ok();
                        return self.carry_out(&active, decision, &pairs, None, model);
                    }
                    ModelSource::Body if end_of_stream => {
                        let decision = decide_model(plan, &head, Err(&ModelError::Missing));
                        return self.carry_out(&active, decision, &pairs, None, None);
                    }
                    ModelSource::Body => true,
                },
                Decision::Forward(Forward {
                    entry: Some(entry),
                    mcp: Some(McpStep::ReadMessage),
                    ..
                }) if plan.openai.model_from == ModelSource::Body => {
                    // An MCP message to judge, read from the body.
                    if let Err(r) =
                        mcp_judge::check_head(head.content_encoding, head.content_length)
                    {
                        active.bump(entry, Stat::Refused, 1);
                        return self.reply(&r);
                    }
                    if end_of_stream {
                        self.rpc_message = Some(Message::Invalid(Invalid::NotAnObject));
                        let decision = decide(plan, &head);
                        return self.carry_out(&active, decision, &pairs, None, None);
                    }
                    false
                }
                decision => return self.carry_out(&active, decision, &pairs, None, None),
            }
        };
        self.held_headers = Some(raw);
        self.reading_model = read_model;
        self.reading_message = !read_model;
        if let Some(since) = now() {
            let cors = self.cors.as_ref().map(|a| a.headers()).unwrap_or_default();
            self.vm
                .waiting
                .borrow_mut()
                .insert(self.id, Waiting { since, cors });
        }
        Action::Pause
    }

    pub(super) fn request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(active) = self.active.clone() else {
            return Action::Continue;
        };
        let max = active.plan.openai.max_body_bytes;
        self.request_complete |= end_of_stream;
        if self.awaiting_limit.is_some() || self.resume_after_body {
            self.body_while_paused = true;
            self.vm.saw_body(&active);
            // Paused, Envoy buffers: `body_size` is all the body so far, and
            // it goes on unseen once the verdict resumes the request.
            if let Some(counted) = self.counting_body.as_mut() {
                *counted = body_size as u64;
                if *counted > max {
                    self.counting_body = None;
                    self.awaiting_limit = None;
                    self.resume_after_body = false;
                    return self.refuse_large_body(max);
                }
            }
            if self.translation.as_ref().is_some_and(|t| t.awaiting_body) {
                // A chat for an A2A agent must be translated before it
                // goes on: what Envoy buffered here is handed to the next
                // filter as it is once the request resumes.
                if body_size as u64 > max {
                    self.awaiting_limit = None;
                    self.resume_after_body = false;
                    return self.refuse_large_body(max);
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                if let Some(refused) = self.translate_held_body(body_size) {
                    self.awaiting_limit = None;
                    self.resume_after_body = false;
                    return refused;
                }
            }
            if self.resume_after_body {
                // Admitted while the body was still coming: the next chunk
                // lets it go on (a chat to translate is whole by now).
                self.resume_after_body = false;
                return Action::Continue;
            }
            // Continue would release the request before the verdict.
            return Action::Pause;
        }
        if self.reading_model {
            self.vm.waiting.borrow_mut().remove(&self.id);
            self.vm.saw_body(&active);
            if body_size as u64 > max {
                self.reading_model = false;
                return self.reply(&openai::too_large(max));
            }
            if !end_of_stream {
                // Pause buffers: Envoy calls again with the whole body so far.
                return Action::Pause;
            }
            return self.dispatch_body(&active, body_size);
        }
        if self.reading_message {
            self.vm.waiting.borrow_mut().remove(&self.id);
            self.vm.saw_body(&active);
            if body_size as u64 > mcp_judge::MAX_BODY_BYTES {
                self.reading_message = false;
                return self.reply(&mcp_judge::too_large());
            }
            if !end_of_stream {
                return Action::Pause;
            }
            return self.dispatch_message(&active, body_size);
        }
        if let Some(translation) = &self.translation {
            if translation.awaiting_body {
                // Model from metadata: the chat is translated once it is whole.
                if body_size as u64 > max {
                    return self.refuse_large_body(max);
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                return self.translate_buffered_body(body_size);
            }
        }
        if self.batch_watch.is_some() {
            if let Some(answered) = self.watch_for_batch(body_size, end_of_stream) {
                return answered;
            }
        }
        if let Some(counted) = self.counting_body.as_mut() {
            *counted += body_size as u64;
            if *counted > max {
                self.counting_body = None;
                return self.refuse_large_body(max);
            }
        }
        Action::Continue
    }

    pub(super) fn request_trailers(&mut self) -> Action {
        self.request_complete = true;
        if self.awaiting_limit.is_some() || self.resume_after_body {
            if self.translation.as_ref().is_some_and(|t| t.awaiting_body) {
                if let Some(refused) = self.translate_held_body(usize::MAX) {
                    self.awaiting_limit = None;
                    self.resume_after_body = false;
                    return refused;
                }
            }
            if self.resume_after_body {
                self.resume_after_body = false;
                return Action::Continue;
            }
            return Action::Pause;
        }
        let Some(active) = self.active.clone() else {
            return Action::Continue;
        };
        if self.reading_model {
            return self.dispatch_body(&active, usize::MAX);
        }
        if self.reading_message {
            return self.dispatch_message(&active, usize::MAX);
        }
        if self.translation.as_ref().is_some_and(|t| t.awaiting_body) {
            return self.translate_buffered_body(usize::MAX);
        }
        Action::Continue
    }

    /// A body over `max_body_bytes` that is already on its way: 413 while
    /// the upstream has answered nothing, else the stream is reset.
    fn refuse_large_body(&mut self, max: u64) -> Action {
        if self.response_started {
            log::warn!(
                "request body over {max} bytes after the answer began: resetting the stream"
            );
            let _ = abi::reset(abi::REQUEST);
            return Action::Pause;
        }
        self.reply(&openai::too_large(max))
    }

    /// Reads the model from the buffered body (up to `size` bytes) and
    /// dispatches the paused request on it.
    fn dispatch_body(&mut self, active: &Active, size: usize) -> Action {
        self.reading_model = false;
        let Some(raw) = self.held_headers.take() else {
            return Action::Continue;
        };
        let body = match abi::get_buffer(BufferType::HttpRequestBody, 0, size) {
            Ok(body) => body,
            Err(status) => {
                return self.fail(&format!("cannot read request body: host status {status}"))
            }
        };
        let BodyFacts {
            model,
            max_tokens,
            background,
        } = openai::read_body(&body);
        let Some(pairs) = wire::parse(&raw) else {
            return self.fail("malformed request header map");
        };
        let plan = &active.plan;
        let vm = self.vm.clone();
        let claims = self.claims_cache(&active.plan);
        let seams = Seams::new(&vm, active, claims.as_deref());
        let head = seams.head(&pairs, plan);
        let decision = decide_model(plan, &head, model.as_deref());
        let body = Body {
            bytes: &body,
            max_tokens,
            background,
        };
        self.carry_out(active, decision, &pairs, Some(&body), model.as_deref().ok())
    }

    /// Reads the JSON-RPC message from the buffered body (up to `size`
    /// bytes) and decides the paused MCP request on it.
    fn dispatch_message(&mut self, active: &Active, size: usize) -> Action {
        self.reading_message = false;
        let Some(raw) = self.held_headers.take() else {
            return Action::Continue;
        };
        let body = match abi::get_buffer(BufferType::HttpRequestBody, 0, size) {
            Ok(body) => body,
            Err(status) => return fail(&format!("cannot read request body: host status {status}")),
        };
        self.rpc_message = Some(rpc::read(&body));
        let Some(pairs) = wire::parse(&raw) else {
            return fail("malformed request header map");
        };
        let plan = &active.plan;
        let vm = self.vm.clone();
        // With the client, as at the headers: a canary split by client IP
        // lands the same request on the same side.
        let claims = self.claims_cache(&active.plan);
        let seams = Seams::new(&vm, active, claims.as_deref());
        let head = seams.head(&pairs, plan);
        let decision = decide(plan, &head);
        self.carry_out(active, decision, &pairs, None, None)
    }

    /// Applies a decision: admission, header changes, then go on (or wait for
    /// the rate limit service); or a local reply. `model` is the one an
    /// OpenAI request named (for the access log).
    fn carry_out(
        &mut self,
        active: &Active,
        decision: Decision<'_>,
        pairs: &[(&str, &[u8])],
        body: Option<&Body<'_>>,
        model: Option<&str>,
    ) -> Action {
        let forward = match decision {
            Decision::Forward(f) => f,
            Decision::Reply { entry, reply: r } => {
                if let Some(entry) = entry {
                    active.bump(entry, Stat::Refused, 1);
                    self.log_dispatch(entry, false, model, None);
                }
                return self.reply(&r);
            }
            Decision::Preflight(r) => return reply(&r),
            // Only `decide` asks for a model, and its caller handles that.
            Decision::ReadModel => return self.fail("internal: model requested twice"),
        };
        let Forward {
            entry,
            mut ops,
            card,
            translate,
            model: claim,
            mcp,
            canary,
            failover,
            grant,
            oauth,
        } = forward;
        self.grant = grant;
        self.oauth = oauth.map(|o| super::OAuthState {
            rewrite: o,
            buffering: false,
        });
        if let Some(e) = entry.and_then(|i| active.plan.entries.get(i)) {
            if let Some(name) = crate::client_key::repeated_key_header(e, pairs) {
                if let Some(i) = entry {
                    active.bump(i, Stat::Refused, 1);
                }
                return self.reply(&crate::client_key::repeated_reply(name));
            }
        }
        if let Some(entry) = entry {
            self.log_dispatch(entry, true, model, canary.as_ref().map(|c| c.side));
            if let (Some(tries), true) = (&failover, self.logs_fields()) {
                // Failover may have chosen another backend than the side's.
                let chosen = active
                    .plan
                    .entries
                    .get(entry)
                    .and_then(|e| tries.backend(e, 0));
                if let Some(chosen) = chosen {
                    self.set_fields(&[(crate::observe::Field::Backend, chosen)]);
                }
            }
            if active.plan.observe.usage_metrics {
                // Budgeted answers reached by path are counted under
                // `observe::NO_MODEL`.
                self.model_label = claim.map(crate::observe::model_label);
            }
        }
        if let (Some(step), Some(entry)) = (mcp, entry) {
            if let Err(answered) = self.judge_mcp(active, entry, pairs, step) {
                return answered;
            }
        }
        if let Some(translate) = translate {
            let kind = match translate {
                Translate::A2a(version) => Kind::A2a {
                    version,
                    conversation: header_text(pairs, &active.plan.openai.conversation_header)
                        .map(str::to_string),
                },
                Translate::Chat(api) => Kind::Chat(api.clone()),
                Translate::Messages(api) => Kind::Messages(api.clone()),
                Translate::CountTokens => Kind::CountTokens,
            };
            let mut session = Session::new(kind, active.plan.created);
            if let Some(body) = body {
                match self.translate_now(&mut session, body.bytes) {
                    Ok(path) => {
                        if let Some(path) = path {
                            set_path(&mut ops, path);
                        }
                    }
                    Err(r) => {
                        if let (Some(entry), false) = (entry, r.status == 200) {
                            active.bump(entry, Stat::Refused, 1);
                        }
                        return self.reply(&r);
                    }
                }
            }
            if let (Some(_), Some(provider), true) = (entry, session.provider(), self.logs_fields())
            {
                self.set_fields(&[(crate::observe::Field::Provider, provider.as_str())]);
            }
            self.translation = Some(session);
        }
        let prompt = body.map_or(0, |b| prompt_estimate(b.bytes.len()));
        if let Some(entry) = entry {
            // Token budgets meter each answer; a background call's answer
            // never passes here (model from metadata: json_to_metadata's
            // `background` rule, read for budgeted entries only).
            let budgeted = active
                .plan
                .entries
                .get(entry)
                .is_some_and(openai::meters_tokens);
            if budgeted
                && match body {
                    Some(b) => b.background,
                    None => {
                        model.is_some()
                            && metadata_background(&active.plan.openai.metadata_namespace)
                    }
                }
            {
                active.bump(entry, Stat::Refused, 1);
                return self.reply(&openai::background_refused());
            }
            // The in-flight limit first: a request it refuses has taken
            // nothing from the rate limits and token budgets.
            match inflight::hold(active, entry, pairs, self.claims()) {
                Ok(slot) => self.slot = slot,
                Err(r) => {
                    self.undo_admission();
                    self.log_refusal(Refusal::Concurrency);
                    return self.reply(&r);
                }
            }
            let estimate = body.and_then(|b| token_estimate(b.bytes.len(), b.max_tokens));
            if let Err((refusal, r)) = self.admit_locally(active, entry, pairs, estimate, prompt) {
                // A request a rate limit refuses holds no slot and no
                // tool token.
                self.undo_admission();
                active.bump(entry, Stat::RateLimited, 1);
                self.log_refusal(refusal);
                return self.reply(&r);
            }
        }
        if let Err(message) = apply(&ops, pairs) {
            return self.fail(&message);
        }
        self.card = card.map(super::CardState::Asked);
        let Some(entry) = entry else {
            return Action::Continue;
        };
        self.entry = Some(entry);
        self.failover = failover;
        active.bump(entry, Stat::Requests, 1);
        if let Some(choice) = canary {
            active.bump(entry, Stat::canary(choice.side), 1);
        }
        if self.is_global(active, entry) {
            return self.ask_limit_service(active, entry, pairs, prompt);
        }
        Action::Continue
    }

    /// Translates the request whose body is at hand (model from the body)
    /// and replaces the body; `Ok` names the path the backend is asked on
    /// when the translation decides it. `Err` is the reply instead (a
    /// refusal, or `count_tokens` answered).
    fn translate_now(
        &mut self,
        session: &mut Session,
        body: &[u8],
    ) -> Result<Option<String>, LocalReply> {
        let request = session.translate_request(body, &self.unique_id(), now_seconds())?;
        abi::set_buffer(BufferType::HttpRequestBody, 0, body.len(), &request.body).map_err(
            |status| {
                log::error!("cannot replace the request body: host status {status}");
                replies::routing_failed()
            },
        )?;
        Ok(request.path)
    }

    /// Unique per request: ids of the translated request and its answer.
    fn unique_id(&self) -> String {
        let nanos = super::now_nanos().unwrap_or(0);
        format!("{nanos:x}-{:x}", self.id)
    }

    /// Model from metadata: the whole request is buffered now.
    fn translate_buffered_body(&mut self, size: usize) -> Action {
        self.translate_held_body(size).unwrap_or(Action::Continue)
    }

    /// Replaces the buffered request (up to `size` bytes) with its
    /// translation; `Some` is the local reply sent instead. The headers
    /// are gone already: the path stays the one set at the headers.
    fn translate_held_body(&mut self, size: usize) -> Option<Action> {
        let body = match abi::get_buffer(BufferType::HttpRequestBody, 0, size) {
            Ok(body) => body,
            Err(status) => {
                return Some(self.fail(&format!("cannot read request body: host status {status}")))
            }
        };
        let unique = self.unique_id();
        let translation = self.translation.as_mut()?;
        match translation.translate_request(&body, &unique, now_seconds()) {
            Ok(request) => {
                let replaced =
                    abi::set_buffer(BufferType::HttpRequestBody, 0, body.len(), &request.body);
                replaced.err().map(|status| {
                    self.fail(&format!(
                        "cannot replace the request body: host status {status}"
                    ))
                })
            }
            Err(r) => Some(self.reply(&r)),
        }
    }
}

/// The time in seconds, if the host tells it.
fn now_seconds() -> Option<u64> {
    super::now_nanos()
        .filter(|&n| n > 0)
        .map(|n| n / 1_000_000_000)
}

/// Replaces the path a decision set (the translation knows better).
fn set_path(ops: &mut Vec<HeaderOp<'_>>, path: String) {
    ops.retain(|op| !matches!(op, HeaderOp::Set(":path", _)));
    ops.push(HeaderOp::Set(":path", std::borrow::Cow::Owned(path)));
}

/// Tokens to hold at admission for a request whose body was read: the
/// answer's limit plus the prompt (about four bytes a token); `None` when
/// the body names no limit (the configured reserve applies).
fn token_estimate(body_len: usize, max_tokens: Option<u64>) -> Option<u64> {
    max_tokens.map(|m| m.saturating_add(prompt_estimate(body_len)))
}

/// The prompt's tokens, estimated from the body read: about four bytes a
/// token.
fn prompt_estimate(body_len: usize) -> u64 {
    body_len as u64 / 4
}

/// A request header's first value as text.
fn header_text<'a>(pairs: &[(&str, &'a [u8])], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// The model Envoy's json_to_metadata filter wrote: `<ns>.model`, or
/// `<ns>.model_error` (`missing`, `invalid_json`) as the shipped configs set.
fn metadata_model(namespace: &str) -> Result<String, ModelError> {
    let read = |key: &str| {
        abi::get_property(&["metadata", "filter_metadata", namespace, key])
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

/// Whether json_to_metadata found `background: true` (a bool arrives as
/// one byte; written as a string, `true`).
fn metadata_background(namespace: &str) -> bool {
    matches!(
        abi::get_property(&["metadata", "filter_metadata", namespace, "background"])
            .ok()
            .flatten()
            .as_deref(),
        Some(b"true" | [1])
    )
}

/// How header changes reach Envoy: one call per change, or one call that
/// replaces the whole map (feature `whole-map-writes`; BENCHMARKS.md has
/// what each costs).
const APPLY_PER_HEADER: bool = !cfg!(feature = "whole-map-writes");

/// Applies header changes to the request.
fn apply(ops: &[HeaderOp<'_>], pairs: &[(&str, &[u8])]) -> Result<(), String> {
    if ops.is_empty() {
        return Ok(());
    }
    if !APPLY_PER_HEADER {
        return abi::set_pairs(
            MapType::HttpRequestHeaders,
            &wire::serialize(&apply_to(pairs, ops)),
        )
        .map_err(|s| format!("cannot set request headers: host status {s}"));
    }
    for op in ops {
        let result = match op {
            HeaderOp::Remove(name) => abi::remove_header(MapType::HttpRequestHeaders, name),
            // Any client copy was removed by an earlier op: replace adds.
            HeaderOp::Set(name, value) => {
                abi::replace_header(MapType::HttpRequestHeaders, name, value.as_bytes())
            }
        };
        result.map_err(|s| format!("cannot change request header: host status {s}"))?;
    }
    Ok(())
}

/// What a request's decision asks the host through: the client (its
/// address, random draws) and the backends' health.
struct Seams<'a> {
    client: HostClient<'a>,
    health: HostHealth<'a>,
    caller: super::HostCaller<'a>,
}

impl<'a> Seams<'a> {
    fn new(vm: &'a Vm, active: &'a Active, claims: Option<&'a super::ClaimsCache>) -> Self {
        Seams {
            client: HostClient { vm },
            health: HostHealth::of(active),
            caller: super::HostCaller {
                cache: claims,
                key: &active.plan.identity.metadata_key,
            },
        }
    }

    /// The request head of `pairs`, asking the host through these seams.
    fn head<'h>(&'h self, pairs: &'h [(&'h str, &'h [u8])], plan: &Plan) -> RequestHead<'h> {
        RequestHead::from_pairs(pairs, &plan.dispatch_header)
            .with_client(&self.client)
            .with_health(&self.health)
            .with_caller(&self.caller)
    }
}
