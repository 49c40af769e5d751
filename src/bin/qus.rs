fn main() -> std::process::ExitCode {
    qus::cli::main()
}
