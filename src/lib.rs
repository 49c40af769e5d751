//! qus: keeps binfmt_misc registrations for QEMU user-mode emulators correct.
//!
//! The shape is observe → plan → apply:
//! - [`config`] loads the drop-ins, [`observe`] finds emulators and checks
//!   them ([`safety`]), [`binfmt`] reads the kernel;
//! - [`plan`] (pure) decides the minimal actions;
//! - [`apply`] carries them out; [`engine`] ties one pass together;
//! - [`cli`] is the `qus` command, [`daemon`] the `qusd` event loop.

pub mod apply;
pub mod arch;
pub mod binfmt;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod escape;
pub mod logging;
pub mod observe;
pub mod plan;
pub mod probe;
pub mod safety;
pub mod state;
pub mod status;
