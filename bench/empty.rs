//! The start-up floor of a Rust program: nothing but the standard
//! library's runtime, built the way qus ships (static, PIE). The benchmark
//! times it next to `qus --version` and the C registrar to show what any
//! Rust process costs before it does anything. Never shipped.

fn main() {}
