//! Envoy from the official container image instead of the local binary, for
//! machines with Docker: `cargo test -p agentroute-tests --features containers`.
//! The container shares the host network, so the demo agents the tests start
//! on loopback are reachable as they are for a local Envoy.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::{listener_address, read_admin_address, wasm_path, GatewayConfig};

/// The official image of the newest Envoy the project tests against.
pub const ENVOY_IMAGE: &str = "envoyproxy/envoy";
pub const ENVOY_TAG: &str = "v1.40.0";

/// Whether a Docker engine answers here.
pub fn docker_available() -> bool {
    std::process::Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// An Envoy container; dropping it stops and removes the container.
pub struct ContainerGateway {
    _container: ContainerAsync<GenericImage>,
    _dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl ContainerGateway {
    pub async fn start(config: &GatewayConfig) -> Result<ContainerGateway, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir_path = path_str(dir.path())?;
        std::fs::write(
            dir.path().join("envoy.json"),
            config.bootstrap(dir.path()).to_string(),
        )
        .map_err(|e| e.to_string())?;
        // Paths inside the container are the host's: the bootstrap names them.
        let wasm = wasm_path();
        let wasm_str = path_str(&wasm)?;
        let container = GenericImage::new(ENVOY_IMAGE, ENVOY_TAG)
            .with_wait_for(WaitFor::message_on_stderr("starting main dispatch loop"))
            .with_network("host")
            .with_mount(Mount::bind_mount(dir_path.clone(), dir_path.clone()))
            .with_mount(Mount::bind_mount(wasm_str.clone(), wasm_str))
            .with_cmd([
                "envoy".to_string(),
                "-c".to_string(),
                format!("{dir_path}/envoy.json"),
                "--concurrency".to_string(),
                config.concurrency.to_string(),
                "--admin-address-path".to_string(),
                format!("{dir_path}/admin-address"),
                "--disable-hot-restart".to_string(),
            ])
            .with_startup_timeout(Duration::from_secs(120))
            .start()
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(admin) = read_admin_address(&dir.path().join("admin-address")) {
                if let Some(addr) = listener_address(admin).await {
                    return Ok(ContainerGateway {
                        _container: container,
                        _dir: dir,
                        addr,
                        admin,
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("the Envoy container never reported its listener".to_string())
    }
}

fn path_str(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}
