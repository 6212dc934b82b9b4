//! One stderr line per boot step, with the step's duration and the time since init started.
//!
//! Format (stable; `bench/init_boot.sh` parses it):
//! `init: [  12.345 ms] <step> <duration> ms: <detail>`. Details carry names, sizes,
//! addresses and measurements, never a secret value: callers pass only those.

use std::fmt;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// Timestamps boot steps relative to init's start.
#[derive(Debug, Clone, Copy)]
pub struct StepLog {
    start: Instant,
}

impl StepLog {
    /// A log whose clock starts at `start` (taken first thing in `main`).
    pub fn new(start: Instant) -> Self {
        Self { start }
    }

    /// Logs a finished step that took `took`.
    pub fn step(&self, step: &str, took: Duration, detail: fmt::Arguments<'_>) {
        line(format_args!(
            "init: [{:>9.3} ms] {step} {:.3} ms: {detail}",
            millis(self.start.elapsed()),
            millis(took)
        ));
    }

    /// Logs something that is not a timed step (a warning, a retry).
    pub fn note(&self, detail: fmt::Arguments<'_>) {
        line(format_args!(
            "init: [{:>9.3} ms] {detail}",
            millis(self.start.elapsed())
        ));
    }
}

/// Runs `f`, then logs `step` with its duration and the detail `describe` makes of the result.
pub fn timed<T, E>(
    log: &StepLog,
    step: &str,
    f: impl FnOnce() -> Result<T, E>,
    describe: impl FnOnce(&T) -> String,
) -> Result<T, E> {
    let started = Instant::now();
    let value = f()?;
    log.step(
        step,
        started.elapsed(),
        format_args!("{}", describe(&value)),
    );
    Ok(value)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn line(args: fmt::Arguments<'_>) {
    // One write per line so concurrent writers (the KMS in the same terminal) do not interleave
    // mid-line; a closed stderr must not abort the boot.
    let text = format!("{args}\n");
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
