//! Commands pasted from the peers' READMEs and CI files (`--install
//! arm64`, `--reset -p yes`, `--display`): when they are not valid qus
//! usage, answer with the qus command that does the same, instead of
//! clap's "to pass '--install' as a value" tip.

/// The qus equivalent of a peer tool's arguments, as lines to print, if
/// any of them is a peer's option.
pub fn equivalent(args: &[String]) -> Option<String> {
    let value_of = |names: &[&str]| -> Option<String> {
        args.iter().enumerate().find_map(|(i, a)| {
            names.iter().find_map(|n| {
                if a == n {
                    Some(args.get(i + 1).cloned().unwrap_or_default())
                } else {
                    a.strip_prefix(&format!("{n}=")).map(str::to_string)
                }
            })
        })
    };
    let has = |names: &[&str]| args.iter().any(|a| names.contains(&a.as_str()));
    let mut lines = Vec::new();
    if let Some(list) = value_of(&["--install", "-install"]) {
        lines.push((
            "tonistiigi/binfmt's --install",
            format!("qus register {}", list.replace(',', " ")),
        ));
    }
    if let Some(list) = value_of(&["--uninstall", "-uninstall"]) {
        let cmd = if list.contains('*') {
            "qus unregister --all (qus removes only what it registered)".to_string()
        } else {
            format!("qus unregister {}", list.replace(',', " "))
        };
        lines.push(("tonistiigi/binfmt's --uninstall", cmd));
    }
    if has(&["--reset"]) {
        lines.push((
            "multiarch/qemu-user-static's --reset",
            "qus unregister --all && qus register (F, the persistent -p yes, is qus's default)"
                .into(),
        ));
    } else if has(&["-p", "--persistent"]) {
        lines.push((
            "qemu-binfmt-conf.sh's --persistent",
            "qus register (F is qus's default)".into(),
        ));
    }
    if let Some(dir) = value_of(&["--qemu-path"]) {
        lines.push((
            "qemu-binfmt-conf.sh's --qemu-path",
            format!("search_path = [\"{dir}\"] under [qemu] in /etc/qus.d/50-local.toml, then qus register"),
        ));
    }
    if has(&["--display", "--import"]) {
        lines.push(("update-binfmts' --display", "qus status".into()));
    }
    if has(&["-version"]) {
        lines.push(("tonistiigi/binfmt's -version", "qus --version".into()));
    }
    if lines.is_empty() {
        return None;
    }
    Some(
        lines
            .into_iter()
            .map(|(what, qus)| {
                format!("error: that is {what}, not a qus option; with qus:\n    {qus}\n")
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(line: &str) -> String {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        equivalent(&args).unwrap_or_default()
    }

    #[test]
    fn peer_options_get_their_qus_command() {
        assert!(of("--install arm64,riscv64").contains("qus register arm64 riscv64"));
        assert!(of("-install=all").contains("qus register all"));
        assert!(of("--uninstall qemu-*").contains("qus unregister --all"));
        assert!(of("register --reset -p yes").contains("qus unregister --all && qus register"));
        assert!(of("--qemu-path /opt/q").contains("search_path = [\"/opt/q\"]"));
        assert!(of("--display").contains("qus status"));
        assert_eq!(of("register arm64"), "");
    }
}
