//! The binfmt_misc entry model: what an entry is, how it is written to
//! `register`, how the kernel prints it back, and the kernel's validity rules.
//!
//! Everything here is pure; [`super::fs`] does the I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::escape;

/// What the kernel's entry files hold, keyed by entry name.
pub type KernelEntries = BTreeMap<String, KernelEntry>;

/// The longest register string the kernel accepts (`MAX_REGISTER_LENGTH`).
const MAX_REGISTER_LENGTH: usize = 1920;
/// Magic + offset must fit the bytes the kernel reads from a binary. Recent
/// kernels read 256, older ones 128; staying under 128 is safe everywhere.
pub const MAX_MAGIC_END: usize = 128;
/// Interpreter paths longer than this are refused: the kernel copies the
/// interpreter name into buffers sized for the binprm header.
const MAX_INTERPRETER_LEN: usize = 127;
/// File-name limit of the entry file the kernel creates.
const MAX_NAME_LEN: usize = 255;

/// Why an entry cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

fn invalid<T>(msg: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(msg.into()))
}

/// The kernel's per-entry flags. `C` implies `O`: the kernel reports a `C`
/// registration as `OC`, so [`Flags::normalized`] is what gets compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// `P`: preserve argv[0].
    pub preserve_argv0: bool,
    /// `O`: pass an open file descriptor of the binary.
    pub open_binary: bool,
    /// `C`: credentials from the binary (setuid) — implies `O`.
    pub credentials: bool,
    /// `F`: open the interpreter at registration and keep it.
    pub fix_binary: bool,
}

impl Flags {
    /// Parse flag letters in any order and case-sensitively, as the kernel does.
    pub fn parse(text: &str) -> Result<Flags, Invalid> {
        let mut f = Flags::default();
        for c in text.chars() {
            match c {
                'P' => f.preserve_argv0 = true,
                'O' => f.open_binary = true,
                'C' => f.credentials = true,
                'F' => f.fix_binary = true,
                other => return invalid(format!("unknown flag {other:?} (allowed: P, O, C, F)")),
            }
        }
        Ok(f)
    }

    /// The flags as the kernel will hold them.
    pub fn normalized(self) -> Flags {
        Flags {
            open_binary: self.open_binary || self.credentials,
            ..self
        }
    }
}

impl fmt::Display for Flags {
    /// Letters in the kernel's order: P O C F.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (set, letter) in [
            (self.preserve_argv0, 'P'),
            (self.open_binary, 'O'),
            (self.credentials, 'C'),
            (self.fix_binary, 'F'),
        ] {
            if set {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// How an entry recognises the binaries it handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Bytes at an offset, optionally under a mask of the same length.
    Magic {
        offset: u32,
        magic: Vec<u8>,
        mask: Option<Vec<u8>>,
    },
    /// A file-name extension, without the dot.
    Extension(String),
}

impl Matcher {
    /// The mask that takes effect: none means every bit counts.
    fn effective(&self) -> Option<(u32, Vec<u8>, Vec<u8>)> {
        match self {
            Matcher::Magic {
                offset,
                magic,
                mask,
            } => {
                let mask = mask.clone().unwrap_or_else(|| vec![0xff; magic.len()]);
                let masked = magic.iter().zip(&mask).map(|(m, k)| m & k).collect();
                Some((*offset, masked, mask))
            }
            Matcher::Extension(_) => None,
        }
    }

    /// Would this matcher catch a binary that starts with `header`?
    /// (Extension entries need a file name, which probes do not have.)
    pub fn catches(&self, header: &[u8]) -> bool {
        match self.effective() {
            Some((offset, magic, mask)) => header
                .get(offset as usize..)
                .is_some_and(|h| crate::arch::pattern_matches(&magic, &mask, h)),
            None => false,
        }
    }

    /// Same binaries matched? The kernel stores magic already masked and an
    /// all-ones mask means the same as no mask, so compare what takes effect.
    pub fn equivalent(&self, other: &Matcher) -> bool {
        match (self, other) {
            (Matcher::Extension(a), Matcher::Extension(b)) => a == b,
            (Matcher::Magic { .. }, Matcher::Magic { .. }) => self.effective() == other.effective(),
            _ => false,
        }
    }
}

/// What a registration says: matcher, interpreter and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySpec {
    pub matcher: Matcher,
    pub interpreter: PathBuf,
    pub flags: Flags,
}

impl EntrySpec {
    /// Would the kernel treat both as the same registration?
    pub fn equivalent(&self, other: &EntrySpec) -> bool {
        self.interpreter == other.interpreter
            && self.flags.normalized() == other.flags.normalized()
            && self.matcher.equivalent(&other.matcher)
    }

    /// Check everything the kernel would check (and a bit more) so that
    /// nothing invalid ever reaches `register`.
    pub fn validate(&self, name: &str) -> Result<(), Invalid> {
        self.checked_register_line(name).map(drop)
    }

    /// [`validate`](Self::validate), and the register line it checked:
    /// what a registration writes, built once.
    pub fn checked_register_line(&self, name: &str) -> Result<String, Invalid> {
        validate_name(name)?;
        validate_interpreter(&self.interpreter)?;
        match &self.matcher {
            Matcher::Magic {
                offset,
                magic,
                mask,
            } => {
                if magic.is_empty() {
                    return invalid("magic is empty");
                }
                if let Some(mask) = mask {
                    if mask.len() != magic.len() {
                        return invalid(format!(
                            "mask is {} bytes but magic is {}; they must be the same length",
                            mask.len(),
                            magic.len()
                        ));
                    }
                }
                let end = *offset as usize + magic.len();
                if end > MAX_MAGIC_END {
                    return invalid(format!(
                        "offset {offset} + magic length {} = {end} goes past byte {MAX_MAGIC_END} \
                         (the part of a binary every kernel reads)",
                        magic.len()
                    ));
                }
            }
            Matcher::Extension(ext) => {
                if ext.is_empty() {
                    return invalid("extension is empty");
                }
                if let Some(c) = ext
                    .chars()
                    .find(|c| matches!(c, '/' | ':') || c.is_control())
                {
                    return invalid(format!("extension {ext:?} contains {c:?}"));
                }
                if ext.trim() != ext {
                    return invalid(format!("extension {ext:?} starts or ends with whitespace"));
                }
            }
        }
        let line = self.register_line(name);
        if line.len() > MAX_REGISTER_LENGTH {
            return invalid(format!(
                "register string is {} bytes, the kernel takes at most {MAX_REGISTER_LENGTH}",
                line.len()
            ));
        }
        Ok(line)
    }

    /// The string written to `register`: `:name:type:offset:magic:mask:interpreter:flags`.
    /// Every magic and mask byte is written as `\xHH` so none can be taken
    /// for the `:` separator.
    pub fn register_line(&self, name: &str) -> String {
        let interpreter = self.interpreter.to_string_lossy();
        match &self.matcher {
            Matcher::Magic {
                offset,
                magic,
                mask,
            } => {
                let mask = mask.as_deref().map(escape::escape_all).unwrap_or_default();
                format!(
                    ":{name}:M:{offset}:{}:{mask}:{interpreter}:{}",
                    escape::escape_all(magic),
                    self.flags
                )
            }
            Matcher::Extension(ext) => {
                format!(":{name}:E::{ext}::{interpreter}:{}", self.flags)
            }
        }
    }
}

/// Parse a register string (a `binfmt.d` line), e.g. to compare with
/// Debian's `/usr/lib/binfmt.d/qemu-*.conf`. Returns the name and the spec.
pub fn parse_register_line(line: &str) -> Result<(String, EntrySpec), Invalid> {
    let line = line.trim_end_matches(['\n', '\r']);
    let mut chars = line.chars();
    let Some(delim) = chars.next() else {
        return invalid("empty register string");
    };
    let fields: Vec<&str> = chars.as_str().split(delim).collect();
    if fields.len() < 6 || fields.len() > 7 {
        return invalid(format!(
            "expected 7 fields separated by {delim:?}, found {}",
            fields.len()
        ));
    }
    let name = fields[0].to_string();
    let interpreter = PathBuf::from(fields[5]);
    let flags = Flags::parse(fields.get(6).copied().unwrap_or(""))?;
    let decode =
        |what: &str, text: &str| escape::decode(text).map_err(|e| Invalid(format!("{what}: {e}")));
    let matcher = match fields[1] {
        "M" => {
            let offset = if fields[2].is_empty() {
                0
            } else {
                fields[2]
                    .parse()
                    .map_err(|_| Invalid(format!("offset {:?} is not a number", fields[2])))?
            };
            let magic = decode("magic", fields[3])?;
            let mask = if fields[4].is_empty() {
                None
            } else {
                Some(decode("mask", fields[4])?)
            };
            Matcher::Magic {
                offset,
                magic,
                mask,
            }
        }
        "E" => Matcher::Extension(fields[3].to_string()),
        other => return invalid(format!("type {other:?} is neither M nor E")),
    };
    Ok((
        name,
        EntrySpec {
            matcher,
            interpreter,
            flags,
        },
    ))
}

/// An entry as the kernel shows it in its file under binfmt_misc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelEntry {
    pub enabled: bool,
    pub spec: EntrySpec,
}

/// Parse an entry file. Lines a newer kernel may add are ignored, and flag
/// letters qus does not know are skipped: an unknown kernel must not crash
/// qus, and an entry with unknown flags simply never equals a wanted one.
pub fn parse_entry_file(text: &str) -> Result<KernelEntry, Invalid> {
    let mut enabled = None;
    let mut interpreter = None;
    let mut flags = Flags::default();
    let mut offset = 0u32;
    let mut magic = None;
    let mut mask = None;
    let mut extension = None;
    let mut after_interpreter = false;
    for line in text.split('\n') {
        // The kernel prints the interpreter verbatim: one that contains a
        // newline spills into the next line, where `flags:` must follow.
        if std::mem::take(&mut after_interpreter) && !line.starts_with("flags:") {
            return invalid("the interpreter path contains a newline");
        }
        // ...and one that ends in a space, a tab or a CR keeps it: what is
        // put back after a flush must be byte for byte what the kernel had.
        if let Some(path) = line.strip_prefix("interpreter ") {
            interpreter = Some(PathBuf::from(path));
            after_interpreter = true;
            continue;
        }
        let line = line.trim_end();
        let (key, value) = match line.split_once(' ') {
            Some((k, v)) => (k, v.trim()),
            None => (line, ""),
        };
        match key {
            "enabled" => enabled = Some(true),
            "disabled" => enabled = Some(false),
            "interpreter" => {
                interpreter = Some(PathBuf::from(value));
                after_interpreter = true;
            }
            "flags:" => {
                let known: String = value.chars().filter(|c| "POCF".contains(*c)).collect();
                flags = Flags::parse(&known)?;
            }
            "offset" => {
                offset = value
                    .parse()
                    .map_err(|_| Invalid(format!("offset {value:?} is not a number")))?
            }
            "magic" => {
                magic = Some(
                    escape::from_hex(value)
                        .ok_or_else(|| Invalid(format!("magic {value:?} is not hex")))?,
                )
            }
            "mask" => {
                mask = Some(
                    escape::from_hex(value)
                        .ok_or_else(|| Invalid(format!("mask {value:?} is not hex")))?,
                )
            }
            // The kernel prints one dot before the extension, which may itself start with one.
            "extension" => extension = Some(value.strip_prefix('.').unwrap_or(value).to_string()),
            _ => {}
        }
    }
    let enabled = enabled.ok_or_else(|| Invalid("no enabled/disabled line".into()))?;
    let interpreter = interpreter.ok_or_else(|| Invalid("no interpreter line".into()))?;
    let matcher = match (magic, extension) {
        (Some(magic), None) => Matcher::Magic {
            offset,
            magic,
            mask,
        },
        (None, Some(ext)) => Matcher::Extension(ext),
        _ => return invalid("neither a magic nor an extension line"),
    };
    Ok(KernelEntry {
        enabled,
        spec: EntrySpec {
            matcher,
            interpreter,
            flags,
        },
    })
}

/// Entry names become file names in binfmt_misc: qus only writes names made
/// of letters, digits and `._+@-`, never `.`/`..`, and never the kernel's
/// own `register` and `status`.
pub fn validate_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return invalid("entry name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid(format!("entry name is longer than {MAX_NAME_LEN} bytes"));
    }
    if matches!(name, "." | ".." | "register" | "status") {
        return invalid(format!("entry name {name:?} is reserved"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._+@-".contains(*c)))
    {
        return invalid(format!(
            "entry name {name:?} contains {c:?} (allowed: letters, digits, . _ + @ -)"
        ));
    }
    Ok(())
}

/// Interpreters must be absolute, short, and free of the register string's
/// separator and of control characters.
pub fn validate_interpreter(path: &std::path::Path) -> Result<(), Invalid> {
    let Some(text) = path.to_str() else {
        return invalid(format!("interpreter {path:?} is not valid UTF-8"));
    };
    if !text.starts_with('/') {
        return invalid(format!("interpreter {text:?} is not an absolute path"));
    }
    if text.len() > MAX_INTERPRETER_LEN {
        return invalid(format!(
            "interpreter path is {} bytes, at most {MAX_INTERPRETER_LEN} are allowed",
            text.len()
        ));
    }
    // A tab is what the kernel holds and shows back as it is (another
    // tool's entry may have one, and goes back byte for byte); ':' ends the
    // field, a newline would spill into the next line of the read-back.
    if let Some(c) = text
        .chars()
        .find(|c| *c == ':' || (c.is_control() && *c != '\t'))
    {
        return invalid(format!("interpreter {text:?} contains {c:?}"));
    }
    Ok(())
}

/// [`validate_interpreter`], and what a configured path should not have:
/// no tab, and no space at either end (a typo far more often than a name).
pub fn validate_configured_interpreter(path: &std::path::Path) -> Result<(), Invalid> {
    validate_interpreter(path)?;
    let text = path.to_string_lossy();
    if text.contains('\t') {
        return invalid(format!("interpreter {text:?} contains '\\t'"));
    }
    if text.trim() != text {
        return invalid(format!(
            "interpreter {text:?} starts or ends with whitespace"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interpreter_read_back_keeps_trailing_blanks() {
        let text = "enabled\ninterpreter /opt/x \t\nflags: \nextension .x\n";
        let e = parse_entry_file(text).expect("parse");
        assert_eq!(e.spec.interpreter, PathBuf::from("/opt/x \t"));
        validate_interpreter(&e.spec.interpreter).expect("a tab the kernel holds is fine");
        assert!(validate_configured_interpreter(&e.spec.interpreter).is_err());
    }

    fn aarch64() -> EntrySpec {
        EntrySpec {
            matcher: Matcher::Magic {
                offset: 0,
                magic: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\xb7\x00"
                    .to_vec(),
                mask: Some(
                    b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
                        .to_vec(),
                ),
            },
            interpreter: PathBuf::from("/usr/bin/qemu-aarch64-static"),
            flags: Flags::parse("CF").unwrap(),
        }
    }

    #[test]
    fn flags_normalise_c_to_oc_in_kernel_order() {
        assert_eq!(
            Flags::parse("FCP").unwrap().normalized().to_string(),
            "POCF"
        );
        assert_eq!(Flags::parse("").unwrap().to_string(), "");
        assert!(Flags::parse("PX").is_err());
    }

    #[test]
    fn reads_back_what_the_kernel_prints() {
        // Literally what Linux 6.18 printed for the registration of aarch64() above:
        // magic already masked (0x03 & 0xfe = 0x02), C shown as OC.
        let text = "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OCF\noffset 0\n\
                    magic 7f454c460201010000000000000000000200b700\n\
                    mask ffffffffffffff00fffffffffffffffffeffffff\n";
        let entry = parse_entry_file(text).unwrap();
        assert!(entry.enabled);
        assert!(entry.spec.equivalent(&aarch64()));
        assert_ne!(entry.spec, aarch64(), "equivalent, not byte-equal");
    }

    #[test]
    fn reads_extension_disabled_and_unknown_lines() {
        let text = "disabled\ninterpreter /bin/true\nflags: \nextension .exe\nfuture-line 7\n";
        let entry = parse_entry_file(text).unwrap();
        assert!(!entry.enabled);
        assert_eq!(entry.spec.matcher, Matcher::Extension("exe".into()));
        let text = "enabled\ninterpreter /bin/x\nflags: PZF\noffset 2\nmagic 4d5a\n";
        let entry = parse_entry_file(text).unwrap();
        assert_eq!(entry.spec.flags.to_string(), "PF");
        assert!(parse_entry_file("enabled\n").is_err());
    }

    #[test]
    fn no_mask_equals_all_ones_mask() {
        let mut a = aarch64();
        a.matcher = Matcher::Magic {
            offset: 0,
            magic: b"MZ".to_vec(),
            mask: None,
        };
        let mut b = a.clone();
        b.matcher = Matcher::Magic {
            offset: 0,
            magic: b"MZ".to_vec(),
            mask: Some(vec![0xff, 0xff]),
        };
        assert!(a.equivalent(&b));
        b.interpreter = PathBuf::from("/other");
        assert!(!a.equivalent(&b));
    }

    #[test]
    fn register_line_round_trips() {
        let spec = aarch64();
        let line = spec.register_line("qemu-aarch64");
        assert!(line.starts_with(":qemu-aarch64:M:0:\\x7f\\x45\\x4c\\x46"));
        assert!(line.ends_with(":/usr/bin/qemu-aarch64-static:CF"));
        let (name, parsed) = parse_register_line(&line).unwrap();
        assert_eq!(name, "qemu-aarch64");
        assert_eq!(parsed, spec);
        let (_, ext) = parse_register_line(":wine:E::exe::/usr/bin/wine:").unwrap();
        assert_eq!(ext.register_line("wine"), ":wine:E::exe::/usr/bin/wine:");
    }

    #[test]
    fn validation_follows_kernel_rules() {
        let spec = aarch64();
        assert!(spec.validate("qemu-aarch64").is_ok());
        for bad in [
            "", ".", "..", "register", "status", "a/b", "a:b", "a\nb", "a b",
        ] {
            assert!(spec.validate(bad).is_err(), "{bad:?} accepted");
        }
        let mut s = spec.clone();
        s.interpreter = PathBuf::from("relative");
        assert!(s.validate("x").is_err());
        s.interpreter = PathBuf::from("/a:b");
        assert!(s.validate("x").is_err());
        s.interpreter = PathBuf::from(format!("/{}", "a".repeat(200)));
        assert!(s.validate("x").is_err());
        let mut s = spec.clone();
        s.matcher = Matcher::Magic {
            offset: 120,
            magic: vec![1; 9],
            mask: None,
        };
        assert!(s.validate("x").is_err());
        s.matcher = Matcher::Magic {
            offset: 0,
            magic: vec![1; 4],
            mask: Some(vec![1; 3]),
        };
        assert!(s.validate("x").is_err());
        s.matcher = Matcher::Extension("a/b".into());
        assert!(s.validate("x").is_err());
    }
}
