//! `migrate-rt-init`: the runtime's single-threaded helper for namespace and mount work.
//! Started by the runtime with a socket on fd 3; not meant to be run by hand.

fn main() {
    runtime::process::init::main()
}
