//! The provider part of the contract: the API an entry's backend speaks
//! (`agents[].provider`, `provider_options`), the same for a canary's and
//! each failover backend's, and the Anthropic surface (`anthropic`).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[cfg(not(target_arch = "wasm32"))]
use schemars::JsonSchema;

use super::{enum_error, Obj, StrVisitor};

string_enum!(
    /// The API a backend speaks.
    ProviderName, "provider", { "openai" => OpenAi, "anthropic" => Anthropic, "gemini" => Gemini }
);

/// Per-provider options of a backend.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ProviderOptions"))]
pub struct RawProviderOptions {
    /// `max_tokens` sent when a translated request sets none (Anthropic
    /// requires one; default 4096 there).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1, max = 100000000)))]
    pub max_tokens: Option<u64>,
    /// The API version: Anthropic's `anthropic-version` header (default
    /// `2023-06-01`), Gemini's path version (default `v1beta`).
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(r"^[-._0-9A-Za-z]{1,32}$"))
    )]
    pub version: Option<String>,
    /// The model id the backend is asked for, when it differs from the one
    /// clients name (a failover backend of another provider, say). Default:
    /// the client's. Only translated requests carry it.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(r"^[-._:/0-9A-Za-z@]{1,256}$"))
    )]
    pub model: Option<String>,
}

/// The Anthropic surface: `POST /v1/messages` and
/// `/v1/messages/count_tokens`, dispatched by `model`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Anthropic"))]
pub struct RawAnthropic {
    /// Serve the Anthropic surface (default `true`): to `provider:
    /// anthropic` entries forwarded as is, to OpenAI-compatible entries
    /// translated.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = true)))]
    pub enabled: Option<bool>,
}

/// A failover backend: its name, or an object naming its provider too.
#[derive(Debug)]
pub enum RawFailoverBackend {
    /// Speaks what the entry's backend speaks.
    Name(String),
    Spec(Obj<RawBackendSpec>),
}

impl RawFailoverBackend {
    pub fn backend(&self) -> &str {
        match self {
            RawFailoverBackend::Name(name) => name,
            RawFailoverBackend::Spec(spec) => &spec.backend,
        }
    }
}

/// A failover backend with the API it speaks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "BackendSpec"))]
pub struct RawBackendSpec {
    /// The backend (an Envoy cluster name, or what an HTTPRoute matches).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(pattern(r"^[!-~]+$")))]
    pub backend: String,
    /// The API it speaks (default: the entry's `provider`).
    pub provider: Option<ProviderName>,
    /// Its provider options (default: the entry's).
    pub provider_options: Option<Obj<RawProviderOptions>>,
}

impl<'de> Deserialize<'de> for RawFailoverBackend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BackendVisitor;

        impl<'de> Visitor<'de> for BackendVisitor {
            type Value = RawFailoverBackend;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a backend name, or an object with `backend` and `provider`")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(RawFailoverBackend::Name(s.to_string()))
            }

            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                RawBackendSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|spec| RawFailoverBackend::Spec(Obj(spec)))
            }
        }

        d.deserialize_any(BackendVisitor)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl JsonSchema for RawFailoverBackend {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FailoverBackend".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let spec = generator.subschema_for::<RawBackendSpec>();
        schemars::json_schema!({
            "oneOf": [ { "type": "string", "pattern": "^[!-~]+$" }, spec ]
        })
    }
}
