//! Answers the filter gives itself instead of forwarding: every error in
//! OpenAI's shape (one format for clients to parse), and the 429 of a rate
//! limit with its headers.

/// A response the filter sends itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl LocalReply {
    pub fn json(status: u32, body: String) -> Self {
        LocalReply {
            status,
            headers: vec![("content-type", "application/json".to_string())],
            body,
        }
    }

    /// `{"error":{"message","type","param","code"}}`.
    pub fn error(
        status: u32,
        kind: &str,
        code: Option<&str>,
        param: Option<&str>,
        message: &str,
    ) -> Self {
        let body = serde_json::json!({
            "error": { "message": message, "type": kind, "param": param, "code": code }
        });
        LocalReply::json(status, body.to_string())
    }
}

/// Where a request stands against a limit, local or global: what the
/// `x-ratelimit-*` and `retry-after` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitStatus {
    /// `x-ratelimit-limit`: the bucket's capacity (or the service's limit).
    pub limit: u64,
    /// `x-ratelimit-remaining`.
    pub remaining: u64,
    /// `x-ratelimit-reset`: seconds until the limit is whole again.
    pub reset_secs: u64,
    /// `retry-after` of a refused request: at least 1.
    pub retry_after_secs: u64,
}

impl LimitStatus {
    /// `x-ratelimit-limit`, `-remaining` and `-reset`.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", self.remaining.to_string()),
            ("x-ratelimit-reset", self.reset_secs.to_string()),
        ]
    }

    /// OpenAI's token-budget headers of an admitted answer:
    /// `x-ratelimit-limit-tokens`, `-remaining-tokens` (what the budget holds
    /// after this request's hold) and `-reset-tokens` (a duration, `12s`).
    pub fn token_headers(&self) -> [(&'static str, String); 3] {
        [
            ("x-ratelimit-limit-tokens", self.limit.to_string()),
            ("x-ratelimit-remaining-tokens", self.remaining.to_string()),
            ("x-ratelimit-reset-tokens", format!("{}s", self.reset_secs)),
        ]
    }
}

/// What a limit counts: requests, or LLM tokens (OpenAI's error `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Requests,
    Tokens,
}

/// The 429 of a refused request, with `retry-after` and `x-ratelimit-*`.
pub fn rate_limited(what: Limited, status: &LimitStatus) -> LocalReply {
    let (kind, message) = match what {
        Limited::Tokens => (
            "tokens",
            "token budget exhausted for this agent: retry later",
        ),
        Limited::Requests => ("requests", "rate limit reached for this agent: retry later"),
    };
    let mut reply = LocalReply::error(429, kind, Some("rate_limit_exceeded"), None, message);
    reply
        .headers
        .push(("retry-after", status.retry_after_secs.max(1).to_string()));
    reply.headers.extend(status.headers());
    reply
}

/// The 429 of a request over its entry's in-flight limit: one second is as
/// good a guess as any for when a slot frees.
pub fn concurrency_limited() -> LocalReply {
    let mut reply = LocalReply::error(
        429,
        "requests",
        Some("concurrency_limit_exceeded"),
        None,
        "too many requests of this agent in flight: retry later",
    );
    reply.headers.push(("retry-after", "1".to_string()));
    reply
}

/// A request refused because the rate limit service could not be asked and
/// `failure_mode` is `deny`.
pub fn limit_service_unavailable() -> LocalReply {
    LocalReply::error(
        503,
        "server_error",
        Some("rate_limit_service_unavailable"),
        None,
        "the gateway's rate limit service did not answer; retry later",
    )
}

/// A request that must not go on because the filter could not finish
/// routing it: it could still carry a client-chosen backend.
pub fn routing_failed() -> LocalReply {
    LocalReply::error(500, "server_error", None, None, "gateway routing failed")
}
