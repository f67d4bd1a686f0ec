//! The `serial` backend: every point in the calling thread, in order.

use crate::config::Backend;
use crate::error::Error;
use crate::model::{evaluate_caught, Model};

use super::{local_location, Event, Executor, Job};

pub(crate) struct Serial;

impl<M: Model> Executor<M> for Serial {
    fn execute(
        &self,
        job: &Job<'_, M>,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), Error> {
        for &index in job.todo {
            if job.cancelled() {
                break;
            }
            let outcome = evaluate_caught::<M>(&job.inputs[index], &job.context(index))
                .map_err(|failed| failed.into_parts(local_location(Backend::Serial)));
            sink(Event::once(index, outcome));
        }
        Ok(())
    }
}
