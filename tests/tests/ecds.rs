//! The plugin configuration delivered by ECDS from a watched file
//! (`envoy/ecds.yaml`): it changes without restarting Envoy, and a bad update
//! is refused while the last good configuration keeps routing.

use std::time::Duration;

use agentroute_tests::{spawn_agent, Gateway, GatewayConfig, Shape};

async fn wait_for_status(gw: &Gateway, path: &str, status: u16) {
    let mut last = 0;
    for _ in 0..100 {
        last = gw.get(path).await.status;
        if last == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path}: status {last}, want {status}\n{}", gw.log());
}

#[tokio::test]
async fn plugin_config_reloads_without_restart_and_bad_updates_are_refused() {
    let one = r#"{"agents":[{"name":"a","backend":"a"}]}"#;
    let two = r#"{"agents":[{"name":"a","backend":"a"},{"name":"b","backend":"b"}]}"#;
    let cfg = GatewayConfig::new(one)
        .shape(Shape::Ecds)
        .cluster("a", spawn_agent("a").await)
        .cluster("b", spawn_agent("b").await);
    let mut gw = Gateway::start(cfg).await;
    wait_for_status(&gw, "/a/x", 200).await;
    assert_eq!(gw.get("/b/x").await.status, 404);

    gw.update_plugin_config(two);
    wait_for_status(&gw, "/b/x", 200).await;
    assert_eq!(gw.get("/b/x").await.header("x-served-by"), Some("b"));

    gw.update_plugin_config(r#"{"agents":[{"name":"c","bakend":"c"}]}"#);
    for _ in 0..100 {
        if gw.log().contains("agents[0].bakend: unknown field") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gw.log()
            .contains("invalid configuration: agents[0].bakend: unknown field"),
        "{}",
        gw.log()
    );
    // The last good configuration still routes.
    assert_eq!(gw.get("/b/x").await.header("x-served-by"), Some("b"));
    assert_eq!(gw.get("/a/x").await.header("x-served-by"), Some("a"));
}
