//! Checks every compile step shares: header names and values, and the
//! error naming both entries of a conflict. They sit below the steps
//! (`compile` and the per-policy files all import them, none imports a
//! step), so the steps never import each other.

use super::{
    ConfigError, Entry, HEADER_AGENT_KIND, HEADER_AGENT_NAME, HEADER_AGENT_NAMESPACE,
    HEADER_FORWARDED_PREFIX, HEADER_TIMEOUT,
};

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn conflict(path: &str, what: &str, first: usize, entries: &[Entry]) -> ConfigError {
    let first_id = entries
        .get(first)
        .map(|e| e.id.as_str())
        .unwrap_or_default();
    ConfigError::new(
        path,
        format!("{what} is already claimed by agents[{first}] ({first_id})"),
    )
}

pub(super) fn header_name(s: &str, path: &str) -> Result<String> {
    let lower = s.to_ascii_lowercase();
    let token = !lower.is_empty()
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(ConfigError::new(
            path,
            format!("{s:?} is not a valid header name"),
        ));
    }
    let reserved = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        HEADER_AGENT_NAME,
        HEADER_AGENT_NAMESPACE,
        HEADER_AGENT_KIND,
        HEADER_FORWARDED_PREFIX,
        HEADER_TIMEOUT,
    ];
    // `x_agent_name` reaches CGI-style backends as the same variable as
    // `x-agent-name`: the underscore spelling is just as reserved.
    let dashed = lower.replace('_', "-");
    if reserved.contains(&dashed.as_str()) {
        return Err(ConfigError::new(
            path,
            format!("{s:?} is a header the gateway or the filter already uses"),
        ));
    }
    Ok(lower)
}

pub(super) fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| (0x21..0x7f).contains(&b))
}
