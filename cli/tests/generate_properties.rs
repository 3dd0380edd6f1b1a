//! Properties of `agentroute generate` over random mixes of the platforms'
//! resources: the output of every target passes `agentroute check`, and
//! generating twice, or from the documents in another order, gives the same
//! bytes.

// A test file: its helpers fail the test loudly, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agentroute_cli::check;
use agentroute_cli::generate::{self, Options, Target};
use agentroute_cli::rules::{self, Input};
use proptest::prelude::*;

/// One resource, as YAML, of a platform kind. Model ids and hosts clash on
/// purpose (`shared-model`, three hosts for all): the trust model must give
/// each to one resource whatever the order of the input.
fn resource(kind: u8, ns: &str, name: &str, i: usize, flag: bool, port: u16) -> String {
    match kind % 7 {
        0 => format!(
            "apiVersion: runtime.agentic-layer.ai/v1alpha1\nkind: Agent\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec: {{exposed: {flag}, protocols: [{{type: A2A, port: {port}}}]}}\n"
        ),
        1 => format!(
            "apiVersion: kaos.tools/v1alpha1\nkind: Agent\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec: {{agentNetwork: {{expose: {flag}}}, gatewayRoute: {{timeout: {port}ms}}}}\n"
        ),
        2 => format!(
            "apiVersion: kaos.tools/v1alpha1\nkind: ModelAPI\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec: {{mode: Proxy, proxyConfig: {{models: [model-{i}, shared-model, model-{i}-mini]}}}}\n"
        ),
        3 => format!(
            "apiVersion: ethical.institute/v1alpha1\nkind: ModelAPI\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec: {{mode: Hosted, hostedConfig: {{model: 'hosted-{i}:7b'}}}}\n"
        ),
        4 => format!(
            "apiVersion: kaos.tools/v1alpha1\nkind: MCPServer\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{}}\n"
        ),
        5 => format!(
            "apiVersion: omnia.altairalabs.ai/v1alpha1\nkind: AgentRuntime\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec: {{facades: [{{type: websocket, expose: {{enabled: {flag}, host: h{}.example.com}}}}, {{type: a2a}}, {{type: mcp}}]}}\n",
            i % 3
        ),
        _ => format!(
            "apiVersion: omnia.altairalabs.ai/v1alpha1\nkind: AgentRuntime\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec: {{facade: {{type: {}, port: {port}}}}}\n",
            if flag { "a2a" } else { "websocket" }
        ),
    }
}

/// Resources with distinct namespace/name pairs (names end in a letter so
/// that Omnia's `-a2a` / `-mcp` entries cannot meet another resource's).
fn resources() -> impl Strategy<Value = Vec<String>> {
    let names = prop::sample::select(vec!["a", "b", "coordinator", "v1", "models", "worker-x"]);
    let namespaces = prop::sample::select(vec!["default", "prod", "models", "v1"]);
    prop::collection::btree_map(
        (namespaces, names),
        (any::<u8>(), any::<bool>(), 1u16..65535),
        0..12,
    )
    .prop_map(|m| {
        m.into_iter()
            .enumerate()
            .map(|(i, ((ns, name), (kind, flag, port)))| resource(kind, ns, name, i, flag, port))
            .collect()
    })
}

fn passes_check(text: &str) -> Result<(), String> {
    let input = Input {
        name: "generated".into(),
        scan: check::scan(text).map_err(|e| e.0),
    };
    let report = rules::check_run(&[input], None);
    if report.ok() {
        Ok(())
    } else {
        Err(report.to_string())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn generated_output_passes_check_and_is_stable(docs in resources(), reverse in any::<bool>()) {
        let text = docs.join("---\n");
        let mut other = docs.clone();
        if reverse {
            other.reverse();
        } else {
            other.rotate_left(docs.len() / 2);
        }
        let other = other.join("---\n");
        for target in [Target::Config, Target::Istio, Target::EnvoyGateway, Target::Envoy] {
            let image = matches!(target, Target::Istio | Target::EnvoyGateway)
                .then(|| "registry.example.com/agentroute:1".to_string());
            let mut options = Options { target, allow_empty: true, image, ..Options::default() };
            options.trust.allow_hosts.push("*.example.com".into());
            // One resource never stops the others: the run always writes.
            let first = generate::generate(&[("in.yaml".into(), text.clone())], &options);
            let first = match first {
                Ok(first) => first,
                Err(e) => {
                    prop_assert!(false, "{}", e);
                    continue;
                }
            };
            // The only entries left out here: names the filter refuses
            // (namespace v1 + name models takes /v1/models), each said with
            // its resource.
            for why in &first.left_out {
                prop_assert!(why.starts_with("in.yaml: document "), "{}", why);
                prop_assert!(why.contains(": left out: the filter would refuse its entry: "), "{}", why);
            }
            let again = generate::generate(&[("in.yaml".into(), text.clone())], &options).unwrap();
            let reordered = generate::generate(&[("in.yaml".into(), other.clone())], &options).unwrap();
            prop_assert_eq!(&first.text, &again.text);
            prop_assert_eq!(&first.text, &reordered.text);
            if let Err(report) = passes_check(&first.text) {
                prop_assert!(false, "{}:\n{}\n{}", target.as_str(), first.text, report);
            }
        }
    }
}
