//! The job engine's tests, one binary: `engine` (delivery rules, with a job kind of parts kept in
//! memory) and `durable` (jobs on the `jobs` table through `Durable`, over SQLite).

mod durable;
mod engine;
