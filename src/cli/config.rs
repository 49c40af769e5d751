//! `qus config [--check]`: the merged configuration, each value followed by
//! the file and line it came from.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::CommonArgs;
use crate::binfmt::Matcher;
use crate::config::{Config, CustomEntry, Sourced};
use crate::escape::{self, clean, Shown};

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Only validate: print "ok" or the errors, exit 1 on any error.
    #[arg(long)]
    pub check: bool,
    /// With --check: validate these files as if dropped in (after the
    /// configuration directories' files) before you drop them in.
    #[arg(value_name = "FILE", requires = "check")]
    pub files: Vec<std::path::PathBuf>,
}

pub fn run(common: &CommonArgs, args: &ConfigArgs) -> Result<ExitCode> {
    let dirs = common.config_dirs();
    let config = match common.load_config_with(&args.files) {
        Ok(c) => c,
        Err(e) if args.check => {
            eprintln!("error: {}", clean(&format!("{e:#}")));
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e),
    };
    if args.check && !args.files.is_empty() {
        let names: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
        println!(
            "ok: {} valid, together with the {} file(s) already in {}",
            names.join(", "),
            config.files.len() - args.files.len(),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.check {
        println!(
            "ok: {} file(s) from {}",
            config.files.len(),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = render(&config, &dirs);
    let _ = writeln!(
        out,
        "\n# state dir: {} ({})",
        common.state_dir().display(),
        common.state_dir_source()
    );
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn quote(s: &str) -> String {
    // TOML basic strings share JSON's escapes for what we print.
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn list<T: AsRef<str>>(items: &[T]) -> String {
    let parts: Vec<String> = items.iter().map(|i| quote(i.as_ref())).collect();
    format!("[{}]", parts.join(", "))
}

fn line<T>(out: &mut String, key: &str, value: String, s: &Sourced<T>) {
    let _ = writeln!(out, "{:<40} # {}", format!("{key} = {value}"), s.source);
}

/// The effective configuration as TOML with a source comment per value.
pub fn render(c: &Config, dirs: &[std::path::PathBuf]) -> String {
    let mut o = String::new();
    render_files(&mut o, c, dirs);
    render_binfmt(&mut o, c);
    render_qemu(&mut o, c);
    for (name, e) in &c.entries {
        render_entry(&mut o, name, e);
    }
    render_daemon(&mut o, c);
    render_guard(&mut o, c);
    o
}

fn render_files(o: &mut String, c: &Config, dirs: &[std::path::PathBuf]) {
    let _ = writeln!(o, "# directories, lowest priority first:");
    for d in dirs {
        let _ = writeln!(o, "#   {}", Shown(d));
    }
    let _ = writeln!(o, "# files applied, in order:");
    if c.files.is_empty() {
        let _ = writeln!(o, "#   (none: built-in defaults)");
    }
    for f in &c.files {
        let _ = writeln!(o, "#   {}", Shown(f));
    }
    if !c.skipped.is_empty() {
        let _ = writeln!(o, "# files not applied:");
        for (f, why) in &c.skipped {
            let _ = writeln!(o, "#   {}: {}", Shown(f), clean(why));
        }
    }
}

fn render_binfmt(o: &mut String, c: &Config) {
    let _ = writeln!(o, "\n[binfmt]");
    line(
        o,
        "path",
        quote(&c.binfmt_path.value.to_string_lossy()),
        &c.binfmt_path,
    );
    line(
        o,
        "mount",
        c.binfmt_mount.value.to_string(),
        &c.binfmt_mount,
    );
    line(
        o,
        "enable",
        c.binfmt_enable.value.to_string(),
        &c.binfmt_enable,
    );
}

fn render_qemu(o: &mut String, c: &Config) {
    let _ = writeln!(o, "\n[qemu]");
    let sp: Vec<String> = c
        .search_path
        .value
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    line(o, "search_path", list(&sp), &c.search_path);
    line(
        o,
        "binary_names",
        list(&c.binary_names.value),
        &c.binary_names,
    );
    line(o, "targets", list(&c.targets.value), &c.targets);
    line(o, "exclude", list(&c.exclude.value), &c.exclude);
    line(o, "flags", quote(&c.flags.value.to_string()), &c.flags);
    line(
        o,
        "name_prefix",
        quote(&c.name_prefix.value),
        &c.name_prefix,
    );
    line(o, "takeover", c.takeover.value.to_string(), &c.takeover);
    line(o, "others", c.others.value.to_string(), &c.others);
    for (arch, over) in &c.arch {
        let _ = writeln!(o, "\n[qemu.arch.{arch}]");
        if let Some(i) = &over.interpreter {
            line(o, "interpreter", quote(&i.value.to_string_lossy()), i);
        }
        if let Some(f) = &over.flags {
            line(o, "flags", quote(&f.value.to_string()), f);
        }
        if let Some(e) = &over.enabled {
            line(o, "enabled", e.value.to_string(), e);
        }
        if let Some(c) = &over.catch_host_programs {
            line(o, "catch_host_programs", c.value.to_string(), c);
        }
        if let Some(x) = &over.others {
            line(o, "others", x.value.to_string(), x);
        }
    }
}

fn render_entry(o: &mut String, name: &str, e: &CustomEntry) {
    let _ = writeln!(
        o,
        "\n[entry.{name}]                                # {}",
        e.source
    );
    match &e.spec.matcher {
        Matcher::Magic {
            offset,
            magic,
            mask,
        } => {
            let _ = writeln!(o, "type = \"magic\"");
            let _ = writeln!(o, "offset = {offset}");
            let _ = writeln!(o, "magic = {}", quote(&escape::escape_readable(magic)));
            if let Some(m) = mask {
                let _ = writeln!(o, "mask = {}", quote(&escape::escape_all(m)));
            }
        }
        Matcher::Extension(ext) => {
            let _ = writeln!(o, "type = \"extension\"");
            let _ = writeln!(o, "extension = {}", quote(ext));
        }
    }
    let _ = writeln!(
        o,
        "interpreter = {}",
        quote(&e.spec.interpreter.to_string_lossy())
    );
    let _ = writeln!(o, "flags = {}", quote(&e.spec.flags.to_string()));
    let _ = writeln!(o, "enabled = {}", e.enabled);
    if e.catch_host_programs {
        let _ = writeln!(o, "catch_host_programs = true");
    }
}

fn render_guard(o: &mut String, c: &Config) {
    let _ = writeln!(o, "\n[guard]");
    line(
        o,
        "others",
        c.guard_others.value.to_string(),
        &c.guard_others,
    );
}

fn render_daemon(o: &mut String, c: &Config) {
    let _ = writeln!(o, "\n[daemon]");
    line(
        o,
        "debounce_ms",
        c.debounce_ms.value.to_string(),
        &c.debounce_ms,
    );
    line(
        o,
        "unregister_on_stop",
        c.unregister_on_stop.value.to_string(),
        &c.unregister_on_stop,
    );
    line(o, "verify", c.verify.value.to_string(), &c.verify);
}
