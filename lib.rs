#![doc = include_str!("README.md")]

pub use rill_engine as engine;
pub use rill_group as group;
