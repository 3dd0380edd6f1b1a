//! `agents[].provider` and `provider_options` compiled, with the canary's
//! and each failover backend's: an entry that names none keeps no record
//! (it speaks OpenAI). Also `anthropic` (the surface).

use super::contract::{ProviderName, RawAnthropic, RawFailoverBackend, RawProviderOptions};
use super::{ConfigError, Kind, Protocol};
use crate::llm::{BackendApi, Provider, ProviderOptions, Providers};

type Result<T> = std::result::Result<T, ConfigError>;

fn provider(name: ProviderName) -> Provider {
    match name {
        ProviderName::OpenAi => Provider::OpenAi,
        ProviderName::Anthropic => Provider::Anthropic,
        ProviderName::Gemini => Provider::Gemini,
    }
}

fn options(raw: RawProviderOptions, at: &str) -> Result<ProviderOptions> {
    if raw.max_tokens == Some(0) {
        return Err(ConfigError::new(
            format!("{at}.max_tokens"),
            "must be at least 1",
        ));
    }
    if let Some(v) = &raw.version {
        let ok = !v.is_empty()
            && v.len() <= 32
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !ok {
            return Err(ConfigError::new(
                format!("{at}.version"),
                format!("{v:?} is not a version (letters, digits, `-`, `.`, `_`; it goes into a header or a path)"),
            ));
        }
    }
    if let Some(m) = &raw.model {
        let ok = !m.is_empty()
            && m.len() <= 256
            && m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:/@".contains(&b));
        if !ok {
            return Err(ConfigError::new(
                format!("{at}.model"),
                format!("{m:?} is not a model id (letters, digits, `-._:/@`)"),
            ));
        }
    }
    Ok(ProviderOptions {
        max_tokens: raw.max_tokens,
        version: raw.version,
        model: raw.model,
    })
}

/// One backend's API: its own provider and options, else the entry's.
fn backend_api(
    name: Option<ProviderName>,
    raw: Option<RawProviderOptions>,
    main: &BackendApi,
    at: &str,
) -> Result<Option<BackendApi>> {
    if name.is_none() && raw.is_none() {
        return Ok(None);
    }
    let provider = name.map_or(main.provider, provider);
    let options = match raw {
        Some(raw) => options(raw, &format!("{at}.provider_options"))?,
        None => main.options.clone(),
    };
    Ok(Some(BackendApi { provider, options }))
}

/// What an entry's backends speak, or `None` when every one speaks OpenAI
/// with no options. `canary` is the canary's provider and options;
/// `failover` the failover backends as written.
pub(super) fn compile_providers(
    name: Option<ProviderName>,
    raw: Option<RawProviderOptions>,
    canary: Option<(Option<ProviderName>, Option<RawProviderOptions>)>,
    failover: &mut [RawFailoverBackend],
    kind: Kind,
    protocol: &Protocol,
    at: &str,
) -> Result<Option<Box<Providers>>> {
    let main = BackendApi {
        provider: name.map_or(Provider::OpenAi, provider),
        options: match raw {
            Some(raw) => options(raw, &format!("{at}.provider_options"))?,
            None => ProviderOptions::default(),
        },
    };
    let canary = match canary {
        Some((name, raw)) => backend_api(name, raw, &main, &format!("{at}.canary"))?,
        None => None,
    };
    let mut backups = Vec::with_capacity(failover.len());
    for (j, b) in failover.iter_mut().enumerate() {
        backups.push(match b {
            RawFailoverBackend::Name(_) => None,
            RawFailoverBackend::Spec(spec) => backend_api(
                spec.0.provider,
                spec.0.provider_options.take().map(|o| o.0),
                &main,
                &format!("{at}.failover.backends[{j}]"),
            )?,
        });
    }
    let plain = BackendApi {
        provider: Provider::OpenAi,
        options: ProviderOptions::default(),
    };
    let all_plain = main == plain
        && canary.as_ref().map_or(true, |c| *c == plain)
        && backups.iter().flatten().all(|b| *b == plain);
    if all_plain {
        return Ok(None);
    }
    if kind == Kind::Mcp {
        return Err(ConfigError::new(
            format!("{at}.provider"),
            "an MCP server speaks MCP: a provider applies to entries of kind modelapi or agent",
        ));
    }
    if matches!(protocol, Protocol::A2a { .. }) {
        return Err(ConfigError::new(
            format!("{at}.provider"),
            "an A2A agent (protocol: a2a) has no provider: chats to it are translated to A2A",
        ));
    }
    Ok(Some(Box::new(Providers {
        main,
        canary,
        failover: backups,
    })))
}

/// `anthropic.enabled` (default `true`).
pub(super) fn anthropic_enabled(raw: Option<RawAnthropic>) -> bool {
    raw.and_then(|a| a.enabled).unwrap_or(true)
}
