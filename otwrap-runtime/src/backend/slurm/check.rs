//! A check of the worker binary before anything is submitted: started here
//! in worker mode, it must greet and know the model. A binary without
//! `#[otwrap::main]`, or one that does not define the model, is then a
//! clear error at once instead of hundreds of failed array tasks.

use std::io::{BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::worker::protocol::{
    read_frame, read_greeting, worker_env_value, write_frame, FromWorker, ToWorker,
    PROTOCOL_VERSION, WORKER_ENV,
};

const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `exe` in worker mode and asks for `model`.
pub(crate) fn check_worker(exe: &Path, model: &str) -> Result<(), String> {
    let mut child = Command::new(exe)
        .env(WORKER_ENV, worker_env_value())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the worker program {}: {e}", exe.display()))?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "the worker program {} started without its pipes",
            exe.display()
        ));
    };
    let model = model.to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let answer = (|| {
            match read_greeting(&mut reader)? {
                FromWorker::Hello { protocol, version, .. } if protocol != PROTOCOL_VERSION => {
                    return Err(format!(
                        "speaks otwrap worker protocol {protocol} (otwrap {version}), this driver {PROTOCOL_VERSION}: \
                         rebuild both with the same otwrap version"
                    ))
                }
                _ => {}
            }
            let init = ToWorker::Init {
                protocol: PROTOCOL_VERSION,
                model,
            };
            write_frame(&mut stdin, &init)
                .and_then(|()| stdin.flush())
                .map_err(|e| format!("closed its input during the handshake ({e})"))?;
            let reply = read_frame::<FromWorker>(&mut reader).map_err(|e| e.to_string())?;
            let _ = write_frame(&mut stdin, &ToWorker::Shutdown).and_then(|()| stdin.flush());
            match reply {
                Some(FromWorker::Ready) => Ok(()),
                Some(FromWorker::UnknownModel { model, known }) => Err(format!(
                    "does not contain the model `{model}` (it knows: {}); point `worker_exe` at the binary that defines it",
                    if known.is_empty() { "no model".to_string() } else { known.join(", ") }
                )),
                Some(other) => Err(format!("answered {other:?} to the handshake")),
                None => Err("stopped during the handshake".to_string()),
            }
        })();
        let _ = tx.send(answer);
    });
    let answer = rx.recv_timeout(CHECK_TIMEOUT).unwrap_or_else(|_| {
        Err(format!(
            "did not answer the worker handshake within {} s",
            CHECK_TIMEOUT.as_secs()
        ))
    });
    if answer.is_ok() {
        // It was asked to shut down: give it a moment to exit by itself.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    answer.map_err(|message| {
        format!(
            "the worker program {} {message} (array tasks run this program: its `main` must carry \
             `#[otwrap::main]`; set `worker_exe` / OTWRAP_WORKER_EXE if the model lives in another binary)",
            exe.display()
        )
    })
}
