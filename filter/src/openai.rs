//! The OpenAI surface: which requests dispatch by `model`, reading the model
//! from a body, the local `/v1/models` answers, and OpenAI-shaped errors.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::models::ModelId;
use crate::config::Plan;
use crate::json_scan;
use crate::reply::LocalReply;

/// An OpenAI request the filter handles itself or dispatches by model.
#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `GET /v1/models`, `GET /models`.
    ListModels,
    /// `GET /v1/models/{id}`; the id may hold `/` (`prod/coordinator`).
    GetModel(Cow<'a, str>),
    /// `POST` to an endpoint whose body names the model.
    Dispatch(Api),
}

/// The endpoints that dispatch by model: OpenAI's, and the Anthropic
/// surface's (`/v1/messages`, `/v1/messages/count_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Messages,
    CountTokens,
}

impl Api {
    /// Anthropic's surface: its errors are Anthropic-shaped.
    pub fn is_anthropic(self) -> bool {
        matches!(self, Api::Messages | Api::CountTokens)
    }
}

/// The Anthropic surface's paths: always under `/v1`, as Anthropic's SDKs
/// add it to their base URL.
const ANTHROPIC_PATHS: [(&str, Api); 2] = [
    ("/v1/messages", Api::Messages),
    ("/v1/messages/count_tokens", Api::CountTokens),
];

const DISPATCH_PATHS: [(&str, Api); 4] = [
    ("/chat/completions", Api::Chat),
    ("/completions", Api::Completions),
    ("/embeddings", Api::Embeddings),
    ("/responses", Api::Responses),
];

/// Recognises OpenAI endpoints, with the `/v1` prefix or, when
/// `unversioned`, without it.
pub fn endpoint<'a>(method: &str, path: &'a str, unversioned: bool) -> Option<Endpoint<'a>> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let tail = match path.strip_prefix("/v1") {
        Some(tail) => tail,
        None if unversioned => path,
        None => return None,
    };
    match method {
        "GET" if tail == "/models" => Some(Endpoint::ListModels),
        "GET" => {
            let id = tail.strip_prefix("/models/").filter(|id| !id.is_empty())?;
            Some(Endpoint::GetModel(percent_decode(id)))
        }
        "POST" => DISPATCH_PATHS
            .iter()
            .find(|(p, _)| *p == tail)
            .or_else(|| ANTHROPIC_PATHS.iter().find(|(p, _)| *p == path))
            .map(|&(_, api)| Endpoint::Dispatch(api)),
        _ => None,
    }
}

/// `{"object":"list","data":[...]}` with every model id, in configuration
/// order: built once per plan, on first use.
pub fn models_body(plan: &Plan) -> &str {
    plan.models_body.get_or_init(|| {
        let data: Vec<Value> = plan
            .models
            .listed(plan.entries.as_slice())
            .filter_map(|(id, entry)| model_object(plan, id, entry, plan.created))
            .collect();
        json!({ "object": "list", "data": data }).to_string()
    })
}

pub fn model_reply(plan: &Plan, id: &str) -> LocalReply {
    match plan
        .models
        .exact(plan.entries.as_slice(), id)
        .and_then(|entry| model_object(plan, id, entry, plan.created))
    {
        Some(model) => LocalReply::json(200, model.to_string()),
        None => model_not_found(id),
    }
}

fn model_object(plan: &Plan, id: &str, entry: usize, created: u64) -> Option<Value> {
    let e = plan.entries.get(entry)?;
    Some(json!({ "id": id, "object": "model", "created": created, "owned_by": e.namespace() }))
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

/// Only `model` and the answer's size limits are kept; serde skips every
/// other field (validating it as JSON) without building it, so a 1 MB prompt
/// costs one pass and no copy. A key given twice is refused (serde's
/// duplicate-field error): backends take the last `model`, and a gateway that
/// read the first could be steered past the limits of the model served.
#[derive(Deserialize)]
struct ModelOnly<'a> {
    #[serde(borrow, default)]
    model: Option<ModelValue<'a>>,
    #[serde(default)]
    max_tokens: Option<Limit>,
    #[serde(default)]
    max_completion_tokens: Option<Limit>,
    #[serde(default)]
    max_output_tokens: Option<Limit>,
    #[serde(default)]
    background: Option<Flag>,
}

/// A flag as sent; anything but a boolean reads as unset (the backend
/// judges the value).
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Other(IgnoredAny),
}

/// A token limit as sent; anything but a non-negative integer reads as none
/// (the backend judges the value, the gateway only estimates with it).
#[derive(Deserialize)]
#[serde(untagged)]
enum Limit {
    Count(u64),
    Other(IgnoredAny),
}

impl Limit {
    fn count(&self) -> Option<u64> {
        match self {
            Limit::Count(n) => Some(*n),
            Limit::Other(_) => None,
        }
    }
}

/// What a request body says, as far as the gateway reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct BodyFacts {
    pub model: Result<String, ModelError>,
    /// The most tokens the answer may have (`max_tokens`,
    /// `max_completion_tokens` or `max_output_tokens`).
    pub max_tokens: Option<u64>,
    /// `background: true`: a Responses API call whose answer comes later,
    /// on another request (its usage never passes this one).
    pub background: bool,
}

/// Reads `model` and the answer's token limit from an OpenAI request body:
/// the fast scanner where it is sure, else serde_json (the same answer).
pub fn read_body(body: &[u8]) -> BodyFacts {
    let Some(fields) = json_scan::scan(body) else {
        return read_body_with_serde(body);
    };
    BodyFacts {
        model: match fields.model {
            None => Err(ModelError::Missing),
            Some("") => Err(ModelError::Empty),
            Some(model) => Ok(model.to_string()),
        },
        max_tokens: fields
            .max_completion_tokens
            .or(fields.max_tokens)
            .or(fields.max_output_tokens),
        background: fields.background == Some(true),
    }
}

/// `read_body` by serde_json alone: the reference the fast scanner is
/// compared with (unit tests, the `model_body` fuzz target).
#[doc(hidden)]
pub fn read_body_with_serde(body: &[u8]) -> BodyFacts {
    match parse_model_only(body) {
        Ok(parsed) => BodyFacts {
            max_tokens: [
                &parsed.max_completion_tokens,
                &parsed.max_tokens,
                &parsed.max_output_tokens,
            ]
            .into_iter()
            .find_map(|l| l.as_ref().and_then(Limit::count)),
            background: matches!(parsed.background, Some(Flag::Bool(true))),
            model: model_of(parsed.model),
        },
        Err(e) => BodyFacts {
            model: Err(e),
            max_tokens: None,
            background: false,
        },
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ModelValue<'a> {
    Str(#[serde(borrow)] Cow<'a, str>),
    Other(IgnoredAny),
}

/// Reads `model` from an OpenAI request body.
pub fn model_from_body(body: &[u8]) -> Result<String, ModelError> {
    read_body(body).model
}

fn parse_model_only(body: &[u8]) -> Result<ModelOnly<'_>, ModelError> {
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
    serde_json::from_slice(body).map_err(|e| ModelError::InvalidJson(e.to_string()))
}

fn model_of(model: Option<ModelValue<'_>>) -> Result<String, ModelError> {
    match model {
        None => Err(ModelError::Missing),
        Some(ModelValue::Other(_)) => Err(ModelError::NotAString),
        Some(ModelValue::Str(s)) if s.is_empty() => Err(ModelError::Empty),
        Some(ModelValue::Str(s)) => Ok(s.into_owned()),
    }
}

/// The entry serving `model`, or OpenAI's 404.
pub fn entry_for_model(plan: &Plan, model: &str) -> Result<usize, LocalReply> {
    claim_for_model(plan, model).map(|(entry, _)| entry)
}

/// The entry serving `model`, with the configured id or pattern that
/// claims it.
pub fn claim_for_model<'p>(
    plan: &'p Plan,
    model: &str,
) -> Result<(usize, ModelId<'p>), LocalReply> {
    plan.model_claim(model)
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

/// A `background: true` call to an entry with a token budget: its answer
/// (and usage) comes on another request, so it could not be metered.
pub fn background_refused() -> LocalReply {
    LocalReply::error(
        400,
        "invalid_request_error",
        Some("background_not_metered"),
        Some("background"),
        "background responses are not accepted for this model: its token budget meters each answer's usage, and a background answer's usage never passes the gateway",
    )
}

/// Whether an entry meters tokens (a local or a global token budget).
pub fn meters_tokens(entry: &crate::config::Entry) -> bool {
    use crate::config::Scope;
    entry.rate_limit.as_ref().is_some_and(|l| match &l.scope {
        Scope::Local { tokens, .. } => tokens.is_some(),
        Scope::Global { tokens } => *tokens,
    })
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
        assert_eq!(
            endpoint("GET", "/v1/models", true),
            Some(Endpoint::ListModels)
        );
        assert_eq!(
            endpoint("GET", "/models?x=1", true),
            Some(Endpoint::ListModels)
        );
        assert_eq!(
            endpoint("GET", "/v1/models/gpt-4o", true),
            Some(Endpoint::GetModel("gpt-4o".into()))
        );
        assert_eq!(
            endpoint("GET", "/v1/models/prod/coordinator", true),
            Some(Endpoint::GetModel("prod/coordinator".into()))
        );
        assert_eq!(
            endpoint("GET", "/models/prod%2Fcoordinator", true),
            Some(Endpoint::GetModel("prod/coordinator".into()))
        );
        for path in [
            "/v1/chat/completions",
            "/chat/completions",
            "/v1/completions",
            "/embeddings",
            "/v1/responses",
        ] {
            assert!(
                matches!(endpoint("POST", path, true), Some(Endpoint::Dispatch(_))),
                "{path}"
            );
        }
        assert_eq!(endpoint("GET", "/v1/chat/completions", true), None);
        assert_eq!(endpoint("POST", "/v1/models", true), None);
        assert_eq!(endpoint("POST", "/v1/chat/completions/x", true), None);
        assert_eq!(endpoint("GET", "/v1/models/", true), None);
        // `openai.unversioned_paths: false` leaves the bare paths alone.
        assert_eq!(endpoint("GET", "/models", false), None);
        assert_eq!(endpoint("POST", "/chat/completions", false), None);
        assert_eq!(
            endpoint("GET", "/v1/models", false),
            Some(Endpoint::ListModels)
        );
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
    fn token_limits_are_read_and_duplicate_keys_refused() {
        let facts = read_body(br#"{"model":"m","max_tokens":300,"messages":[]}"#);
        assert_eq!(
            (facts.model, facts.max_tokens),
            (Ok("m".to_string()), Some(300))
        );
        let facts = read_body(br#"{"model":"m","max_completion_tokens":50,"max_tokens":300}"#);
        assert_eq!(facts.max_tokens, Some(50), "the newer field wins");
        let facts = read_body(br#"{"model":"m","max_output_tokens":7}"#);
        assert_eq!(facts.max_tokens, Some(7));
        assert!(read_body(br#"{"model":"m","background":true}"#).background);
        assert!(read_body_with_serde(br#"{"model":"m","background":true}"#).background);
        for body in [
            &br#"{"model":"m","background":false}"#[..],
            br#"{"model":"m","background":null}"#,
            br#"{"model":"m","background":"true"}"#,
            br#"{"model":"m"}"#,
        ] {
            assert!(!read_body(body).background);
            assert_eq!(read_body(body), read_body_with_serde(body));
        }
        // Given twice, the body is refused: backends read the last.
        assert!(
            read_body(br#"{"model":"m","background":false,"background":true}"#)
                .model
                .is_err()
        );
        let facts = read_body(br#"{"model":"m","max_tokens":"lots"}"#);
        assert_eq!((facts.model, facts.max_tokens), (Ok("m".to_string()), None));
        // Backends take the last `model`: a body naming two is refused, so
        // the gateway can never be steered past the served model's limits.
        assert!(matches!(
            model_from_body(br#"{"model":"cheap","messages":[],"model":"dear"}"#),
            Err(ModelError::InvalidJson(_))
        ));
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
        let list: Value = serde_json::from_str(models_body(&plan)).unwrap();
        assert!(
            std::ptr::eq(models_body(&plan), models_body(&plan)),
            "built once per plan"
        );
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["m1", "m2", "prod/bot"]);
        assert_eq!(list["data"][0]["owned_by"], "models");
        assert_eq!(list["data"][0]["object"], "model");
        assert_eq!(model_reply(&plan, "prod/bot").status, 200);
        let missing = model_reply(&plan, "nope");
        assert_eq!(missing.status, 404);
        assert!(missing.body.contains("model_not_found"));
        assert_eq!(entry_for_model(&plan, "m2"), Ok(0));
    }
}
