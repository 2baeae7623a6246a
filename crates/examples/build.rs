//! Links the examples (`production`) as position-dependent executables in the dev profile on Linux.
//!
//! A position-independent debug build of `production` carries about 280,000 relative relocations
//! (6.8 MB of `.rela.dyn`: every vtable, string table and panic location of the unoptimised SDK
//! clients), which the dynamic loader applies at every start, copying each page it writes: 3 ms of
//! the 6 ms a `production --help` takes, on every command a user types. A position-dependent
//! executable has them resolved at link time. It loses address-space randomisation of its own code
//! (as Go's executables do by default); release builds, and everything this package's library is
//! linked into, keep the platform's default.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let dev = std::env::var("PROFILE").is_ok_and(|p| p == "debug");
    if linux && dev {
        println!("cargo::rustc-link-arg-examples=-no-pie");
    }
}
