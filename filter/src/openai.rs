//! The OpenAI surface: which requests dispatch by `model`, reading the model
//! from a body, the local `/v1/models` answers, and OpenAI-shaped errors.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Plan;
use crate::request::LocalReply;

/// An OpenAI request the filter handles itself or dispatches by model.
#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `GET /v1/models`, `GET /models`.
    ListModels,
    /// `GET /v1/models/{id}`; the id may hold `/` (`prod/coordinator`).
    GetModel(Cow<'a, str>),
    /// `POST` to an endpoint whose body names the model.
    Dispatch,
}

const DISPATCH_PATHS: [&str; 4] = [
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
];

/// Recognises OpenAI endpoints, with or without the `/v1` prefix.
pub fn endpoint<'a>(method: &str, path: &'a str) -> Option<Endpoint<'a>> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let tail = path.strip_prefix("/v1").unwrap_or(path);
    match method {
        "GET" if tail == "/models" => Some(Endpoint::ListModels),
        "GET" => {
            let id = tail.strip_prefix("/models/").filter(|id| !id.is_empty())?;
            Some(Endpoint::GetModel(percent_decode(id)))
        }
        "POST" if DISPATCH_PATHS.contains(&tail) => Some(Endpoint::Dispatch),
        _ => None,
    }
}

/// `{"object":"list","data":[...]}` with every model id, in configuration order.
pub fn models_body(plan: &Plan, created: u64) -> String {
    let data: Vec<Value> = plan
        .model_ids
        .iter()
        .filter_map(|(id, entry)| model_object(plan, id, *entry, created))
        .collect();
    json!({ "object": "list", "data": data }).to_string()
}

pub fn model_reply(plan: &Plan, id: &str, created: u64) -> LocalReply {
    match plan
        .models
        .get(id)
        .and_then(|&entry| model_object(plan, id, entry, created))
    {
        Some(model) => LocalReply::json(200, model.to_string()),
        None => model_not_found(id),
    }
}

fn model_object(plan: &Plan, id: &str, entry: usize, created: u64) -> Option<Value> {
    let e = plan.entries.get(entry)?;
    Some(json!({ "id": id, "object": "model", "created": created, "owned_by": e.namespace }))
}

/// Why a body names no usable model.
#[derive(Debug, PartialEq, Eq)]
pub enum ModelError {
    InvalidJson(String),
    NotAnObject,
    Missing,
    NotAString,
    Empty,
    /// `model_from: metadata` found neither a model nor a parse outcome in
    /// this metadata namespace.
    NoMetadata(String),
}

impl ModelError {
    pub fn reply(&self) -> LocalReply {
        let (code, message) = match self {
            ModelError::InvalidJson(e) => ("invalid_json", format!("request body is not valid JSON: {e}")),
            ModelError::NotAnObject => ("invalid_json", "request body must be a JSON object".to_string()),
            ModelError::Missing => ("missing_model", "you must provide a model parameter".to_string()),
            ModelError::NotAString => ("invalid_model", "model must be a string".to_string()),
            ModelError::Empty => ("missing_model", "model must not be empty".to_string()),
            ModelError::NoMetadata(ns) => (
                "missing_model",
                format!("no model found: the request has no JSON body with a model, or the gateway's json_to_metadata filter does not write `{ns}.model`"),
            ),
        };
        let param = (!matches!(self, ModelError::InvalidJson(_) | ModelError::NotAnObject))
            .then_some("model");
        LocalReply::error(400, "invalid_request_error", Some(code), param, &message)
    }
}

/// Only `model` is kept; serde skips every other field (validating it as
/// JSON) without building it, so a 1 MB prompt costs one pass and no copy.
#[derive(Deserialize)]
struct ModelOnly<'a> {
    #[serde(borrow, default)]
    model: Option<ModelValue<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ModelValue<'a> {
    Str(#[serde(borrow)] Cow<'a, str>),
    Other(IgnoredAny),
}

/// Reads `model` from an OpenAI request body.
pub fn model_from_body(body: &[u8]) -> Result<String, ModelError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => return Err(ModelError::Missing),
        Some(b'{') => {}
        Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            return match serde_json::from_slice::<IgnoredAny>(body) {
                Ok(_) => Err(ModelError::NotAnObject),
                Err(e) => Err(ModelError::InvalidJson(e.to_string())),
            }
        }
        Some(_) => {
            return Err(ModelError::InvalidJson(
                "expected a JSON object".to_string(),
            ))
        }
    }
    let parsed: ModelOnly<'_> =
        serde_json::from_slice(body).map_err(|e| ModelError::InvalidJson(e.to_string()))?;
    match parsed.model {
        None => Err(ModelError::Missing),
        Some(ModelValue::Other(_)) => Err(ModelError::NotAString),
        Some(ModelValue::Str(s)) if s.is_empty() => Err(ModelError::Empty),
        Some(ModelValue::Str(s)) => Ok(s.into_owned()),
    }
}

/// The entry serving `model`, or OpenAI's 404.
pub fn entry_for_model(plan: &Plan, model: &str) -> Result<usize, LocalReply> {
    plan.models
        .get(model)
        .copied()
        .ok_or_else(|| model_not_found(model))
}

fn model_not_found(model: &str) -> LocalReply {
    LocalReply::error(
        404,
        "invalid_request_error",
        Some("model_not_found"),
        Some("model"),
        &format!("The model `{model}` does not exist or is not served by this gateway"),
    )
}

/// Checks what the headers of a dispatch request say about its body, before
/// any of it is read.
pub fn check_body_headers(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    content_length: Option<u64>,
    max_body_bytes: u64,
) -> Result<(), LocalReply> {
    if let Some(ct) = content_type {
        let media = ct.split(';').next().unwrap_or("").trim();
        let json = media.eq_ignore_ascii_case("application/json")
            || (media.len() > 5
                && media
                    .get(media.len() - 5..)
                    .is_some_and(|s| s.eq_ignore_ascii_case("+json")));
        if !json {
            return Err(LocalReply::error(
                415,
                "invalid_request_error",
                Some("unsupported_media_type"),
                None,
                &format!("content-type {media:?} is not supported: send application/json"),
            ));
        }
    }
    if let Some(enc) = content_encoding.map(str::trim) {
        if !enc.is_empty() && !enc.eq_ignore_ascii_case("identity") {
            return Err(LocalReply::error(
                415,
                "invalid_request_error",
                Some("unsupported_content_encoding"),
                None,
                &format!("content-encoding {enc:?} is not supported: send the body uncompressed so the gateway can read the model"),
            ));
        }
    }
    match content_length {
        Some(len) if len > max_body_bytes => Err(too_large(max_body_bytes)),
        _ => Ok(()),
    }
}

pub fn too_large(max_body_bytes: u64) -> LocalReply {
    LocalReply::error(
        413,
        "invalid_request_error",
        Some("request_too_large"),
        None,
        &format!("request body is larger than the gateway's limit of {max_body_bytes} bytes"),
    )
}

/// Largest JSON response kept to read its `usage` (bigger ones are not debited).
const MAX_USAGE_BODY: usize = 8 * 1024 * 1024;

/// Reads the tokens a response used as it streams past, without holding it
/// up: `usage.total_tokens` of a JSON answer, or of the final usage chunk of
/// a server-sent-events stream.
#[derive(Debug)]
pub struct UsageMeter {
    sse: bool,
    /// JSON: the body so far. SSE: the unfinished last line.
    pending: Vec<u8>,
    /// SSE data events seen (excluding `[DONE]` and the usage chunk).
    events: u64,
    total: Option<u64>,
    overflow: bool,
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    total_tokens: Option<u64>,
}

fn usage_of(json: &[u8]) -> Option<Option<u64>> {
    serde_json::from_slice::<WithUsage>(json)
        .ok()
        .map(|w| w.usage.and_then(|u| u.total_tokens))
}

impl UsageMeter {
    /// A meter for a response of this content type, if it can carry usage.
    pub fn new(content_type: Option<&str>) -> Option<Self> {
        let media = content_type?.split(';').next()?.trim().to_ascii_lowercase();
        let sse = match media.as_str() {
            "text/event-stream" => true,
            "application/json" => false,
            _ => return None,
        };
        Some(UsageMeter {
            sse,
            pending: Vec::new(),
            events: 0,
            total: None,
            overflow: false,
        })
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.overflow {
            return;
        }
        self.pending.extend_from_slice(chunk);
        if !self.sse {
            if self.pending.len() > MAX_USAGE_BODY {
                self.overflow = true;
                self.pending = Vec::new();
            }
            return;
        }
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            self.overflow = self.pending.len() > MAX_USAGE_BODY;
            return;
        };
        let rest = self.pending.split_off(end + 1);
        let complete = std::mem::replace(&mut self.pending, rest);
        for line in complete.split(|&b| b == b'\n') {
            self.sse_line(line);
        }
    }

    fn sse_line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.trim_ascii();
        if data == b"[DONE]" || data.is_empty() {
            return;
        }
        match usage_of(data) {
            Some(Some(total)) => self.total = Some(total),
            _ => self.events += 1,
        }
    }

    /// Tokens to debit once the response ended. A stream without a usage
    /// chunk (the client did not ask for `stream_options.include_usage`) is
    /// estimated at one token per streamed event, as OpenAI-style servers
    /// stream about one token per chunk.
    pub fn finish(mut self) -> Option<u64> {
        if self.overflow {
            return None;
        }
        if self.sse {
            let last = std::mem::take(&mut self.pending);
            self.sse_line(&last);
            return Some(self.total.unwrap_or(self.events));
        }
        usage_of(&self.pending).flatten()
    }
}

/// Decodes `%XX` escapes (model ids in paths, e.g. `prod%2Fcoordinator`).
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_endpoints_with_and_without_v1() {
        assert_eq!(endpoint("GET", "/v1/models"), Some(Endpoint::ListModels));
        assert_eq!(endpoint("GET", "/models?x=1"), Some(Endpoint::ListModels));
        assert_eq!(
            endpoint("GET", "/v1/models/gpt-4o"),
            Some(Endpoint::GetModel("gpt-4o".into()))
        );
        assert_eq!(
            endpoint("GET", "/v1/models/prod/coordinator"),
            Some(Endpoint::GetModel("prod/coordinator".into()))
        );
        assert_eq!(
            endpoint("GET", "/models/prod%2Fcoordinator"),
            Some(Endpoint::GetModel("prod/coordinator".into()))
        );
        for path in [
            "/v1/chat/completions",
            "/chat/completions",
            "/v1/completions",
            "/embeddings",
            "/v1/responses",
        ] {
            assert_eq!(endpoint("POST", path), Some(Endpoint::Dispatch), "{path}");
        }
        assert_eq!(endpoint("GET", "/v1/chat/completions"), None);
        assert_eq!(endpoint("POST", "/v1/models"), None);
        assert_eq!(endpoint("POST", "/v1/chat/completions/x"), None);
        assert_eq!(endpoint("GET", "/v1/models/"), None);
    }

    #[test]
    fn reads_model_and_skips_everything_else() {
        let body = br#"{"messages":[{"role":"user","content":"a \"model\": \"x\" {["}],"stream":true,"model":"gpt-demo","n":1}"#;
        assert_eq!(model_from_body(body), Ok("gpt-demo".to_string()));
        assert_eq!(
            model_from_body(br#"{"model":"a\u002fb"}"#),
            Ok("a/b".to_string())
        );
        let big = format!(r#"{{"model":"m","input":"{}"}}"#, "x".repeat(1 << 20));
        assert_eq!(model_from_body(big.as_bytes()), Ok("m".to_string()));
    }

    #[test]
    fn model_errors() {
        assert_eq!(model_from_body(b""), Err(ModelError::Missing));
        assert_eq!(model_from_body(b"{}"), Err(ModelError::Missing));
        assert_eq!(
            model_from_body(br#"{"model":null}"#),
            Err(ModelError::Missing)
        );
        assert_eq!(
            model_from_body(br#"{"model":5}"#),
            Err(ModelError::NotAString)
        );
        assert_eq!(
            model_from_body(br#"{"model":{"id":"x"}}"#),
            Err(ModelError::NotAString)
        );
        assert_eq!(model_from_body(br#"{"model":""}"#), Err(ModelError::Empty));
        assert_eq!(model_from_body(b"[1]"), Err(ModelError::NotAnObject));
        for bad in [
            &b"{"[..],
            b"{\"model\":\"a\",}",
            b"model=x",
            b"{\"model\":\"a\"} trailing",
            b"\xff",
        ] {
            assert!(
                matches!(model_from_body(bad), Err(ModelError::InvalidJson(_))),
                "{bad:?}"
            );
        }
        let reply = ModelError::Missing.reply();
        assert_eq!(reply.status, 400);
        let v: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn body_header_checks() {
        let max = 100;
        assert!(check_body_headers(Some("application/json"), None, Some(100), max).is_ok());
        assert!(check_body_headers(
            Some("Application/JSON; charset=utf-8"),
            Some("identity"),
            None,
            max
        )
        .is_ok());
        assert!(check_body_headers(None, None, None, max).is_ok());
        assert_eq!(
            check_body_headers(Some("text/plain"), None, None, max)
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(
            check_body_headers(Some("application/x-www-form-urlencoded"), None, None, max)
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(
            check_body_headers(None, Some("gzip"), None, max)
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(
            check_body_headers(None, None, Some(101), max)
                .unwrap_err()
                .status,
            413
        );
    }

    #[test]
    fn local_model_answers() {
        let plan = Plan::from_json(
            br#"{"agents":[{"name":"llm","namespace":"models","kind":"modelapi","backend":"b","models":["m1","m2"]},
                          {"name":"bot","namespace":"prod","backend":"c"}]}"#,
        )
        .unwrap();
        let list: Value = serde_json::from_str(&models_body(&plan, 7)).unwrap();
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["m1", "m2", "prod/bot"]);
        assert_eq!(list["data"][0]["owned_by"], "models");
        assert_eq!(list["data"][0]["object"], "model");
        assert_eq!(model_reply(&plan, "prod/bot", 7).status, 200);
        let missing = model_reply(&plan, "nope", 7);
        assert_eq!(missing.status, 404);
        assert!(missing.body.contains("model_not_found"));
        assert_eq!(entry_for_model(&plan, "m2"), Ok(0));
    }

    #[test]
    fn usage_from_json_and_sse() {
        let mut json = UsageMeter::new(Some("application/json; charset=utf-8")).unwrap();
        let body = br#"{"id":"x","choices":[{"message":{"content":"usage"}}],"usage":{"prompt_tokens":3,"total_tokens":42}}"#;
        for piece in body.chunks(7) {
            json.feed(piece);
        }
        assert_eq!(json.finish(), Some(42));

        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n\
                      data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n\
                      data: {\"choices\":[],\"usage\":{\"total_tokens\":17}}\n\n\
                      data: [DONE]\n\n";
        let mut sse = UsageMeter::new(Some("text/event-stream")).unwrap();
        for piece in stream.as_bytes().chunks(5) {
            sse.feed(piece);
        }
        assert_eq!(sse.finish(), Some(17));

        // No usage chunk: one token per streamed event.
        let mut sse = UsageMeter::new(Some("text/event-stream")).unwrap();
        sse.feed(b"data: {\"choices\":[]}\n\ndata: {\"choices\":[]}\n\ndata: [DONE]\n\n");
        assert_eq!(sse.finish(), Some(2));

        assert!(UsageMeter::new(Some("text/html")).is_none());
        assert!(UsageMeter::new(None).is_none());
        let mut bad = UsageMeter::new(Some("application/json")).unwrap();
        bad.feed(b"{not json");
        assert_eq!(bad.finish(), None);
    }
}
