//! `agents[].failover` compiled: the backends checked against each other
//! and the entry's own, `on` read into what counts as a failure, `eject`
//! bounded; every refusal named by its path.

use super::checks::is_header_value;
use super::contract::{RawFailover, RawFailoverBackend};
use super::ConfigError;
use crate::failover::{Failover, On, DEFAULT_EJECT_MS, DEFAULT_WINDOW_MS, MAX_EJECT_MS};

/// Backups an entry may list: each is a slot header on retried requests
/// and a matcher branch in the Envoy route.
pub const MAX_BACKUPS: usize = 8;

pub(super) fn compile_failover(
    raw: RawFailover,
    at: &str,
    backend: &str,
    canary: Option<&str>,
) -> Result<Failover, ConfigError> {
    let path = |field: &str| format!("{at}.{field}");
    if raw.backends.is_empty() {
        return Err(ConfigError::new(
            path("backends"),
            "must list at least one backend",
        ));
    }
    if raw.backends.len() > MAX_BACKUPS {
        return Err(ConfigError::new(
            path("backends"),
            format!("at most {MAX_BACKUPS} backends"),
        ));
    }
    let backends: Vec<String> = raw
        .backends
        .into_iter()
        .map(|b| match b {
            RawFailoverBackend::Name(name) => name,
            RawFailoverBackend::Spec(spec) => spec.0.backend,
        })
        .collect();
    for (j, b) in backends.iter().enumerate() {
        let at_j = format!("{at}.backends[{j}]");
        if b.is_empty() || !is_header_value(b) {
            return Err(ConfigError::new(
                at_j,
                "must be a non-empty string of visible characters (it is sent as a header value)",
            ));
        }
        if b == backend {
            return Err(ConfigError::new(
                at_j,
                format!("{b:?} is the entry's own backend"),
            ));
        }
        if Some(b.as_str()) == canary {
            return Err(ConfigError::new(
                at_j,
                format!("{b:?} is the entry's canary backend"),
            ));
        }
        if let Some(first) = backends.iter().position(|o| o == b).filter(|&i| i < j) {
            return Err(ConfigError::new(
                at_j,
                format!("{b:?} is listed twice (also backends[{first}])"),
            ));
        }
    }
    let on = match raw.on {
        None => On::default(),
        Some(values) if values.is_empty() => {
            return Err(ConfigError::new(
                path("on"),
                "must name at least one failure",
            ))
        }
        Some(values) => {
            let mut on = On::empty();
            for (j, v) in values.iter().enumerate() {
                on.add(v)
                    .map_err(|m| ConfigError::new(format!("{at}.on[{j}]"), m))?;
            }
            on
        }
    };
    let eject_ms = raw.eject.map_or(DEFAULT_EJECT_MS, |d| d.0);
    if eject_ms == 0 || eject_ms > MAX_EJECT_MS {
        return Err(ConfigError::new(
            path("eject"),
            "must be more than 0s and at most 1h",
        ));
    }
    let min_failures = raw.min_failures.unwrap_or(1);
    if !(1..=1000).contains(&min_failures) {
        return Err(ConfigError::new(path("min_failures"), "must be 1 to 1000"));
    }
    let window_ms = raw.window.map_or(DEFAULT_WINDOW_MS, |d| d.0);
    if window_ms == 0 || window_ms > MAX_EJECT_MS {
        return Err(ConfigError::new(
            path("window"),
            "must be more than 0s and at most 1h",
        ));
    }
    Ok(Failover {
        backends,
        on,
        eject_ms,
        retry: raw.retry.unwrap_or(true),
        min_failures,
        window_ms,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Plan;
    use crate::failover::{Failover, On};

    fn failover(json: &str) -> Result<Failover, String> {
        let config = format!(
            r#"{{"agents":[{{"name":"a","backend":"v1","canary":{{"backend":"c1","weight":10}},"failover":{json}}}]}}"#
        );
        Plan::from_json(config.as_bytes())
            .map(|p| *p.entries[0].failover.clone().unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_forms() {
        let f = failover(r#"{"backends":["b1","b2"]}"#).unwrap();
        assert_eq!(f.backends, vec!["b1", "b2"]);
        assert_eq!(f.on, On::default());
        assert_eq!((f.eject_ms, f.retry), (30_000, true));
        let f =
            failover(r#"{"backends":["b1"],"on":["503","timeout"],"eject":"1s","retry":false}"#)
                .unwrap();
        assert_eq!(f.on.statuses, vec![503]);
        assert!(f.on.timeout && !f.on.any_5xx && !f.on.reset);
        assert_eq!((f.eject_ms, f.retry), (1_000, false));
        assert!(failover(r#"{"backends":["b1"],"eject":"1h"}"#).is_ok());
        assert_eq!((f.min_failures, f.window_ms), (1, 10_000));
        let f = failover(r#"{"backends":["b1"],"min_failures":5,"window":"1m"}"#).unwrap();
        assert_eq!((f.min_failures, f.window_ms), (5, 60_000));
    }

    #[test]
    fn refusals_name_the_field() {
        for (json, want) in [
            (
                r#"{"backends":[]}"#,
                "agents[0].failover.backends: must list at least one backend",
            ),
            (r#"{}"#, "agents[0].failover.backends: required"),
            (
                r#"{"backends":["b1","b1"]}"#,
                "agents[0].failover.backends[1]: \"b1\" is listed twice (also backends[0])",
            ),
            (
                r#"{"backends":["v1"]}"#,
                "agents[0].failover.backends[0]: \"v1\" is the entry's own backend",
            ),
            (
                r#"{"backends":["b1","c1"]}"#,
                "agents[0].failover.backends[1]: \"c1\" is the entry's canary backend",
            ),
            (
                r#"{"backends":["b 1"]}"#,
                "agents[0].failover.backends[0]: must be a non-empty string",
            ),
            (
                r#"{"backends":["b1"],"eject":"0s"}"#,
                "agents[0].failover.eject: must be more than 0s and at most 1h",
            ),
            (
                r#"{"backends":["b1"],"eject":"61m"}"#,
                "agents[0].failover.eject: must be more than 0s and at most 1h",
            ),
            (
                r#"{"backends":["b1"],"on":["5xx","4xx"]}"#,
                "agents[0].failover.on[1]: unknown value \"4xx\"",
            ),
            (
                r#"{"backends":["b1"],"min_failures":0}"#,
                "agents[0].failover.min_failures: must be 1 to 1000",
            ),
            (
                r#"{"backends":["b1"],"window":"0s"}"#,
                "agents[0].failover.window: must be more than 0s and at most 1h",
            ),
            (
                r#"{"backends":["b1"],"on":[]}"#,
                "agents[0].failover.on: must name at least one failure",
            ),
            (
                r#"{"backends":["b1"],"retries":3}"#,
                "agents[0].failover.retries: unknown field",
            ),
            (
                r#"{"backends":["1","2","3","4","5","6","7","8","9"]}"#,
                "agents[0].failover.backends: at most 8 backends",
            ),
        ] {
            let got = failover(json).unwrap_err();
            assert!(
                got.starts_with(want),
                "{json}\n  got:  {got}\n  want: {want}"
            );
        }
    }
}
