//! The `vecsync` binary: parse the command line, start logging, call the library.

fn main() {
    println!("vecsync {}", env!("CARGO_PKG_VERSION"));
}
