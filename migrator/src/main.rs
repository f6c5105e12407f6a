//! The `migrate` CLI.
fn main() {}
