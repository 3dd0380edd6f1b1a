//! One translated exchange, whatever the direction: the request turned
//! into what the backend speaks, then its answer (whole, or a stream event
//! by event) turned back into what the client speaks. The host holds one
//! per translated request and drives it through this one seam; the
//! translators themselves are the pure modules beside this one.

use crate::a2a::chat::{self, ChunkStream, Completion};
use crate::config::A2aVersion;
use crate::reply::LocalReply;
use crate::usage::{Usage, UsageMeter};

use super::{anthropic, gemini, messages, Answer, BackendApi, Identity, Provider};

/// What a request is translated to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An OpenAI chat for an A2A agent; `conversation` becomes the A2A
    /// `contextId`.
    A2a {
        version: A2aVersion,
        conversation: Option<String>,
    },
    /// An OpenAI chat for a backend of another provider.
    Chat(BackendApi),
    /// An Anthropic Messages request for a backend that speaks OpenAI.
    Messages(BackendApi),
    /// `count_tokens` for a backend that speaks OpenAI: the filter answers.
    CountTokens,
}

/// An answer's stream translator.
enum Chunks {
    A2a(ChunkStream),
    Anthropic(anthropic::ChatStream),
    Gemini(gemini::ChatStream),
    Messages(messages::MessageStream),
}

/// The translated request.
#[derive(Debug)]
pub struct Request {
    pub body: Vec<u8>,
    /// The path the backend is asked on, when the translation decides it
    /// (Gemini: the model and whether it streams).
    pub path: Option<String>,
}

pub struct Session {
    pub kind: Kind,
    /// The request still has to pass (model from metadata: translated once
    /// it is whole).
    pub awaiting_body: bool,
    /// The client asked for a stream.
    pub stream: bool,
    /// The answer is buffered whole (non-streamed, or an error before the
    /// stream began), with the backend's HTTP status.
    pub whole: Option<u32>,
    /// The response headers were paused until the answer is known, so its
    /// status can still change.
    pub headers_paused: bool,
    identity: Identity,
    chunks: Option<Chunks>,
    /// The usage of a whole answer.
    usage: Option<Usage>,
}

impl Session {
    /// `created` is the plan's time, replaced by the request's own when
    /// the request is translated.
    pub fn new(kind: Kind, created: u64) -> Self {
        Session {
            kind,
            awaiting_body: true,
            stream: false,
            whole: None,
            headers_paused: false,
            identity: Identity {
                id: String::new(),
                model: String::new(),
                created,
            },
            chunks: None,
            usage: None,
        }
    }

    /// The client speaks Anthropic's API: the filter's own refusals go to
    /// it in Anthropic's error shape.
    pub fn anthropic_surface(&self) -> bool {
        matches!(self.kind, Kind::Messages(_) | Kind::CountTokens)
    }

    /// The backend's provider, for the access log (`None`: an A2A agent).
    pub fn provider(&self) -> Option<Provider> {
        match &self.kind {
            Kind::Chat(api) | Kind::Messages(api) => Some(api.provider),
            Kind::CountTokens => Some(Provider::OpenAi),
            Kind::A2a { .. } => None,
        }
    }

    /// Translates the client's request. `unique` is unique per request (the
    /// answer's ids derive from it); `now` the time in seconds, if known.
    /// `count_tokens` is answered here: `Err` with a 200.
    pub fn translate_request(
        &mut self,
        body: &[u8],
        unique: &str,
        now: Option<u64>,
    ) -> Result<Request, LocalReply> {
        if let Some(now) = now {
            // `created` of a completion is when it was made.
            self.identity.created = now;
        }
        let (request, chunks) = match &self.kind {
            Kind::A2a {
                version,
                conversation,
            } => {
                let chat = chat::parse_chat(body)?;
                self.identity.model = chat.model.clone();
                self.identity.id = format!("chatcmpl-{unique}");
                self.stream = chat.stream;
                let body = chat::a2a_request(*version, &chat, conversation.as_deref(), unique);
                let chunks = chat
                    .stream
                    .then(|| Chunks::A2a(ChunkStream::new(self.completion())));
                (Request { body, path: None }, chunks)
            }
            Kind::Chat(api) => {
                let upstream = match api.provider {
                    Provider::Gemini => gemini::translate_request(body, &api.options)?,
                    _ => anthropic::translate_request(body, &api.options)?,
                };
                self.identity.model = upstream.model.clone();
                self.identity.id = format!("chatcmpl-{unique}");
                self.stream = upstream.stream;
                let identity = self.identity.clone();
                let chunks = upstream.stream.then(|| match api.provider {
                    Provider::Gemini => {
                        Chunks::Gemini(gemini::ChatStream::new(identity, upstream.include_usage))
                    }
                    _ => Chunks::Anthropic(anthropic::ChatStream::new(
                        identity,
                        upstream.include_usage,
                    )),
                });
                let path = (api.provider == Provider::Gemini).then_some(upstream.path);
                (
                    Request {
                        body: upstream.body,
                        path,
                    },
                    chunks,
                )
            }
            Kind::Messages(api) => {
                let upstream = messages::translate_request(body, &api.options)?;
                self.identity.model = upstream.model.clone();
                self.identity.id = format!("msg_{unique}");
                self.stream = upstream.stream;
                let identity = self.identity.clone();
                let chunks = upstream
                    .stream
                    .then(|| Chunks::Messages(messages::MessageStream::new(identity)));
                (
                    Request {
                        body: upstream.body,
                        path: None,
                    },
                    chunks,
                )
            }
            Kind::CountTokens => {
                let counted = messages::count_tokens(body)?;
                return Err(LocalReply::json(
                    200,
                    String::from_utf8_lossy(&counted).into_owned(),
                ));
            }
        };
        self.awaiting_body = false;
        self.chunks = chunks;
        Ok(request)
    }

    fn completion(&self) -> Completion {
        Completion {
            id: self.identity.id.clone(),
            model: self.identity.model.clone(),
            created: self.identity.created,
        }
    }

    /// A refusal of the filter's own (OpenAI-shaped) in the client's
    /// shape.
    pub fn client_reply(&self, reply: LocalReply) -> LocalReply {
        if !self.anthropic_surface() {
            return reply;
        }
        anthropic_reply(reply)
    }

    /// The client's answer for the backend's whole answer (`status`,
    /// `body`): for a streamed request an SSE stream when `as_stream`, else
    /// JSON with the status the client should see.
    pub fn whole_answer(&mut self, status: u32, body: &[u8], as_stream: bool) -> Answer {
        let answer = match &self.kind {
            Kind::A2a { .. } => {
                let reply = chat::completion_from_a2a(status, body, &self.completion());
                Answer {
                    status: reply.status,
                    content_type: "application/json",
                    body: reply.body.into_bytes(),
                    retry_after: None,
                }
            }
            Kind::Chat(api) if api.provider == Provider::Gemini => {
                gemini::translate_answer(status, body, &self.identity)
            }
            Kind::Chat(_) => anthropic::translate_answer(status, body, &self.identity),
            Kind::Messages(_) => messages::translate_answer(status, body, &self.identity),
            Kind::CountTokens => Answer {
                status,
                content_type: "application/json",
                body: body.to_vec(),
                retry_after: None,
            },
        };
        // The usage in the OpenAI form of the exchange: the client's
        // answer of a chat, the backend's of a Messages request.
        self.usage = match &self.kind {
            Kind::Chat(_) if answer.status == 200 => openai_usage(&answer.body),
            Kind::Messages(_) if status == 200 => openai_usage(body),
            _ => None,
        };
        if !as_stream {
            return answer;
        }
        let Some(chunks) = self.chunks.as_mut() else {
            return answer;
        };
        let body = match chunks {
            Chunks::A2a(c) => c.whole(status, body),
            Chunks::Anthropic(c) => c.whole(status, body),
            Chunks::Gemini(c) => c.whole(status, body),
            Chunks::Messages(c) => c.whole(status, body),
        };
        Answer {
            status: 200,
            content_type: "text/event-stream",
            body,
            retry_after: None,
        }
    }

    /// Whether a stream translator is open (the client asked for a stream).
    pub fn streams(&self) -> bool {
        self.chunks.is_some()
    }

    /// The client's events for one chunk of the backend's stream, holding
    /// at most `room` bytes.
    pub fn feed_within(&mut self, chunk: &[u8], room: usize) -> Vec<u8> {
        match self.chunks.as_mut() {
            Some(Chunks::A2a(c)) => c.feed_within(chunk, room),
            Some(Chunks::Anthropic(c)) => c.feed_within(chunk, room),
            Some(Chunks::Gemini(c)) => c.feed_within(chunk, room),
            Some(Chunks::Messages(c)) => c.feed_within(chunk, room),
            None => chunk.to_vec(),
        }
    }

    /// The rest of the client's stream, once the backend's ended.
    pub fn finish(&mut self) -> Vec<u8> {
        match self.chunks.as_mut() {
            Some(Chunks::A2a(c)) => c.finish(),
            Some(Chunks::Anthropic(c)) => c.finish(),
            Some(Chunks::Gemini(c)) => c.finish(),
            Some(Chunks::Messages(c)) => c.finish(),
            None => Vec::new(),
        }
    }

    pub fn held(&self) -> usize {
        match self.chunks.as_ref() {
            Some(Chunks::A2a(c)) => c.held(),
            Some(Chunks::Anthropic(c)) => c.held(),
            Some(Chunks::Gemini(c)) => c.held(),
            Some(Chunks::Messages(c)) => c.held(),
            None => 0,
        }
    }

    pub fn cut_short(&self) -> bool {
        match self.chunks.as_ref() {
            Some(Chunks::A2a(c)) => c.cut_short(),
            Some(Chunks::Anthropic(c)) => c.cut_short(),
            Some(Chunks::Gemini(c)) => c.cut_short(),
            Some(Chunks::Messages(c)) => c.cut_short(),
            None => false,
        }
    }

    /// The tokens the backend reported, streamed or whole: what token
    /// budgets settle and token counters count, whether or not the client
    /// asked to see them.
    pub fn usage(&self) -> Option<Usage> {
        let streamed = match self.chunks.as_ref() {
            Some(Chunks::Anthropic(c)) => c.usage(),
            Some(Chunks::Gemini(c)) => c.usage(),
            Some(Chunks::Messages(c)) => c.usage(),
            Some(Chunks::A2a(_)) | None => None,
        };
        streamed.or(self.usage)
    }
}

/// The usage an OpenAI chat completion reports.
fn openai_usage(body: &[u8]) -> Option<Usage> {
    let mut meter = UsageMeter::new(Some("application/json"))?;
    meter.feed(body);
    match meter.finish() {
        crate::usage::Metered::Reported(usage) => Some(usage),
        _ => None,
    }
}

/// An OpenAI-shaped reply of the filter's in Anthropic's error shape,
/// its status and headers kept (a 429's `retry-after` among them).
pub fn anthropic_reply(reply: LocalReply) -> LocalReply {
    let answer = messages::translate_answer(
        reply.status,
        reply.body.as_bytes(),
        &Identity {
            id: String::new(),
            model: String::new(),
            created: 0,
        },
    );
    let mut headers = reply.headers;
    for (name, value) in headers.iter_mut() {
        if *name == "content-type" {
            *value = answer.content_type.to_string();
        }
    }
    LocalReply {
        status: answer.status,
        headers,
        body: String::from_utf8_lossy(&answer.body).into_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::llm::ProviderOptions;

    fn api(provider: Provider) -> BackendApi {
        BackendApi {
            provider,
            options: ProviderOptions::default(),
        }
    }

    #[test]
    fn a_chat_for_anthropic_is_translated_and_its_answer_back() {
        let mut s = Session::new(Kind::Chat(api(Provider::Anthropic)), 7);
        let body = br#"{"model":"claude","messages":[{"role":"user","content":"hi"}]}"#;
        let request = s.translate_request(body, "1", Some(9)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(v["max_tokens"], 4096);
        assert_eq!(request.path, None);
        let answer = s.whole_answer(
            200,
            br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}"#,
            false,
        );
        assert_eq!(answer.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hello");
        assert_eq!(v["id"], "chatcmpl-1");
        assert_eq!(v["created"], 9);
        assert_eq!(s.usage().map(|u| u.total), Some(5));
    }

    #[test]
    fn gemini_decides_the_path() {
        let mut s = Session::new(Kind::Chat(api(Provider::Gemini)), 7);
        let body = br#"{"model":"gemini-2.5-flash","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let request = s.translate_request(body, "1", None).unwrap();
        assert_eq!(
            request.path.as_deref(),
            Some("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
        );
        assert!(s.streams());
    }

    #[test]
    fn count_tokens_is_answered_and_refusals_take_anthropics_shape() {
        let mut s = Session::new(Kind::CountTokens, 7);
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hello there"}]}"#;
        let answered = s.translate_request(body, "1", None).unwrap_err();
        assert_eq!(answered.status, 200);
        assert!(answered.body.contains("input_tokens"));
        let refused = s.client_reply(LocalReply::error(
            429,
            "rate_limit_error",
            None,
            None,
            "slow down",
        ));
        let v: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(refused.status, 429);
    }
}
