//! Value parsers for the command line: they reject bad values as usage
//! errors (exit 2, like every clap error) and list the values shells
//! complete, from the same tables qus itself uses.

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::{Error, ErrorKind};

/// An arch name as users write it: canonical (`aarch64`), an alias
/// (`arm64`, `linux/arm/v7`), an entry name (`qemu-aarch64`), or `all`.
/// The value is the table's name (or `all`); `arch_names` expands `all`.
#[derive(Debug, Clone, Copy)]
pub struct ArchParser;

impl TypedValueParser for ArchParser {
    type Value = String;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, Error> {
        let v = value.to_string_lossy();
        if v == "all" {
            return Ok(v.into_owned());
        }
        // Resolved here, once: every subcommand sees the table's name
        // (`arm64`, `linux/arm64`, `qemu-arm64` and `qemu-aarch64` are all
        // `aarch64`), so none can build an entry name from an alias.
        let by_entry = || v.strip_prefix("qemu-").and_then(crate::arch::find);
        if let Some(a) = crate::arch::find(&v).or_else(by_entry) {
            Ok(a.name.to_string())
        } else {
            Err(Error::raw(
                ErrorKind::InvalidValue,
                format!(
                    "unknown arch {v:?}{} (see `qus arches` for names and aliases)\n",
                    crate::arch::did_you_mean(&v)
                ),
            ))
        }
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        let names = crate::arch::ARCHES
            .iter()
            .map(|a| a.name)
            .chain(crate::arch::ALIASES.iter().map(|(alias, _)| *alias))
            .chain(["all"]);
        Some(Box::new(names.map(|n| PossibleValue::new(n).hide(false))))
    }
}

/// binfmt_misc flags (any of P O C F, in any order, or empty).
#[derive(Debug, Clone, Copy)]
pub struct FlagsParser;

/// The flag sets shells offer; any other valid combination is accepted.
const COMMON_FLAGS: &[(&str, &str)] = &[
    ("PF", "keep argv[0], open the emulator now (the default)"),
    ("PFC", "also run setuid programs with their credentials"),
    ("F", "open the emulator now"),
    ("P", "keep argv[0]"),
    ("PFO", "keep argv[0], open emulator and binary"),
];

impl TypedValueParser for FlagsParser {
    type Value = crate::binfmt::Flags;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<crate::binfmt::Flags, Error> {
        let v = value.to_string_lossy();
        crate::binfmt::Flags::parse(&v)
            .map_err(|e| Error::raw(ErrorKind::InvalidValue, format!("--flags {v:?}: {e}\n")))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            COMMON_FLAGS
                .iter()
                .map(|(v, help)| PossibleValue::new(*v).help(*help)),
        ))
    }
}
