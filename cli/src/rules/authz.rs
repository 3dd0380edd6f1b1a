//! Authorization on the identity headers the filter sets (`x-agent-name`,
//! `x-agent-namespace`, `x-agent-kind`): Istio runs a WasmPlugin where its
//! `phase` says, and only `AUTHZ` puts it before Istio's own authorization
//! filter. In any other phase an AuthorizationPolicy on those headers is
//! judged before they are set: it matches nothing a client can reach (a
//! DENY rule never denies, an ALLOW rule never allows).

use crate::check::{Found, Origin};

/// The error for an Istio WasmPlugin of the run not in phase `AUTHZ` when the
/// run has AuthorizationPolicies on the identity headers (`policies`: where).
pub(super) fn phase_before_policies(found: &Found, policies: &[String]) -> Option<String> {
    let Origin::WasmPlugin { phase, .. } = &found.origin else {
        return None;
    };
    if policies.is_empty() || phase.as_deref() == Some("AUTHZ") {
        return None;
    }
    let phase = phase
        .as_deref()
        .unwrap_or("none (UNSPECIFIED_PHASE, the end of the chain)");
    Some(format!(
        "the WasmPlugin runs in phase {phase}, after Istio's authorization, but {} \
         match(es) the x-agent-* headers it sets: those policies would judge requests before \
         the headers exist. Set `phase: AUTHZ`",
        policies.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use super::super::Level;

    const POLICY: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
        metadata: {name: agents, namespace: istio-ingress}\n\
        spec:\n  action: DENY\n  rules:\n  - when:\n    - key: request.headers[x-agent-namespace]\n      values: [secret]\n";

    fn plugin(phase: &str) -> String {
        format!(
            "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\n\
             metadata: {{name: agentroute, namespace: istio-ingress}}\n\
             spec:\n  url: oci://x/y:1\n{phase}  pluginConfig:\n    openai: {{model_from: metadata}}\n    \
             agents: [{{name: a, namespace: prod, backend: prod-a}}]\n"
        )
    }

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        run(files)
            .lines
            .iter()
            .filter(|l| l.level == Level::Error && l.text.contains("phase"))
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn an_identity_policy_needs_the_plugin_in_phase_authz() {
        let stats = plugin("  phase: STATS\n");
        assert_eq!(
            errors(&[("wasmplugin.yaml", &stats), ("authz.yaml", POLICY)]),
            ["wasmplugin.yaml: WasmPlugin istio-ingress/agentroute spec.pluginConfig: error: the WasmPlugin runs in phase STATS, after Istio's authorization, but authz.yaml: AuthorizationPolicy istio-ingress/agents match(es) the x-agent-* headers it sets: those policies would judge requests before the headers exist. Set `phase: AUTHZ`"]
        );
        let unset = plugin("");
        assert_eq!(errors(&[("p.yaml", &unset), ("a.yaml", POLICY)]).len(), 1);
        // In phase AUTHZ, or without such a policy: nothing to say.
        let authz = plugin("  phase: AUTHZ\n");
        assert!(errors(&[("p.yaml", &authz), ("a.yaml", POLICY)]).is_empty());
        assert!(errors(&[("p.yaml", &stats)]).is_empty());
        let other = POLICY.replace("x-agent-namespace", "x-tenant");
        assert!(errors(&[("p.yaml", &stats), ("a.yaml", &other)]).is_empty());
    }
}
