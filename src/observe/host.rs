//! The running host: where its files are ([`Roots`]) and the facts qus
//! reads from them at most once per [`System`](super::System) (this very
//! executable's header, whether the kernel passes `P` on). They live
//! in the system value, not in globals, so one process can observe two
//! hosts (tests, a chroot) and nothing is decided behind a caller's back.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::arch;
use crate::model::{Host, HostView};

/// Where the host's own files are. [`Roots::host`] is the running system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// This very executable: it stands for the host's own programs.
    pub own_exe: PathBuf,
    /// The kernel's boot id: native verdicts are cached per boot.
    pub boot_id: PathBuf,
    /// Where distributions ship their binfmt.d files.
    pub distro_binfmt_d: Vec<PathBuf>,
    /// Where distributions put the interpreters of their own binfmt_misc
    /// entries (Debian and Ubuntu's `qemu-user-static` wrappers).
    pub distro_interpreter_dirs: Vec<PathBuf>,
}

impl Roots {
    /// The running system's.
    pub fn host() -> Roots {
        Roots {
            own_exe: "/proc/self/exe".into(),
            boot_id: "/proc/sys/kernel/random/boot_id".into(),
            distro_binfmt_d: vec!["/usr/lib/binfmt.d".into(), "/lib/binfmt.d".into()],
            distro_interpreter_dirs: vec![
                "/usr/libexec/qemu-binfmt/".into(),
                "/usr/lib/qemu-binfmt/".into(),
            ],
        }
    }
}

impl Default for Roots {
    fn default() -> Roots {
        Roots::host()
    }
}

/// Facts read from the host when first needed, then kept.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    own_heads: OnceLock<Vec<Vec<u8>>>,
    p_bit: OnceLock<bool>,
}

impl HostFacts {
    /// The facts the wants are decided from, read now if not yet.
    pub fn view(&self, roots: &Roots) -> HostView<'_> {
        HostView {
            kernel_has_p_bit: self.kernel_has_p_bit(),
            host_heads: self.own_heads(roots),
        }
    }

    /// This executable's header as both ELF types (non-PIE and PIE
    /// programs of the host); empty when unreadable.
    pub fn own_heads(&self, roots: &Roots) -> &[Vec<u8>] {
        self.own_heads.get_or_init(|| {
            crate::binfmt::elf::read_head(&roots.own_exe)
                .map(|h| crate::binfmt::elf::both_types(&h.bytes))
                .unwrap_or_default()
        })
    }

    /// Does this kernel tell interpreters about `P` (Linux 5.12+)? Said
    /// once when it does not.
    fn kernel_has_p_bit(&self) -> bool {
        *self.p_bit.get_or_init(|| {
            let (release, ok) = crate::userns::kernel_at_least(5, 12);
            if !ok {
                tracing::warn!(
                    "Linux {release} predates 5.12: QEMU cannot see the P flag there and would \
                     shift every program's arguments, so qus registers without P"
                );
            }
            ok
        })
    }
}

/// The running host, or `machine` when given (for tests and for preparing
/// configuration for another host).
pub fn detect_host(machine: Option<&str>) -> Host {
    let machine = machine.map_or_else(arch::kernel_machine, str::to_string);
    Host {
        family: arch::host_family(&machine),
        machine,
    }
}
