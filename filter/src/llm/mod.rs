//! Provider translation: the OpenAI surface to backends that speak another
//! API, and the Anthropic surface to backends that speak OpenAI's.
//!
//! One pure module per direction, each with the same shape so the host
//! drives them alike:
//! - `anthropic`: OpenAI chat completions → Anthropic Messages, and the
//!   answers (JSON and SSE) back;
//! - `gemini`: OpenAI chat completions → Gemini `generateContent`, and back;
//! - `messages`: the Anthropic surface (`/v1/messages`) → OpenAI chat
//!   completions, and the answers back as Anthropic's SDK reads them.
//!
//! Each has `translate_request` (client body → upstream body and path),
//! `translate_answer` (a whole upstream answer → the client's), and a
//! stream type with `new`, `feed_within(chunk, room)`, `finish`,
//! `whole(status, body)`, `held`, `cut_short` (the A2A translator's
//! contract: bounded memory, every stream ends in the client's own end
//! marker, an error never traps).

pub mod anthropic;
pub mod gemini;
pub mod messages;
pub mod session;
pub mod stream;

/// What the upstream is asked, once translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The translated request body.
    pub body: Vec<u8>,
    /// The upstream path (with its query, if any).
    pub path: String,
    /// The client asked for a stream.
    pub stream: bool,
    /// OpenAI's `stream_options.include_usage` (a usage chunk at the end).
    pub include_usage: bool,
    /// The model the client named (echoed in the answer).
    pub model: String,
    /// `max_tokens` (or its equivalent) the upstream was asked for, for the
    /// token budget's hold.
    pub max_tokens: Option<u64>,
}

/// A whole answer for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u32,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// `retry-after` to send with it (an overloaded provider's 529 becomes
    /// 503 with one, so failover counts it as the backend's failure).
    pub retry_after: Option<String>,
}

/// What every answer names: the completion (or message) id, the model the
/// client asked for, and when it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `chatcmpl-…` (OpenAI surface) or `msg_…` (Anthropic surface).
    pub id: String,
    pub model: String,
    pub created: u64,
}

/// Options of a provider entry (`agents[].provider_options`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderOptions {
    /// Anthropic requires `max_tokens`: used when the request sets none.
    pub max_tokens: Option<u64>,
    /// The API version: Anthropic's `anthropic-version` header
    /// (default `2023-06-01`), Gemini's path version (default `v1beta`).
    pub version: Option<String>,
    /// The model id sent upstream, when it differs from the one clients
    /// name.
    pub model: Option<String>,
}

/// Longest event kept from an upstream stream; a longer one ends the
/// answer with an error.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The API a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
        }
    }
}

/// What one backend speaks, and how it is spoken to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendApi {
    pub provider: Provider,
    pub options: ProviderOptions,
}

/// The APIs of an entry's backends, for an entry that names a provider or
/// provider options anywhere (none for the rest: they speak OpenAI, as
/// they always did, and pay nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Providers {
    /// The entry's `backend`.
    pub main: BackendApi,
    /// The canary's backend (`None`: as `main`).
    pub canary: Option<BackendApi>,
    /// Each failover backend, in `failover.backends` order (`None`: as
    /// `main`).
    pub failover: Vec<Option<BackendApi>>,
}

impl Providers {
    /// The API of one of the entry's backends (`main`'s for a name that is
    /// none of them).
    pub fn of<'p>(
        &'p self,
        backend: &str,
        canary_backend: Option<&str>,
        failover_backends: &[String],
    ) -> &'p BackendApi {
        if canary_backend == Some(backend) {
            return self.canary.as_ref().unwrap_or(&self.main);
        }
        failover_backends
            .iter()
            .position(|b| b == backend)
            .and_then(|j| self.failover.get(j))
            .and_then(Option::as_ref)
            .unwrap_or(&self.main)
    }
}
