//! Log lines to stderr, for the long-running `rill serve` (the other commands report errors
//! themselves). `RILL_LOG=debug` shows more, `RILL_LOG=warn` less; the default is `info`.

use std::io::Write;

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            // Nothing better to do if stderr is gone.
            let _ = writeln!(
                std::io::stderr().lock(),
                "rill: {}: {}",
                record.level().as_str().to_lowercase(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

pub fn init() {
    let level = std::env::var("RILL_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(log::LevelFilter::Info);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
