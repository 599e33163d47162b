//! Watching a job: the stream of its states that live progress (Server-Sent Events) is made
//! of, for ingestion runs and durable jobs alike.
//!
//! The state lives in the database, where every worker writes it (heartbeats carry progress),
//! so a watcher on any API replica sees every change by looking again: [`watch`] looks every
//! `every`, yields each state that differs from the last one it yielded, and ends after the
//! terminal state, when the job is gone, or when `stop` fires (a shutting-down server ends its
//! streams; clients reconnect). A failed look (a database blip) is logged and retried, never
//! the end of the stream.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use climate_domain::ids::JobId;
use climate_domain::run::{Progress, RunStatus};
use climate_infra::db::{Database, JobRecord, RunError};
use futures::Stream;
use tokio_util::sync::CancellationToken;

/// What one look at a job found.
#[derive(Debug, Clone, PartialEq)]
pub enum Look<T> {
    /// The job is not finished; this is its state.
    Running(T),
    /// The job has finished; this is its last state.
    Finished(T),
    /// The job does not exist (any more).
    Gone,
}

/// What a watch yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed<T> {
    /// The job's state changed (the first look counts as a change).
    Changed(T),
    /// The job's terminal state; the stream ends after it.
    Finished(T),
}

/// The states of a job as `look` reports them: the first at once, then every change seen by
/// looking every `every`, then the terminal one. Ends after [`Observed::Finished`], when `look`
/// answers [`Look::Gone`], or when `stop` is cancelled.
pub fn watch<T, F, Fut, E>(
    look: F,
    every: Duration,
    stop: CancellationToken,
) -> impl Stream<Item = Observed<T>> + Send
where
    T: PartialEq + Clone + Send + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Look<T>, E>> + Send,
    E: std::fmt::Display,
{
    struct State<F, T> {
        look: F,
        last: Option<T>,
        first: bool,
        done: bool,
    }
    let start = State {
        look,
        last: None,
        first: true,
        done: false,
    };
    futures::stream::unfold(start, move |mut s| {
        let stop = stop.clone();
        async move {
            if s.done {
                return None;
            }
            loop {
                if !std::mem::take(&mut s.first) {
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        () = stop.cancelled() => return None,
                    }
                }
                match (s.look)().await {
                    Ok(Look::Gone) => return None,
                    Ok(Look::Finished(t)) => {
                        s.done = true;
                        return Some((Observed::Finished(t), s));
                    }
                    Ok(Look::Running(t)) if s.last.as_ref() != Some(&t) => {
                        s.last = Some(t.clone());
                        return Some((Observed::Changed(t), s));
                    }
                    Ok(Look::Running(_)) => {}
                    Err(e) => tracing::debug!(error = %e, "watching a job: a look failed"),
                }
            }
        }
    })
}

/// What a watcher of a durable job is shown: the parts of [`JobRecord`] a change of which is
/// news (not the lease renewals of its heartbeats).
#[derive(Debug, Clone, PartialEq)]
pub struct JobUpdate {
    /// The job.
    pub job_id: JobId,
    /// Its kind.
    pub kind: String,
    /// Its status.
    pub status: RunStatus,
    /// Its progress.
    pub progress: Progress,
    /// Attempts so far.
    pub attempts: u32,
    /// The last error, if any.
    pub error: Option<RunError>,
}

impl From<&JobRecord> for JobUpdate {
    fn from(job: &JobRecord) -> Self {
        Self {
            job_id: job.job_id,
            kind: job.kind.clone(),
            status: job.status,
            progress: job.progress.clone(),
            attempts: job.attempts,
            error: job.error.clone(),
        }
    }
}

/// [`watch`] over a durable job in `db`.
pub fn job_updates(
    db: Arc<dyn Database>,
    job_id: JobId,
    every: Duration,
    stop: CancellationToken,
) -> impl Stream<Item = Observed<JobUpdate>> + Send {
    let look = move || {
        let db = db.clone();
        async move {
            Ok::<_, climate_infra::db::DbError>(match db.get_job(job_id).await? {
                None => Look::Gone,
                Some(job) if job.status.is_terminal() => Look::Finished(JobUpdate::from(&job)),
                Some(job) => Look::Running(JobUpdate::from(&job)),
            })
        }
    };
    watch(look, every, stop)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use futures::StreamExt;

    use super::*;

    /// A `look` that answers from a script, one answer per look.
    fn scripted(
        answers: Vec<Result<Look<u32>, &'static str>>,
    ) -> impl FnMut() -> std::future::Ready<Result<Look<u32>, &'static str>> + Send + 'static {
        let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
        move || {
            let next = answers
                .lock()
                .expect("script")
                .pop_front()
                .unwrap_or(Ok(Look::Gone));
            std::future::ready(next)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn yields_each_change_once_survives_failed_looks_and_ends_with_the_job() {
        let look = scripted(vec![
            Ok(Look::Running(1)),
            Ok(Look::Running(1)),
            Err("database blip"),
            Ok(Look::Running(2)),
            Ok(Look::Running(2)),
            Ok(Look::Finished(3)),
            Ok(Look::Running(4)),
        ]);
        let seen: Vec<_> = watch(look, Duration::from_millis(250), CancellationToken::new())
            .collect()
            .await;
        assert_eq!(
            seen,
            vec![
                Observed::Changed(1),
                Observed::Changed(2),
                Observed::Finished(3)
            ],
            "repeats are not news, a failed look is not the end, nothing follows the end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_that_vanishes_or_a_stop_ends_the_stream() {
        let gone = scripted(vec![Ok(Look::Running(1)), Ok(Look::Gone)]);
        let seen: Vec<_> = watch(gone, Duration::from_millis(10), CancellationToken::new())
            .collect()
            .await;
        assert_eq!(seen, vec![Observed::Changed(1)]);

        let stop = CancellationToken::new();
        let forever = || std::future::ready(Ok::<_, &str>(Look::Running(7)));
        let mut stream = Box::pin(watch(forever, Duration::from_secs(1), stop.clone()));
        assert_eq!(stream.next().await, Some(Observed::Changed(7)));
        stop.cancel();
        assert_eq!(
            stream.next().await,
            None,
            "stopped while waiting for a change"
        );
    }
}
