//! Progress of the long operator commands (`export`, `backup`, `restore`): objects and bytes
//! done out of a known total, the rate and the time left, redrawn on one line of a terminal at
//! most a few times a second. When standard error is not a terminal (a log file, a CI job, a
//! pipe) nothing is drawn: the command prints its one-line summary and logs stay quiet.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(200);

/// A progress line for `total_objects` objects of `total_bytes` bytes.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total_objects: u64,
    total_bytes: u64,
    objects: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    /// When the line was last drawn; `None` when nothing is drawn (not a terminal).
    drawn: Option<Mutex<Instant>>,
}

impl Progress {
    /// A progress line drawn on standard error when it is a terminal.
    pub fn new(label: impl Into<String>, total_objects: u64, total_bytes: u64) -> Self {
        Self::with_terminal(
            label,
            total_objects,
            total_bytes,
            std::io::stderr().is_terminal(),
        )
    }

    /// A progress line that draws only when `terminal` (tests, and callers that know).
    pub fn with_terminal(
        label: impl Into<String>,
        total_objects: u64,
        total_bytes: u64,
        terminal: bool,
    ) -> Self {
        let started = Instant::now();
        Self {
            label: label.into(),
            total_objects,
            total_bytes,
            objects: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started,
            drawn: terminal.then(|| Mutex::new(started.checked_sub(REDRAW).unwrap_or(started))),
        }
    }

    /// Counts one object of `bytes` bytes done, and redraws when it is time.
    pub fn add(&self, bytes: u64) {
        self.objects.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let Some(drawn) = &self.drawn else { return };
        let Ok(mut last) = drawn.lock() else { return };
        if last.elapsed() >= REDRAW {
            *last = Instant::now();
            draw(&format!("\r\x1b[2K{}", self.line()));
        }
    }

    /// Objects and bytes done so far.
    pub fn done(&self) -> (u64, u64) {
        (
            self.objects.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Clears the line (when one is drawn).
    pub fn finish(&self) {
        if self.drawn.is_some() {
            draw("\r\x1b[2K");
        }
    }

    /// `label: 120/300 objects, 1.2 MiB/3.0 MiB, 4.1 MiB/s, 2s left`.
    pub fn line(&self) -> String {
        let (objects, bytes) = self.done();
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
        let left = if rate > 0.0 && self.total_bytes >= bytes {
            format!(
                ", {} left",
                duration((self.total_bytes - bytes) as f64 / rate)
            )
        } else {
            String::new()
        };
        format!(
            "{}: {objects}/{} objects, {}/{}, {}/s{left}",
            self.label,
            self.total_objects,
            size(bytes),
            size(self.total_bytes),
            size(rate as u64),
        )
    }
}

fn draw(s: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(s.as_bytes());
    let _ = err.flush();
}

/// `1023 B`, `1.5 KiB`, `3.2 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `45s`, `3m05s`, `2h10m`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(59.6), "1m00s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(7800.0), "2h10m");
    }

    #[test]
    fn the_line_counts_what_was_added_against_the_totals() {
        let p = Progress::with_terminal("backup", 3, 3 * 2048, false);
        p.add(2048);
        p.add(2048);
        assert_eq!(p.done(), (2, 4096));
        let line = p.line();
        assert!(
            line.starts_with("backup: 2/3 objects, 4.0 KiB/6.0 KiB, "),
            "{line}"
        );
        assert!(line.contains("/s"), "{line}");
    }
}
