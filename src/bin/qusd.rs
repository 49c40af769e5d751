fn main() -> std::process::ExitCode {
    qus::daemon::main()
}
