//! A local Lambda Runtime API for each function: the function's real binary
//! runs as a child process, polls `/runtime/invocation/next` as it does on
//! Lambda, and answers on `/response` or `/error`. A crash or a timeout
//! fails the invocation and the process is started again, as Lambda would.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::process::Command;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::template::{ACCOUNT_ID, REGION};

/// Why an invocation produced no response.
#[derive(Debug)]
pub enum InvokeError {
    /// The handler returned an error (Lambda's function error).
    Function(String),
    /// The process crashed or did not answer within the timeout.
    Runtime(String),
}

/// As it is logged: a function error by its `errorType` only, since its
/// message (a panic's, say) may quote what the function was given.
impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeError::Function(detail) => {
                #[derive(serde::Deserialize)]
                struct LambdaError {
                    #[serde(rename = "errorType")]
                    error_type: String,
                }
                match serde_json::from_str::<LambdaError>(detail) {
                    Ok(error) => write!(f, "function error: {}", error.error_type),
                    // Not the runtime's report: one of the stack's own texts.
                    Err(_) => write!(f, "function error: {detail}"),
                }
            }
            InvokeError::Runtime(detail) => write!(f, "runtime error: {detail}"),
        }
    }
}

type Reply = oneshot::Sender<Result<Bytes, InvokeError>>;

struct Invocation {
    id: String,
    payload: Bytes,
    reply: Reply,
}

struct Shared {
    name: String,
    timeout: Duration,
    queue: Mutex<mpsc::UnboundedReceiver<Invocation>>,
    in_flight: Mutex<HashMap<String, Reply>>,
}

/// A running function: invoke it with an event, get its response.
#[derive(Clone)]
pub struct Function {
    shared: Arc<Shared>,
    sender: mpsc::UnboundedSender<Invocation>,
    restart: Arc<tokio::sync::Notify>,
}

pub struct FunctionConfig {
    /// Set to true when the hub stops: the function's process is ended first.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    pub name: String,
    pub binary: PathBuf,
    pub timeout: Duration,
    pub memory_mb: u64,
    pub environment: Vec<(String, String)>,
}

impl Function {
    /// Starts the runtime API and the function's process, which is restarted
    /// whenever it exits, until the hub stops.
    pub async fn start(config: FunctionConfig) -> Result<Self, String> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            name: config.name.clone(),
            timeout: config.timeout,
            queue: Mutex::new(receiver),
            in_flight: Mutex::new(HashMap::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the runtime API of {}: {e}", config.name))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let api = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, api).await;
        });
        if !config.binary.exists() {
            return Err(format!(
                "{} is not built: run `cargo build --workspace` first",
                config.binary.display()
            ));
        }
        let restart = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(supervise(
            config,
            address.to_string(),
            shared.clone(),
            restart.clone(),
        ));
        Ok(Function {
            shared,
            sender,
            restart,
        })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub async fn invoke(&self, payload: Vec<u8>) -> Result<Bytes, InvokeError> {
        let (reply, answer) = oneshot::channel();
        let id = uuid::Uuid::new_v4().to_string();
        self.sender
            .send(Invocation {
                id: id.clone(),
                payload: Bytes::from(payload),
                reply,
            })
            .map_err(|_| InvokeError::Runtime("the function has stopped".into()))?;
        // The queue wait counts too: locally one instance serves each function.
        match tokio::time::timeout(self.shared.timeout + Duration::from_secs(30), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(InvokeError::Runtime("the invocation was dropped".into())),
            Err(_) => {
                self.shared.in_flight.lock().await.remove(&id);
                self.restart.notify_one();
                Err(InvokeError::Runtime(format!(
                    "{} timed out",
                    self.shared.name
                )))
            }
        }
    }
}

/// Resolves once the hub is stopping (or the hub is gone).
async fn until_stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let stop = *stopping.borrow_and_update();
        if stop || stopping.changed().await.is_err() {
            return;
        }
    }
}

async fn supervise(
    config: FunctionConfig,
    runtime_api: String,
    shared: Arc<Shared>,
    restart: Arc<tokio::sync::Notify>,
) {
    loop {
        let mut command = Command::new(&config.binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &config.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                config.memory_mb.to_string(),
            )
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .envs(
                config
                    .environment
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .kill_on_drop(true);
        end_with_the_hub(&mut command);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                eprintln!("[hub] cannot start {}: {error}", config.name);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut stopping = config.stopping.clone();
        let reason = tokio::select! {
            status = child.wait() => format!("{} exited ({})", config.name, status.map(|s| s.to_string()).unwrap_or_default()),
            _ = restart.notified() => {
                let _ = child.kill().await;
                format!("{} was stopped after a timeout", config.name)
            }
            _ = until_stopped(&mut stopping) => {
                let _ = child.kill().await;
                return;
            }
        };
        eprintln!("[hub] {reason}; restarting it");
        for (_, reply) in shared.in_flight.lock().await.drain() {
            let _ = reply.send(Err(InvokeError::Runtime(reason.clone())));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let invocation = {
        let mut queue = shared.queue.lock().await;
        queue.recv().await
    };
    let Some(invocation) = invocation else {
        // The hub is stopping: the function is ended with it, so it waits.
        return std::future::pending().await;
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + shared.timeout;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", invocation.id.clone());
    set(
        "lambda-runtime-deadline-ms",
        deadline.as_millis().to_string(),
    );
    set(
        "lambda-runtime-invoked-function-arn",
        format!(
            "arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{}",
            shared.name
        ),
    );
    set(
        "lambda-runtime-trace-id",
        format!("Root=1-{}", invocation.id),
    );
    set("content-type", "application/json".into());
    shared
        .in_flight
        .lock()
        .await
        .insert(invocation.id, invocation.reply);
    (StatusCode::OK, headers, invocation.payload).into_response()
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    match shared.in_flight.lock().await.remove(&id) {
        Some(reply) => {
            let _ = reply.send(Ok(body));
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    match shared.in_flight.lock().await.remove(&id) {
        Some(reply) => {
            let _ = reply.send(Err(InvokeError::Function(
                String::from_utf8_lossy(&body).into_owned(),
            )));
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    eprintln!(
        "[hub] {} failed to initialise: {}",
        shared.name,
        String::from_utf8_lossy(&body)
    );
    StatusCode::ACCEPTED
}

/// Makes the kernel stop a child process if the hub dies, so that no
/// function or emulator outlives it (Linux's parent-death signal). Elsewhere
/// the children still stop when the hub ends normally (`kill_on_drop`).
#[cfg(target_os = "linux")]
pub fn end_with_the_hub(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe, as a pre_exec hook must be.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn end_with_the_hub(_command: &mut Command) {}
