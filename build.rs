//! Links the `ccotel` executable at a fixed address on Linux.
//!
//! A position-independent executable is relocated by the dynamic loader at every
//! start: about 25,000 pointers written into 100 pages of `.data.rel.ro`, each
//! page copied on first write. A run over an unchanged corpus takes a few ms, so
//! those 0.2–0.3 ms and 100 page faults were a visible part of it (BENCHMARKS.md,
//! "Linked at a fixed address"). Libraries, stack and heap are still randomised.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
