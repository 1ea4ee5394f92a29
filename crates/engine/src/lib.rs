//! rill-engine

pub mod ring;
pub(crate) mod sync;
