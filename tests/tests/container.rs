//! The same gateway in the official Envoy container image (feature
//! `containers`, needs Docker; skipped with a notice where Docker is absent).
#![cfg(feature = "containers")]

use agentroute_tests::containers::{docker_available, ContainerGateway};
use agentroute_tests::{send, spawn_agent, GatewayConfig};

#[tokio::test]
async fn routes_in_the_official_envoy_image() {
    if !docker_available() {
        eprintln!("Docker is not available: skipped the container test");
        return;
    }
    let config =
        GatewayConfig::new(r#"{"agents":[{"name":"a","namespace":"prod","backend":"a"}]}"#)
            .cluster("a", spawn_agent("a").await);
    let gw = ContainerGateway::start(&config)
        .await
        .expect("Envoy container");
    let r = send(gw.addr, "GET", "/prod/agent/a/x?y=1", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/x?y=1");
}
