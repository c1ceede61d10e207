//! The stack shared by the tests of one binary (`Hub::shared`).
//!
//! Starting the local stack (the emulator, every function, the demo clients
//! and subscribers) is most of an end-to-end test's time, and tests run on
//! several runtimes (one per `#[tokio::test]`), so a shared stack is owned
//! by a plain thread, not by a runtime: the thread starts hub-local and
//! waits on it until the binary exits.
//! Linux's parent-death signal, set for that thread, then stops the stack.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

/// Where a shared stack listens, and its state directory (demo client keys).
pub(crate) struct SharedStack {
    pub api: String,
    pub emulator: String,
    pub state_dir: PathBuf,
}

static STACK: OnceLock<SharedStack> = OnceLock::new();

/// Prefix of a shared stack's state directory, followed by the test
/// binary's process id.
const STATE_DIR_PREFIX: &str = "hub-e2e-shared-";

/// The binary's shared stack, started on first use.
pub(crate) async fn stack() -> &'static SharedStack {
    // Starting blocks (a thread reads hub-local's output until it is ready),
    // and the tests asking at the same time wait for the one start.
    tokio::task::spawn_blocking(|| STACK.get_or_init(start))
        .await
        .unwrap_or_else(|failed| panic!("the shared stack did not start: {failed}"))
}

fn start() -> SharedStack {
    remove_state_dirs_of_ended_runs();
    let binary = super::require(
        super::target_dir().join("debug/hub-local"),
        "run `cargo build --workspace --bins` (infra/test.sh does) before the end-to-end tests",
    );
    let state_dir = std::env::temp_dir().join(format!("{STATE_DIR_PREFIX}{}", std::process::id()));
    if let Err(error) = std::fs::create_dir_all(&state_dir) {
        panic!("{}: {error}", state_dir.display());
    }
    // Its output goes to a file, not a pipe: nothing reads a pipe once the
    // test binary has exited, and hub-local still writes as it stops.
    let output_path = state_dir.join("hub-local.out");
    let output = std::fs::File::create(&output_path)
        .unwrap_or_else(|error| panic!("{}: {error}", output_path.display()));
    let mut command = Command::new(binary);
    command
        .args(["run", "--template"])
        .arg(super::repository().join("template.yaml"))
        .env("HUB_API_PORT", "0")
        .env("HUB_EMULATOR_PORT", "0")
        .env("HUB_LOCAL_STATE_DIR", &state_dir)
        .env_remove("HUB_FAULTS")
        .stdout(output)
        .stderr(Stdio::inherit());
    end_with_the_calling_thread(&mut command);

    let (started, has_started) = mpsc::channel::<Result<u32, String>>();
    let owner = std::thread::Builder::new()
        .name("shared-stack".to_owned())
        .spawn(move || {
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(error) => {
                    let _ = started.send(Err(format!("starting hub-local: {error}")));
                    return;
                }
            };
            let _ = started.send(Ok(child.id()));
            // This thread is the stack's parent: it waits for as long as the
            // stack runs, which is until the test binary exits.
            let _ = child.wait();
        });
    if let Err(error) = owner {
        panic!("a thread for the shared stack: {error}");
    }
    match has_started.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(_pid)) => {}
        Ok(Err(reason)) => panic!("the shared stack: {reason}"),
        Err(_) => panic!("the shared stack's hub-local did not start"),
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let written = std::fs::read_to_string(&output_path).unwrap_or_default();
        if written.lines().any(|line| line.starts_with("Ready.")) {
            let mut addresses = super::StackAddresses::default();
            written.lines().for_each(|line| addresses.read(line));
            let Some((api, emulator)) = addresses.both() else {
                panic!("the shared stack did not print its addresses:\n{written}");
            };
            return SharedStack {
                api,
                emulator,
                state_dir,
            };
        }
        if Instant::now() > deadline {
            panic!("the shared stack was not ready within 180 s:\n{written}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The stack gets SIGTERM (and stops its functions and emulator) when the
/// thread that started it ends, which for a shared stack's owner thread is
/// when the test binary exits, however it exits.
#[cfg(target_os = "linux")]
fn end_with_the_calling_thread(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe, as a pre_exec hook must be.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// Elsewhere there is no parent-death signal: the stack outlives the run
/// and must be stopped by hand.
#[cfg(not(target_os = "linux"))]
fn end_with_the_calling_thread(_command: &mut Command) {}

/// State directories of shared stacks whose test binary has ended: a
/// stack stopped by a signal cannot remove its own. (Linux only: it tells
/// an ended run by its missing /proc entry.)
fn remove_state_dirs_of_ended_runs() {
    if cfg!(not(target_os = "linux")) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(STATE_DIR_PREFIX)
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
