//! End-to-end tests: the real binaries, real services, real clients.
//!
//! One test binary (fast to build, one place to look); modules by theme.

mod api_errors;
mod architecture;
mod deploy;
mod distributed;
mod faults;
mod jobs;
mod providers;
mod read;
mod resume;
mod scheduling;
mod security;
mod standalone;
