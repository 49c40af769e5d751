//! qus: keeps binfmt_misc registrations for QEMU user-mode emulators correct.
//!
//! The shape is observe → plan → apply, over a shared vocabulary:
//! - [`model`]: the plain data every layer speaks (no I/O, imports nothing
//!   above it);
//! - [`observe`]: the one place that gathers input (kernel entries in match
//!   order, ownership records, native verdicts, the wanted set built from
//!   [`config`] and the emulator files, checked by [`safety`]);
//! - [`plan`]: pure, world + mode → states and actions;
//! - [`apply`]: carries actions out on [`binfmt`] and the records;
//!   [`engine`] runs one locked pass of all three;
//! - [`userns`]: where qus runs (host or a user namespace), for defaults;
//! - [`setup`]: what both shells share; [`cli`] (`qus`) and [`daemon`]
//!   (`qusd`) stand side by side on it.

pub(crate) mod apply;
pub mod arch;
pub mod binfmt;
pub(crate) mod child;
pub mod cli;
pub mod config;
pub mod daemon;
pub(crate) mod dirfd;
pub(crate) mod engine;
pub mod escape;
pub(crate) mod fsutil;
pub(crate) mod logging;
pub(crate) mod model;
pub(crate) mod observe;
pub(crate) mod plan;
pub mod probe;
pub(crate) mod safety;
pub(crate) mod setup;
pub(crate) mod state;
pub(crate) mod userns;
