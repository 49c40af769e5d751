//! Does the running kernel load an arch's programs itself? Asked without
//! running one.
//!
//! qus execs an ELF header of the arch (taken from the arch's probe, so
//! `e_machine`, class, byte order and `e_flags` are the real ones) whose
//! program interpreter (`PT_INTERP`) is a file that is not ELF. A kernel
//! whose loader takes the arch opens that interpreter, finds it is not
//! ELF and fails the exec with `ELIBBAD`, before the point where the
//! process would be replaced; a kernel that does not take the arch fails
//! it with `ENOEXEC` (exec format error), as it would any such program.
//!
//! The exec is made by qus itself, so it costs about 20 µs; in a child it
//! costs over 130 µs here, nearly as much as running the probe (creating
//! and ending a process dominates). That is safe because nothing can run:
//! the kernel's own loader fails it as above, and binfmt_misc is kept out
//! of it. The header's last `e_ident` padding byte is set, which the
//! kernel ignores and every QEMU-style entry (qemu-binfmt-conf.sh, the
//! distributions, systemd's binfmt.d, tonistiigi/binfmt, FEX, box64)
//! refuses: their masks demand zero there. And qus execs in-process only
//! when it has listed the binfmt_misc instance the kernel consults for it
//! and no enabled entry there takes the header; otherwise the question is
//! asked in a vfork child, where an entry that takes it starts its
//! interpreter, which is killed, and the answer is "caught".
//!
//! Anything else (memfds that may not be executed, no `/proc`) leaves the
//! question to the probe run.

use std::io::Write;
use std::os::unix::process::CommandExt;

use crate::probe::Probe;

/// What the kernel did with the arch's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoaderVerdict {
    /// Its own ELF loader took it: the arch is native.
    Loads,
    /// Exec format error: nothing takes the arch.
    Refuses,
    /// A binfmt_misc entry took it (one registered since qus looked):
    /// this cannot tell.
    Caught,
    /// Something else went wrong; run the probe instead.
    Unknown(String),
}

/// Would an enabled entry of the binfmt_misc instance the kernel consults
/// for this process take a program starting with these bytes?
pub type EntriesTake<'a> = &'a dyn Fn(&[u8]) -> bool;

/// Where the question may be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asking {
    /// Only by qus itself: `None` when it would take a child.
    HereOnly,
    /// By qus itself when that is safe, else in a child.
    HereOrChild,
}

/// Ask the kernel about the probe's arch. `entries_take`: whether an
/// enabled entry of the binfmt_misc instance the kernel consults for this
/// process would take a program starting with these bytes; `None` when
/// that instance could not be listed (then the exec runs in a child).
/// `None` only for [`Asking::HereOnly`] when a child would be needed.
pub fn check(
    probe: &Probe,
    entries_take: Option<EntriesTake>,
    asking: Asking,
) -> Option<LoaderVerdict> {
    match check_inner(probe, entries_take, asking) {
        Ok(v) => v,
        Err(e) => Some(LoaderVerdict::Unknown(e.to_string())),
    }
}

fn check_inner(
    probe: &Probe,
    entries_take: Option<EntriesTake>,
    asking: Asking,
) -> std::io::Result<Option<LoaderVerdict>> {
    use crate::probe::{exec_memfd, memfd};
    use rustix::fs::MemfdFlags;
    use std::os::fd::AsRawFd;
    // The interpreter: executable (memfds are created 0777), not ELF, and
    // as long as an ELF header (the kernel reads one whole, else EIO).
    let mut interp = exec_memfd("qus-not-elf", MemfdFlags::CLOEXEC)?;
    interp.write_all(&[b'#'; 128])?;
    let interp_path = format!("/proc/self/fd/{}", interp.as_raw_fd());
    let Some(header) = header_with_interp(probe.program, &interp_path) else {
        return Ok(Some(LoaderVerdict::Unknown(format!(
            "the {} probe is not an ELF file qus can read",
            probe.arch
        ))));
    };
    let here = entries_take.is_some_and(|takes| !takes(&header));
    if !here && asking == Asking::HereOnly {
        return Ok(None);
    }
    let mut program = exec_memfd(&format!("qus-loads-{}", probe.arch), MemfdFlags::CLOEXEC)?;
    program.write_all(&header)?;
    if here {
        return Ok(Some(exec_here(&program, probe)));
    }
    // Where a catching interpreter's output would go (not qus's stdout).
    let sink = memfd("qus-loads-output")?;
    let pinned = pin_to_this_cpu();
    let spawned = std::process::Command::new(format!("/proc/self/fd/{}", program.as_raw_fd()))
        .arg0(format!("qus-loads-{}", probe.arch))
        .stdin(sink.try_clone()?)
        .stdout(sink.try_clone()?)
        .stderr(sink)
        .process_group(0)
        .spawn();
    if let Some(all) = pinned {
        let _ = rustix::thread::sched_setaffinity(None, &all);
    }
    drop(interp);
    drop(program);
    let errno =
        |e: &std::io::Error, n: rustix::io::Errno| e.raw_os_error() == Some(n.raw_os_error());
    Ok(Some(match spawned {
        Err(e) if errno(&e, rustix::io::Errno::LIBBAD) => LoaderVerdict::Loads,
        Err(e) if errno(&e, rustix::io::Errno::NOEXEC) => LoaderVerdict::Refuses,
        Err(e) => LoaderVerdict::Unknown(format!("exec failed: {e}")),
        Ok(mut child) => {
            if let Some(pgid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            }
            let _ = child.wait();
            LoaderVerdict::Caught
        }
    }))
}

/// The exec, made by this process: it cannot succeed (see the module
/// docs), so it returns, with the kernel's answer.
fn exec_here(program: &std::fs::File, probe: &Probe) -> LoaderVerdict {
    use std::os::fd::AsRawFd;
    let Ok(arg0) = std::ffi::CString::new(format!("qus-loads-{}", probe.arch)) else {
        return LoaderVerdict::Unknown("bad arch name".into());
    };
    let argv = [arg0.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: argv and envp are NULL-terminated arrays of NUL-terminated
    // strings that outlive the call. The exec cannot take over this
    // process: the kernel's loader fails it before the point of no return
    // (the interpreter is not ELF), and no binfmt_misc entry the kernel
    // consults takes the header (checked by the caller, and the padding
    // byte keeps QEMU-style masks out).
    let ret = unsafe { libc::fexecve(program.as_raw_fd(), argv.as_ptr(), envp.as_ptr()) };
    let err = std::io::Error::last_os_error();
    debug_assert_eq!(ret, -1);
    match err.raw_os_error() {
        Some(libc::ELIBBAD) => LoaderVerdict::Loads,
        Some(libc::ENOEXEC) => LoaderVerdict::Refuses,
        _ => LoaderVerdict::Unknown(format!("exec failed: {err}")),
    }
}

/// Keep this thread (and so the child, which inherits it) on the CPU it
/// is on until the child is gone: the kernel would otherwise move the
/// child to another CPU at `execve` (exec balancing), and waking the
/// other CPU and coming back cost more than the whole failed exec.
/// Returns the CPUs to go back to.
fn pin_to_this_cpu() -> Option<rustix::thread::CpuSet> {
    let all = rustix::thread::sched_getaffinity(None).ok()?;
    let mut one = rustix::thread::CpuSet::new();
    one.set(rustix::thread::sched_getcpu());
    rustix::thread::sched_setaffinity(None, &one).ok()?;
    Some(all)
}

/// `PT_INTERP`.
const PT_INTERP: u64 = 3;

/// The probe's ELF header with one program header: `PT_INTERP` naming
/// `interp`, whose path follows it. `None` if the probe is not ELF.
fn header_with_interp(program: &[u8], interp: &str) -> Option<Vec<u8>> {
    let ident = program.get(..16)?;
    if &ident[..4] != b"\x7fELF" {
        return None;
    }
    let wide = match ident[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let big = match ident[5] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let (ehsize, phentsize) = if wide { (64, 56) } else { (52, 32) };
    let mut out = program.get(..ehsize)?.to_vec();
    // The last byte of e_ident's padding: ignored by the kernel, required
    // to be zero by every QEMU-style binfmt_misc mask.
    out[15] = 1;
    let name_at = ehsize + phentsize;
    let name_len = interp.len() + 1;
    // A field of `width` bytes at `at`, in the file's byte order.
    let put = |b: &mut Vec<u8>, at: usize, width: usize, v: u64| {
        let (be, le) = (v.to_be_bytes(), v.to_le_bytes());
        let bytes = if big { &be[8 - width..] } else { &le[..width] };
        b[at..at + width].copy_from_slice(bytes);
    };
    // The header: program headers right after it, no section headers.
    let (eh, phe) = (ehsize as u64, phentsize as u64);
    let (name_at, name_len) = (u64::try_from(name_at).ok()?, u64::try_from(name_len).ok()?);
    for (at, width, v) in header_fields(wide, eh, phe) {
        put(&mut out, at, width, v);
    }
    let ph = out.len();
    out.resize(ph + phentsize, 0);
    for (at, width, v) in interp_fields(wide, name_at, name_len) {
        put(&mut out, ph + at, width, v);
    }
    out.extend_from_slice(interp.as_bytes());
    out.push(0);
    Some(out)
}

/// The ELF header's fields after `e_ident` that differ from the probe's,
/// as (offset, width, value): program headers right after the header, no
/// section headers.
fn header_fields(wide: bool, eh: u64, phe: u64) -> [(usize, usize, u64); 8] {
    if wide {
        // e_phoff, e_shoff, e_ehsize, e_phentsize, e_phnum, e_shentsize,
        // e_shnum, e_shstrndx
        [
            (32, 8, eh),
            (40, 8, 0),
            (52, 2, eh),
            (54, 2, phe),
            (56, 2, 1),
            (58, 2, 0),
            (60, 2, 0),
            (62, 2, 0),
        ]
    } else {
        [
            (28, 4, eh),
            (32, 4, 0),
            (40, 2, eh),
            (42, 2, phe),
            (44, 2, 1),
            (46, 2, 0),
            (48, 2, 0),
            (50, 2, 0),
        ]
    }
}

/// The `PT_INTERP` program header's fields, as (offset, width, value).
fn interp_fields(wide: bool, name_at: u64, name_len: u64) -> [(usize, usize, u64); 6] {
    if wide {
        // p_type, p_flags (R), p_offset, p_filesz, p_memsz, p_align
        [
            (0, 4, PT_INTERP),
            (4, 4, 4),
            (8, 8, name_at),
            (32, 8, name_len),
            (40, 8, name_len),
            (48, 8, 1),
        ]
    } else {
        // p_type, p_offset, p_filesz, p_memsz, p_flags (R), p_align
        [
            (0, 4, PT_INTERP),
            (4, 4, name_at),
            (16, 4, name_len),
            (20, 4, name_len),
            (24, 4, 4),
            (28, 4, 1),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interpreter an ELF file names, read back the way the kernel
    /// does (through `crate::binfmt::elf`).
    fn interp_of(bytes: &[u8]) -> Option<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("elf");
        std::fs::write(&path, bytes).expect("write");
        crate::binfmt::elf::read_head(&path)
            .ok()?
            .loader()
            .map(str::to_string)
    }

    #[test]
    fn every_probe_becomes_a_header_naming_the_interpreter() {
        for p in crate::probe::PROBES {
            let h = header_with_interp(p.program, "/proc/self/fd/7").expect(p.arch);
            // Same class, byte order, type, machine and flags as the probe;
            // the padding marked.
            assert_eq!(h[..15], p.program[..15], "{}", p.arch);
            assert_eq!(h[15], 1, "{}", p.arch);
            assert_eq!(h[16..20], p.program[16..20], "{}", p.arch);
            let flags_at = if h[4] == 2 { 48 } else { 36 };
            assert_eq!(
                h[flags_at..flags_at + 4],
                p.program[flags_at..flags_at + 4],
                "{}",
                p.arch
            );
            assert_eq!(
                interp_of(&h).as_deref(),
                Some("/proc/self/fd/7"),
                "{}",
                p.arch
            );
        }
        assert_eq!(header_with_interp(b"#!/bin/sh\n", "/x"), None);
    }

    #[test]
    fn no_qemu_style_entry_takes_the_header() {
        // qus's own table has the masks every QEMU-style registrar uses:
        // each catches its arch's probe, none the marked header.
        for a in crate::arch::ARCHES {
            let Some(p) = crate::probe::find(a.name) else {
                continue;
            };
            let m = crate::binfmt::Matcher::Magic {
                offset: 0,
                magic: a.magic.to_vec(),
                mask: Some(a.mask.to_vec()),
            };
            let h = header_with_interp(p.program, "/proc/self/fd/7").expect(p.arch);
            assert!(m.catches(p.program), "{}", a.name);
            assert!(!m.catches(&h), "{}", a.name);
        }
    }

    #[test]
    fn the_kernel_says_which_arches_it_loads() {
        // This kernel's own arch takes its programs; a foreign one is an
        // exec format error. Which ones depends on the machine the tests
        // run on: here, x86_64 (the arches qus ships probes for).
        let own = crate::arch::kernel_machine();
        let (native, foreign) = match own.as_str() {
            "x86_64" => ("x86_64", "aarch64"),
            "aarch64" => ("aarch64", "s390x"),
            other => panic!("no expectation for a {other} machine: add one here"),
        };
        let probe = |a| crate::probe::find(a).expect("probe");
        // Asked in a child, and in this process (the host's binfmt_misc
        // is empty where the tests run, and no QEMU-style entry takes the
        // marked header anyway).
        let child = Asking::HereOrChild;
        assert_eq!(
            check(probe(native), None, child),
            Some(LoaderVerdict::Loads)
        );
        assert_eq!(
            check(probe(native), Some(&|_: &[u8]| false), Asking::HereOnly),
            Some(LoaderVerdict::Loads)
        );
        // Where an entry would take the header, only a child may ask.
        assert_eq!(
            check(probe(native), Some(&|_: &[u8]| true), Asking::HereOnly),
            None
        );
        assert_eq!(check(probe(native), None, Asking::HereOnly), None);
        // A foreign arch, in a child: refused, unless an entry on this
        // machine takes it (then the check must say so, not guess).
        let foreign_verdict = check(probe(foreign), None, child);
        assert!(
            matches!(
                foreign_verdict,
                Some(LoaderVerdict::Refuses | LoaderVerdict::Caught)
            ),
            "{foreign_verdict:?}"
        );
    }
}
