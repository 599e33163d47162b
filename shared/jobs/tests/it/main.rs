//! The job engine's tests, one binary: `engine` (delivery rules, with a job kind of parts kept in
//! memory) and `durable` (jobs on the `jobs` table through `Durable`, over SQLite).

mod durable;
mod engine;

use std::time::Duration;

use climate_infra::queue::Queue;

/// The dead-letter queue's depth once it reached `expected`, or after about five seconds.
async fn dead_letters(queue: &dyn Queue, expected: u64) -> u64 {
    let mut depth = 0;
    for _ in 0..200 {
        depth = queue.dead_letter_depth().await.expect("dead_letter_depth");
        if depth == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    depth
}
