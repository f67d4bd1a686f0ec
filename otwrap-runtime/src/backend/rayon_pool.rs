//! The `rayon` backend: a pool of `workers` threads in this process (kept
//! for the life of the process, one per size). Points are evaluated in
//! chunks and their events sent back a chunk at a time (or every few
//! milliseconds, whichever comes first), so progress, callbacks and the
//! cache advance as points finish without a channel message per point.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::config::Backend;
use crate::error::Error;
use crate::model::{evaluate_caught, Model};

use super::{local_location, Event, Executor, Job};

/// The longest a finished point waits before it is reported.
const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// The most points per chunk.
const MAX_CHUNK: usize = 4096;

pub(crate) struct RayonPool;

/// The process's pool of `workers` threads, built on first use.
pub(crate) fn pool(workers: usize) -> Result<Arc<rayon::ThreadPool>, Error> {
    static POOLS: Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == workers) {
        return Ok(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|i| format!("otwrap-rayon-{i}"))
        .build()
        .map_err(|e| Error::Backend {
            backend: "rayon",
            message: format!("cannot start {workers} threads: {e}"),
        })?;
    let pool = Arc::new(pool);
    pools.push((workers, Arc::clone(&pool)));
    Ok(pool)
}

/// Points per chunk: enough chunks for load balancing (16 per worker), no
/// more than [`MAX_CHUNK`].
pub(crate) fn chunk_len(points: usize, workers: usize) -> usize {
    (points / (workers.max(1) * 16)).clamp(1, MAX_CHUNK)
}

impl<M: Model> Executor<M> for RayonPool {
    fn execute(
        &self,
        job: &Job<'_, M>,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), Error> {
        let pool = pool(job.settings.workers)?;
        let chunk = chunk_len(job.todo.len(), job.settings.workers);
        let (tx, rx) = mpsc::channel::<Vec<Event<M::Output>>>();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                pool.install(|| {
                    job.todo.par_chunks(chunk).for_each_with(tx, |tx, indices| {
                        let mut events = Vec::with_capacity(indices.len());
                        let mut since = Instant::now();
                        for &index in indices {
                            if job.cancelled() {
                                break;
                            }
                            let outcome =
                                evaluate_caught::<M>(&job.inputs[index], &job.context(index))
                                    .map_err(|failed| {
                                        failed.into_parts(local_location(Backend::Rayon))
                                    });
                            job.note_outcome(&outcome);
                            events.push(Event::once(index, outcome));
                            // Slow points are reported one by one.
                            if since.elapsed() >= FLUSH_AFTER {
                                // The receiver only goes away when the driver
                                // itself is unwinding.
                                let _ = tx.send(std::mem::take(&mut events));
                                since = Instant::now();
                            }
                        }
                        if !events.is_empty() {
                            let _ = tx.send(events);
                        }
                    });
                });
            });
            for events in rx {
                for event in events {
                    sink(event);
                }
            }
        });
        Ok(())
    }
}
