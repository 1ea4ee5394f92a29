//! What the engine's integration tests share.

use rill_engine::IoMode;

/// The backend `RILL_IO` asks for (`sync` or `auto`, the default): CI runs the engine tests a
/// second time with `RILL_IO=sync`. The library reads no environment variable itself; the
/// tests do, and pass it in `EngineConfig::io`.
pub fn io_from_env() -> IoMode {
    match std::env::var("RILL_IO") {
        Ok(mode) => mode.parse().unwrap_or_else(|e| panic!("RILL_IO: {e}")),
        Err(_) => IoMode::Auto,
    }
}
