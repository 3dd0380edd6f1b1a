//! MCP entries with tool rules in the host: the JSON-RPC message judged
//! before the request goes on (from the body read by the filter, or from
//! json_to_metadata's keys), per-tool limits in shared data, and
//! `tools/list` answers filtered on their way back.

use proxy_wasm::types::{Action, BufferType, MapType};

use super::active::Active;
use super::limits::{count_conflicts, request_spec, status_of, HostStore};
use super::{abi, now_nanos, Stream};
use crate::mcp::batch::{BatchWatch, Seen};
use crate::mcp::judge::{self, McpHeaders, Refusal, ToolCall, Verdict};
use crate::mcp::legacy;
use crate::mcp::list::{self, Filtered, SseFilter};
use crate::mcp::rpc::Message;
use crate::ratelimit;
use crate::request::McpStep;
use crate::stats::{Stat, ToolStat};

const RESPONSE: MapType = MapType::HttpResponseHeaders;

/// A `tools/list` answer larger than this (a whole JSON answer, or one SSE
/// event) cannot be filtered: the client gets a JSON-RPC error instead of
/// an unfiltered list.
pub(super) const MAX_LIST_BYTES: usize = 2 * 1024 * 1024;

/// A tool list on its way back, and the request id to answer errors with.
pub(super) enum ToolList {
    Asked {
        id: String,
    },
    /// A GET's event stream: refused if it is the legacy transport's
    /// (`mcp::legacy`); a resumed one (`replay`) is filtered.
    Stream {
        replay: bool,
    },
    Json {
        id: String,
    },
    Sse {
        id: String,
        filter: SseFilter,
    },
    /// The answer could not be filtered: the rest of it is dropped.
    Cut,
}

/// A token taken from a tool's limit, and where to give it back.
pub(super) struct ToolToken {
    key: String,
    spec: ratelimit::BucketSpec,
}

impl ToolToken {
    pub(super) fn give_back(self) {
        let Some(now) = now_nanos() else {
            return;
        };
        if let Err(e) = ratelimit::debit(&HostStore, self.key.as_str(), self.spec, -1.0, now) {
            log::warn!("cannot give a tool's token back: {e:?}");
        }
    }
}

impl Stream {
    /// For an MCP entry with tool rules: judges the request's message and
    /// draws from the tool's limit. `Err` is the action of a local answer.
    pub(super) fn judge_mcp(
        &mut self,
        active: &Active,
        entry: usize,
        pairs: &[(&str, &[u8])],
        step: McpStep,
    ) -> Result<(), Action> {
        let Some(rules) = active
            .plan
            .entries
            .get(entry)
            .and_then(|e| e.mcp.as_deref())
        else {
            return Ok(());
        };
        if step == McpStep::FilterReplay {
            self.ask_plain_answer(true);
            self.tool_list = Some(ToolList::Stream { replay: true });
            return Ok(());
        }
        if step == McpStep::OpenStream {
            self.tool_list = Some(ToolList::Stream { replay: false });
            return Ok(());
        }
        let message = match self.rpc_message.take() {
            Some(m) => m,
            None => {
                self.batch_watch = Some(BatchWatch::default());
                metadata_message(&active.plan.openai.metadata_namespace)
            }
        };
        let headers = McpHeaders {
            method: header_text(pairs, "mcp-method"),
            name: header_text(pairs, "mcp-name"),
        };
        match judge::judge(rules, &message, headers) {
            Verdict::Refuse { reply: r, why } => {
                active.bump(entry, Stat::Refused, 1);
                if let Refusal::ToolDenied { label } = why {
                    active.bump_tool(entry, label, ToolStat::Refused);
                }
                Err(self.reply(&r))
            }
            Verdict::Forward { call, list } => {
                if list {
                    self.ask_plain_answer(pairs.iter().any(|(k, _)| *k == "accept-encoding"));
                    self.tool_list = Some(ToolList::Asked {
                        id: message.id().to_string(),
                    });
                }
                if let Some(call) = call {
                    if !self.caller_may_use(active, entry, &call.name) {
                        active.bump(entry, Stat::Refused, 1);
                        active.bump_tool(entry, call.label, ToolStat::Refused);
                        return Err(self.reply(&judge::unknown_tool(message.id(), &call.name)));
                    }
                    self.admit_tool(active, entry, &call, message.id(), pairs)?;
                    active.bump_tool(entry, call.label, ToolStat::Calls);
                }
                Ok(())
            }
        }
    }

    /// A request judged from metadata: its body passes here, and a batch
    /// (an array: json_to_metadata reads keys out of it as from an object)
    /// is refused before any of it reaches the server. Chunks of only
    /// whitespace pass while the watch goes on. `Some` is the action of the
    /// refusal.
    pub(super) fn watch_for_batch(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
    ) -> Option<Action> {
        let mut watch = self.batch_watch.take()?;
        let head =
            match abi::get_buffer(BufferType::HttpRequestBody, 0, body_size.min(watch.wants())) {
                Ok(head) => head,
                // Fail closed: an unread body could be a batch.
                Err(_) => return Some(self.refuse_batch(judge::batch_refused())),
            };
        match watch.feed(&head) {
            Seen::Undecided if !end_of_stream => self.batch_watch = Some(watch),
            Seen::Undecided | Seen::NotABatch => {}
            Seen::Batch => return Some(self.refuse_batch(judge::batch_refused())),
            Seen::TooMuchWhitespace => return Some(self.refuse_batch(judge::padded_refused())),
        }
        None
    }

    fn refuse_batch(&mut self, reply: crate::reply::LocalReply) -> Action {
        if let (Some(entry), Some(active)) = (self.entry, &self.active) {
            active.bump(entry, Stat::Refused, 1);
        }
        self.reply(&reply)
    }

    /// Whether the caller's `access` rules grant `tool` (entries without
    /// rules: every tool their `mcp.tools` allow).
    fn caller_may_use(&self, active: &Active, entry: usize, tool: &str) -> bool {
        match (
            self.grant,
            active
                .plan
                .entries
                .get(entry)
                .and_then(|e| e.access.as_deref()),
        ) {
            (Some(grant), Some(access)) => access.access.allows_tool(grant, tool),
            _ => true,
        }
    }

    /// A tool list must come back uncompressed to be filtered.
    fn ask_plain_answer(&self, sent_accept_encoding: bool) {
        if sent_accept_encoding {
            let _ = abi::remove_header(MapType::HttpRequestHeaders, "accept-encoding");
        }
    }

    /// Draws from the tool's bucket: one per tool name, shared by every
    /// worker (`{prefix}/{entry}/tools/{limit}/{e<pattern>|s<slot>}`).
    fn admit_tool(
        &mut self,
        active: &Active,
        entry: usize,
        call: &ToolCall,
        id: &str,
        pairs: &[(&str, &[u8])],
    ) -> Result<(), Action> {
        let (Some((index, bucket)), Some(e)) = (call.limit, active.plan.entries.get(entry)) else {
            return Ok(());
        };
        let Some(limit) = e.mcp.as_ref().and_then(|r| r.limits.get(index)) else {
            return Ok(());
        };
        let Some(now) = now_nanos() else {
            return Ok(());
        };
        // Per caller: the tool's bucket and the caller's value hashed into
        // the limit's slots (requests without the value share the tool's).
        let caller = match &limit.per {
            crate::config::Per::Entry => None,
            per => super::limits::client_value(&active.plan, per, pairs, self.claims()),
        };
        let key = match (caller, active.secret()) {
            (Some(value), Some(secret)) => format!(
                "{}/{}/tools/{index}/x{}",
                active.key_prefix,
                e.id,
                crate::mcp::rules::caller_slot(&secret, bucket, &value)
            ),
            _ => format!(
                "{}/{}/tools/{index}/{}",
                active.key_prefix,
                e.id,
                bucket.key_part()
            ),
        };
        let spec = request_spec(&limit.rate);
        match ratelimit::acquire(&HostStore, &key, spec, 1.0, now) {
            Ok(o) => {
                count_conflicts(active, entry, o.cas_retries);
                if !o.allowed {
                    active.bump(entry, Stat::RateLimited, 1);
                    active.bump_tool(entry, call.label, ToolStat::Limited);
                    self.log_refusal(crate::observe::Refusal::ToolLimit);
                    let status = status_of(u64::from(limit.rate.burst), &o);
                    return Err(self.reply(&judge::limited(id, &call.name, &status)));
                }
                self.tool_token = Some(ToolToken { key, spec });
                Ok(())
            }
            Err(e) => {
                log::warn!("tool bucket unavailable, admitting: {e:?}");
                Ok(())
            }
        }
    }

    /// The answer to a GET: an event stream no session names (the legacy
    /// HTTP+SSE transport) is refused before any of it reaches the client.
    /// `Some` is the action of the refusal.
    pub(super) fn refuse_legacy_stream(&mut self) -> Option<Action> {
        let Some(ToolList::Stream { .. }) = self.tool_list else {
            return None;
        };
        let text = |name: &str| {
            abi::get_header(RESPONSE, name)
                .ok()
                .flatten()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        let status = text(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        let unbound = legacy::is_unbound_stream(
            status,
            text("content-type").as_deref(),
            text("mcp-session-id").as_deref(),
        );
        if !unbound {
            return None;
        }
        self.tool_list = None;
        if let (Some(entry), Some(active)) = (self.entry, &self.active) {
            active.bump(entry, Stat::Refused, 1);
        }
        log::info!("refused an MCP event stream without mcp-session-id (the legacy HTTP+SSE transport) on an entry with tool rules");
        Some(self.reply(&legacy::refused()))
    }

    /// The answer of a `tools/list`: a 200 JSON or SSE answer is filtered.
    pub(super) fn watch_tool_list(&mut self, status: u32) {
        let id = match self.tool_list.take() {
            Some(ToolList::Asked { id }) => id,
            // A resumed stream's answers carry ids of other requests.
            Some(ToolList::Stream { replay: true }) => "null".to_string(),
            _ => return,
        };
        let content_type = abi::get_header(RESPONSE, "content-type")
            .ok()
            .flatten()
            .map(|v| String::from_utf8_lossy(&v).to_ascii_lowercase())
            .unwrap_or_default();
        let encoded = abi::get_header(RESPONSE, "content-encoding")
            .ok()
            .flatten()
            .is_some_and(|e| !e.is_empty() && e != b"identity");
        if status != 200 || encoded {
            if encoded {
                log::warn!("a compressed tools/list answer passed unfiltered");
            }
            return;
        }
        let media = content_type.split(';').next().unwrap_or_default().trim();
        self.tool_list = match media {
            "application/json" => Some(ToolList::Json { id }),
            "text/event-stream" => Some(ToolList::Sse {
                id,
                filter: SseFilter::new(MAX_LIST_BYTES),
            }),
            _ => return,
        };
        // The body changes: its length goes.
        let _ = abi::remove_header(RESPONSE, "content-length");
        // Filtered for this caller: no shared cache may hand it to another.
        let per_caller = self.entry.zip(self.active.as_ref()).is_some_and(|(e, a)| {
            a.plan
                .entries
                .get(e)
                .and_then(|e| e.access.as_deref())
                .is_some_and(|x| x.access.per_caller())
        });
        if per_caller {
            let _ = abi::replace_header(RESPONSE, "cache-control", b"private");
        }
    }

    pub(super) fn tool_list_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(active) = self.active.clone() else {
            return Action::Continue;
        };
        let Some(rules) = self
            .entry
            .and_then(|e| active.plan.entries.get(e))
            .and_then(|e| e.mcp.as_deref())
        else {
            return Action::Continue;
        };
        let access = self
            .entry
            .and_then(|e| active.plan.entries.get(e))
            .and_then(|e| e.access.as_deref());
        let grant = self.grant;
        let allows = |tool: &str| {
            rules.allows(tool)
                && match (grant, access) {
                    (Some(grant), Some(a)) => a.access.allows_tool(grant, tool),
                    _ => true,
                }
        };
        match self.tool_list.as_mut() {
            Some(ToolList::Json { id }) => {
                if body_size > MAX_LIST_BYTES {
                    let error = too_long_error(id);
                    self.tool_list = Some(ToolList::Cut);
                    let _ = abi::set_buffer(BufferType::HttpResponseBody, 0, body_size, &error);
                    return Action::Continue;
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                let Ok(body) = abi::get_buffer(BufferType::HttpResponseBody, 0, body_size) else {
                    return Action::Continue;
                };
                if let Filtered::Rewritten(new) = list::filter_answer(&body, &allows) {
                    if let Err(status) =
                        abi::set_buffer(BufferType::HttpResponseBody, 0, body.len(), &new)
                    {
                        log::warn!("cannot filter the tool list: host status {status}");
                    }
                }
                self.tool_list = None;
                Action::Continue
            }
            Some(ToolList::Sse { id, filter }) => {
                let chunk =
                    abi::get_buffer(BufferType::HttpResponseBody, 0, body_size).unwrap_or_default();
                let out = match filter.feed(&chunk, &allows) {
                    Ok(mut out) => {
                        if end_of_stream {
                            out.extend(filter.finish(&allows));
                        }
                        out
                    }
                    Err(list::TooLong) => {
                        let mut event = b"event: message\r\ndata: ".to_vec();
                        event.extend(too_long_error(id));
                        event.extend_from_slice(b"\r\n\r\n");
                        self.tool_list = Some(ToolList::Cut);
                        event
                    }
                };
                if let Err(status) =
                    abi::set_buffer(BufferType::HttpResponseBody, 0, chunk.len(), &out)
                {
                    log::warn!("cannot filter the tool list: host status {status}");
                }
                Action::Continue
            }
            Some(ToolList::Cut) => {
                let _ = abi::set_buffer(BufferType::HttpResponseBody, 0, body_size, b"");
                Action::Continue
            }
            Some(ToolList::Asked { .. } | ToolList::Stream { .. }) | None => Action::Continue,
        }
    }
}

fn too_long_error(id: &str) -> Vec<u8> {
    judge::rpc_error(
        200,
        id,
        -32603,
        &format!("Internal error: the tool list is over {MAX_LIST_BYTES} bytes, more than the gateway filters"),
    )
    .body
    .into_bytes()
}

/// The message as json_to_metadata wrote it under `namespace`.
fn metadata_message(namespace: &str) -> Message {
    let message = judge::message_from_metadata(&|key: &str| {
        abi::get_property(&["metadata", "filter_metadata", namespace, key])
            .ok()
            .flatten()
    });
    if message == Message::Invalid(crate::mcp::rpc::Invalid::NotAnObject) {
        log::debug!(
            "no MCP message in metadata namespace {namespace}: is json_to_metadata configured with the MCP rules (README: MCP servers)?"
        );
    }
    message
}

fn header_text<'a>(pairs: &[(&str, &'a [u8])], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}
