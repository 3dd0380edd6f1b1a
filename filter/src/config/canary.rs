//! `agents[].canary` compiled: the weight as a cohort threshold, the `by`
//! value and the forcing header checked, every refusal named by its path.

use super::checks::{header_name, is_header_value};
use super::contract::RawCanary;
use super::ConfigError;
use crate::canary::{By, Canary, COHORTS};

pub(super) fn compile_canary(
    raw: RawCanary,
    at: &str,
    stable_backend: &str,
) -> Result<Canary, ConfigError> {
    let path = |field: &str| format!("{at}.{field}");
    if raw.backend.is_empty() || !is_header_value(&raw.backend) {
        return Err(ConfigError::new(
            path("backend"),
            "must be a non-empty string of visible characters (it is sent as a header value)",
        ));
    }
    if raw.backend == stable_backend {
        return Err(ConfigError::new(
            path("backend"),
            format!(
                "{:?} is the entry's own backend: a canary needs another one",
                raw.backend
            ),
        ));
    }
    // The messages leave the number out: formatting a float would link
    // float printing into the plugin for one error (about 10 KB); the path
    // says where it is.
    let weight = raw.weight;
    if !(weight.is_finite() && (0.0..=100.0).contains(&weight)) {
        return Err(ConfigError::new(
            path("weight"),
            "must be between 0 and 100",
        ));
    }
    let basis_points = weight * f64::from(COHORTS) / 100.0;
    if (basis_points - basis_points.round()).abs() > 1e-6 {
        return Err(ConfigError::new(
            path("weight"),
            "must be a multiple of 0.01 (the split has ten thousand cohorts)",
        ));
    }
    let by = match raw.by.as_deref() {
        None | Some("random") => By::Random,
        Some("client_ip") => By::ClientIp,
        Some(by) => {
            if let Some(name) = by.strip_prefix("header:") {
                By::Header(header_name(name, &path("by"))?)
            } else if let Some(name) = by.strip_prefix("cookie:") {
                By::Cookie(cookie_name(name, &path("by"))?)
            } else {
                return Err(ConfigError::new(
                    path("by"),
                    format!(
                        "{by:?} is not \"random\", \"client_ip\", \"header:<name>\" or \"cookie:<name>\""
                    ),
                ));
            }
        }
    };
    let header = raw
        .header
        .map(|h| header_name(&h, &path("header")))
        .transpose()?;
    let key = match raw.key.as_deref() {
        None => crate::canary::COHORT_KEY,
        Some(k) if k.chars().count() < 16 => {
            return Err(ConfigError::new(
                path("key"),
                "must be at least 16 characters (a secret nobody can guess)",
            ))
        }
        Some(k) => crate::canary::cohort_key(k),
    };
    Ok(Canary {
        backend: raw.backend,
        threshold: basis_points.round() as u16,
        by,
        header,
        key,
    })
}

/// A cookie name is an HTTP token, compared case-sensitively.
fn cookie_name(name: &str, path: &str) -> Result<String, ConfigError> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        Ok(name.to_string())
    } else {
        Err(ConfigError::new(
            path,
            format!("{name:?} is not a valid cookie name"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::canary::{By, COHORTS};
    use crate::config::Plan;

    fn canary(json: &str) -> Result<crate::canary::Canary, String> {
        let config = format!(r#"{{"agents":[{{"name":"a","backend":"v1","canary":{json}}}]}}"#);
        Plan::from_json(config.as_bytes())
            .map(|p| *p.entries[0].canary.clone().unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn weights_become_thresholds() {
        let c = canary(r#"{"backend":"v2","weight":10}"#).unwrap();
        assert_eq!((c.threshold, c.by, c.header), (1_000, By::Random, None));
        assert_eq!(
            canary(r#"{"backend":"v2","weight":0.25}"#)
                .unwrap()
                .threshold,
            25
        );
        assert_eq!(
            canary(r#"{"backend":"v2","weight":100}"#)
                .unwrap()
                .threshold,
            COHORTS
        );
        assert_eq!(
            canary(r#"{"backend":"v2","weight":0}"#).unwrap().threshold,
            0
        );
        assert_eq!(
            canary(r#"{"backend":"v2","weight":33.33}"#)
                .unwrap()
                .threshold,
            3_333
        );
    }

    #[test]
    fn by_and_forcing_header_forms() {
        let c =
            canary(r#"{"backend":"v2","weight":5,"by":"header:X-User-Id","header":"X-Canary"}"#)
                .unwrap();
        assert_eq!(c.by, By::Header("x-user-id".into()));
        assert_eq!(c.header.as_deref(), Some("x-canary"));
        let c = canary(r#"{"backend":"v2","weight":5,"by":"cookie:Session_ID"}"#).unwrap();
        assert_eq!(
            c.by,
            By::Cookie("Session_ID".into()),
            "cookie names keep their case"
        );
        let c = canary(r#"{"backend":"v2","weight":5,"by":"client_ip"}"#).unwrap();
        assert_eq!(c.by, By::ClientIp);
        assert_eq!(c.key, crate::canary::COHORT_KEY);
        let c = canary(r#"{"backend":"v2","weight":5,"key":"0123456789abcdef"}"#).unwrap();
        assert_eq!(c.key, crate::canary::cohort_key("0123456789abcdef"));
    }

    #[test]
    fn refusals_name_the_field() {
        for (json, want) in [
            (r#"{"backend":"v2","weight":101}"#, "agents[0].canary.weight: must be between 0 and 100"),
            (r#"{"backend":"v2","weight":-1}"#, "agents[0].canary.weight: must be between 0 and 100"),
            (r#"{"backend":"v2","weight":12.345}"#, "agents[0].canary.weight: must be a multiple of 0.01"),
            (r#"{"backend":"v2","weight":"10"}"#, "agents[0].canary.weight: expected a number, found a string"),
            (r#"{"backend":"v2"}"#, "agents[0].canary.weight: required"),
            (r#"{"backend":"v1","weight":10}"#, "agents[0].canary.backend: \"v1\" is the entry's own backend"),
            (r#"{"backend":"","weight":10}"#, "agents[0].canary.backend: must be a non-empty string"),
            (r#"{"backend":"v2","weight":10,"by":"ip"}"#, "agents[0].canary.by: \"ip\" is not \"random\", \"client_ip\", \"header:<name>\" or \"cookie:<name>\""),
            (r#"{"backend":"v2","weight":10,"by":"header:"}"#, "agents[0].canary.by: \"\" is not a valid header name"),
            (r#"{"backend":"v2","weight":10,"by":"cookie:a=b"}"#, "agents[0].canary.by: \"a=b\" is not a valid cookie name"),
            (r#"{"backend":"v2","weight":10,"header":"x-agent-name"}"#, "agents[0].canary.header: \"x-agent-name\" is a header the gateway or the filter already uses"),
            (r#"{"backend":"v2","weight":10,"sticky":true}"#, "agents[0].canary.sticky: unknown field"),
            (r#"{"backend":"v2","weight":10,"key":"short"}"#, "agents[0].canary.key: must be at least 16 characters"),
        ] {
            let got = canary(json).unwrap_err();
            assert!(got.starts_with(want), "{json}\n  got:  {got}\n  want: {want}");
        }
    }
}
