//! Generate the man pages qus(1) and qusd(8) and the bash/zsh/fish
//! completions from the clap definitions, so they never drift from the
//! binaries. `make assets` (and the packages) run it:
//!
//!     cargo run --example assets -- OUTDIR
//!
//! writes OUTDIR/man/{qus.1,qusd.8} and OUTDIR/completions/{qus,qusd}.{bash,fish}
//! plus OUTDIR/completions/_{qus,qusd} (zsh). qus.d(5) is written by hand
//! in man/qus.d.5.

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
        let page = clap_mangen::Man::new(cmd.clone()).section(section);
        let mut buf = Vec::new();
        page.render(&mut buf)?;
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
