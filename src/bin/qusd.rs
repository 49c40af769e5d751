//! The watching daemon. Until it lands, `qusd` says so and fails, rather
//! than pretending to watch anything.
fn main() -> std::process::ExitCode {
    eprintln!("qusd: not yet: the daemon is not implemented in this version; use `qus register`");
    std::process::ExitCode::from(1)
}
