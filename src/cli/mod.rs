//! The subcommands other than `run`, one file each.

pub(crate) mod bench;
pub(crate) mod generate;
pub(crate) mod rank;
