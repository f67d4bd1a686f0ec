//! The `rayon` backend: a pool of `workers` threads in this process. Points
//! are sent back one by one over a channel, so progress, callbacks and (later)
//! the cache advance as they finish.

use std::sync::mpsc;

use rayon::prelude::*;

use crate::config::Backend;
use crate::error::Error;
use crate::model::{evaluate_caught, EvalContext, Model};

use super::{local_location, Event, Executor, Job};

pub(crate) struct RayonPool;

impl<M: Model> Executor<M> for RayonPool {
    fn execute(
        &self,
        job: &Job<'_, M>,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), Error> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(job.settings.workers)
            .thread_name(|i| format!("otwrap-rayon-{i}"))
            .build()
            .map_err(|e| Error::Backend {
                backend: "rayon",
                message: format!("cannot start {} threads: {e}", job.settings.workers),
            })?;
        let (tx, rx) = mpsc::channel::<Event<M::Output>>();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                pool.install(|| {
                    job.todo.par_iter().for_each_with(tx, |tx, &index| {
                        if job.cancelled() {
                            return;
                        }
                        let outcome =
                            evaluate_caught::<M>(&job.inputs[index], &EvalContext::new(index))
                                .map_err(|failed| {
                                    failed.into_parts(local_location(Backend::Rayon))
                                });
                        job.note_outcome(&outcome);
                        // The receiver only goes away when the driver itself
                        // is unwinding; nothing is left to report to then.
                        let _ = tx.send(Event { index, outcome });
                    });
                });
            });
            for event in rx {
                sink(event);
            }
        });
        Ok(())
    }
}
