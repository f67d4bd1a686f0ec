//! A check of the worker binary before anything is submitted: started here
//! in worker mode on the local transport, it must greet and know the model
//! (the same worker client as every pool worker says why not). A binary
//! without `#[otwrap::main]`, or one that does not define the model, is then
//! a clear error at once instead of hundreds of failed array tasks.

use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use crate::backend::pool::{News, Transport, WorkerId};
use crate::backend::processes::Local;
use crate::worker::client::{Heard, Phase, WorkerClient, HANDSHAKE_TIMEOUT};
use crate::worker::protocol::ModelRef;

/// Starts `exe` in worker mode and asks for `model`.
pub(crate) fn check_worker(exe: &Path, model: &str) -> Result<(), String> {
    let mut local = Local::new(exe.to_path_buf(), 1);
    let id = WorkerId {
        slot: 0,
        generation: 1,
    };
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    let mut client = WorkerClient::new(ModelRef::Compiled(model.to_string()), started);
    let answer = (|| {
        for (_, outcome) in local.start(&[id], &tx) {
            outcome?;
        }
        loop {
            let wait = (started + HANDSHAKE_TIMEOUT).saturating_duration_since(Instant::now());
            let (_, news) = rx.recv_timeout(wait).map_err(|_| {
                format!(
                    "did not answer the worker handshake within {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                )
            })?;
            let heard = match news {
                News::Stderr(line) => {
                    client.stderr_line(line);
                    continue;
                }
                News::Closed(_) => {
                    let ending = local.ending(id);
                    return Err(client.start_failure(&ending));
                }
                News::Greeting(greeting) => client.greeted(greeting).map(|()| Heard::Nothing),
                News::Garbled(why) => return Err(why),
                News::Message(message) => client.hear(message, Instant::now()),
                News::Messages(messages) => {
                    let mut heard = Ok(Heard::Nothing);
                    for message in messages {
                        heard = client.hear(message, Instant::now());
                        if !matches!(heard, Ok(Heard::Nothing)) {
                            break;
                        }
                    }
                    heard
                }
            };
            match heard {
                Ok(Heard::Ready) => return Ok(()),
                Ok(_) => {}
                Err(refusal) => return Err(refusal.into_message()),
            }
            if client.has_outbox() {
                local.send(id, &client.take_outbox())?;
            }
        }
    })();
    if answer.is_ok() && client.phase() == Phase::Ready {
        client.shutdown();
        let _ = local.send(id, &client.take_outbox());
        local.retire(id);
    } else {
        local.kill(id);
        let _ = local.ending(id);
    }
    answer.map_err(|message| {
        format!(
            "the worker program {} {message} (array tasks run this program: its `main` must carry \
             `#[otwrap::main]`; set `worker_exe` / OTWRAP_WORKER_EXE if the model lives in another binary)",
            exe.display()
        )
    })
}
