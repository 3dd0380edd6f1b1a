//! WebSocket upgrades through the filter: routed and rewritten like any
//! request, free of the agent's request timeout, counted while open.

use std::time::Duration;

use agentroute_tests::{spawn_agent, Gateway, GatewayConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = r#"{ "agents": [
  { "name": "chat", "namespace": "prod", "backend": "chat", "timeout": "500ms" }
] }"#;

const GAUGE: &str = r#"agentroute_connections_active{namespace="prod",agent="chat",kind="agent"}"#;

#[tokio::test]
async fn websocket_routes_outlives_the_timeout_and_is_counted() {
    let gw =
        Gateway::start(GatewayConfig::new(CONFIG).cluster("chat", spawn_agent("chat").await)).await;

    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut ws, resp) =
        tokio_tungstenite::client_async("ws://gateway.test/prod/agent/chat/ws?room=1", stream)
            .await
            .expect("websocket upgrade through Envoy");
    assert_eq!(resp.status().as_u16(), 101);

    // The agent greets with the path it saw: the prefix is stripped, query kept.
    let hello = ws.next().await.expect("greeting").expect("frame");
    let hello: serde_json::Value =
        serde_json::from_str(hello.to_text().expect("text")).expect("json");
    assert_eq!(
        (hello["agent"].as_str(), hello["path"].as_str()),
        (Some("chat"), Some("/ws?room=1"))
    );

    assert_eq!(
        gw.metric(GAUGE).await,
        Some(1.0),
        "{}",
        gw.prometheus().await
    );

    // Three times the agent's request timeout later, the connection still works.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ws.send(Message::text("still here")).await.expect("send");
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("frame")
        .expect("message");
    assert_eq!(echo.to_text().expect("text"), "still here");

    ws.close(None).await.expect("close");
    drop(ws);
    let mut gauge = None;
    for _ in 0..50 {
        gauge = gw.metric(GAUGE).await;
        if gauge == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gauge, Some(0.0), "closed connections leave the gauge");
}
