//! `migrate-agent`: argument parsing, logging, signals; the daemon itself lives in the library.

fn main() {}
