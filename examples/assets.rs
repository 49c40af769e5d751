//! Generate the man pages qus(1) and qusd(8) and the bash/zsh/fish
//! completions from the clap definitions, so they never drift from the
//! binaries. `make assets` (and the packages) run it:
//!
//!     cargo run --example assets -- OUTDIR
//!
//! writes OUTDIR/man/{qus.1,qusd.8} and OUTDIR/completions/{qus,qusd}.{bash,fish}
//! plus OUTDIR/completions/_{qus,qusd} (zsh). qus.d(5) is written by hand
//! in man/qus.d.5.
//!
//! A page is: clap's title, name, synopsis, description and options; then
//! one `.SS` per subcommand with its own options (clap_mangen lists only
//! their names); then the hand-written sections in `man/NAME.SECTION.in`
//! (states, exit status, environment, files, examples, see also), which
//! say what `--help` cannot.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/assets".into()),
    );
    let man = out.join("man");
    let comp = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    for (cmd, section) in [
        (qus::cli::Cli::command(), "1"),
        (qus::daemon::DaemonArgs::command(), "8"),
    ] {
        let name = cmd.get_name().to_string();
        let buf = man_page(&cmd, section)?;
        std::fs::write(man.join(format!("{name}.{section}")), buf)?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut cmd = cmd.clone();
            let file = match shell {
                Shell::Bash => format!("{name}.bash"),
                Shell::Zsh => format!("_{name}"),
                _ => format!("{name}.fish"),
            };
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut buf);
            std::fs::write(comp.join(file), buf)?;
        }
    }
    println!("wrote {}", out.display());
    Ok(())
}

/// The whole page for `cmd`.
fn man_page(cmd: &clap::Command, section: &str) -> std::io::Result<Vec<u8>> {
    let page = clap_mangen::Man::new(cmd.clone()).section(section);
    let mut buf = Vec::new();
    page.render_title(&mut buf)?;
    page.render_name_section(&mut buf)?;
    page.render_synopsis_section(&mut buf)?;
    page.render_description_section(&mut buf)?;
    page.render_options_section(&mut buf)?;
    let subcommands: Vec<&clap::Command> =
        cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    if !subcommands.is_empty() {
        buf.extend_from_slice(b".SH COMMANDS\n");
    }
    for sub in subcommands {
        let title = format!("{} {}", cmd.get_name(), sub.get_name());
        buf.extend_from_slice(format!(".SS \"{title}\"\n").as_bytes());
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        buf.extend_from_slice(format!("{}\n", roff_text(&about)).as_bytes());
        let sub_page = clap_mangen::Man::new(sub.clone().bin_name(title)).section(section);
        let mut synopsis = Vec::new();
        sub_page.render_synopsis_section(&mut synopsis)?;
        let synopsis = String::from_utf8_lossy(&synopsis).replace(".SH SYNOPSIS\n", ".PP\n");
        buf.extend_from_slice(synopsis.as_bytes());
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            let mut options = Vec::new();
            sub_page.render_options_section(&mut options)?;
            let options = String::from_utf8_lossy(&options).replace(".SH OPTIONS\n", "");
            buf.extend_from_slice(options.as_bytes());
        }
    }
    let extra = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("man")
        .join(format!("{}.{section}.in", cmd.get_name()));
    buf.extend_from_slice(&std::fs::read(&extra)?);
    Ok(buf)
}

/// Plain text for a roff paragraph: no line may start with a control
/// character, backslashes are escaped.
fn roff_text(text: &str) -> String {
    text.replace('\\', "\\e")
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
