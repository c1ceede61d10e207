//! The moto emulator the local stack runs on: where it is, starting it, and
//! the SDK configuration and process environment that point at it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::runtime;
use crate::template::REGION;

pub const DEFAULT_EMULATOR_PORT: u16 = 4566;

pub fn emulator_endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Credentials and region for the emulator: never the developer's own.
pub async fn emulator_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "hub-local",
        ))
        .load()
        .await
}

pub fn emulator_environment(endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), endpoint.into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

/// The project's emulator: HUB_MOTO_SERVER, else .venv/bin/hub-emulator
/// beside the template (moto's server, see infra/emulator.py).
pub fn moto_server(template: &Path) -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("HUB_MOTO_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let candidate = template
        .parent()
        .unwrap_or(Path::new("."))
        .join(".venv/bin/hub-emulator");
    if candidate.exists() {
        Ok(candidate)
    } else {
        Err(format!(
            "{} is missing: run infra/setup.sh (it creates the project venv with moto)",
            candidate.display()
        ))
    }
}

/// Starts the emulator on `port`; with 0, on a free port the emulator binds
/// itself and reports (infra/emulator.py). A port picked here first could be
/// taken by another process before the emulator binds it, and the stack would
/// then talk to that process. Returns the process and its port.
pub async fn start_emulator(moto: &Path, port: u16) -> Result<(Child, u16), String> {
    if port != 0
        && tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    {
        return Err(format!(
            "port {port} is already in use: stop what holds it, or set HUB_EMULATOR_PORT \
             (0: any free port)"
        ));
    }
    let mut command = Command::new(moto);
    command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(if port == 0 {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    runtime::end_with_the_hub(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting {}: {e}", moto.display()))?;
    let port = match port {
        0 => reported_port(&mut child, moto).await?,
        fixed => fixed,
    };
    for _ in 0..300 {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the emulator stopped as it started ({status})"));
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((child, port));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("the emulator did not start on port {port}"))
}

/// The `Port N` line the project's emulator prints first when asked for
/// port 0; its output is drained after it, so it never blocks on the pipe.
async fn reported_port(child: &mut Child, moto: &Path) -> Result<u16, String> {
    use tokio::io::AsyncBufReadExt;
    let output = child.stdout.take().ok_or("the emulator's output")?;
    let mut lines = tokio::io::BufReader::new(output).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
    let port = match first {
        Ok(Ok(Some(line))) => line
            .strip_prefix("Port ")
            .and_then(|port| port.trim().parse::<u16>().ok()),
        _ => None,
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    port.filter(|port| *port != 0).ok_or_else(|| {
        format!(
            "{} did not report the free port it bound: with an emulator other than the \
             project's (HUB_MOTO_SERVER), set HUB_EMULATOR_PORT to a fixed port",
            moto.display()
        )
    })
}
