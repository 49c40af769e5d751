//! binfmt_misc: the entry model (pure) and the kernel I/O.

pub(crate) mod elf;
pub mod entry;
pub mod fs;

pub use entry::{EntrySpec, Flags, KernelEntries, KernelEntry, Matcher};
pub use fs::{BinfmtMisc, Registrar};
