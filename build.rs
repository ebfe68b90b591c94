//! Links the `ccotel` executable at a fixed address on Linux.
//!
//! A position-independent executable is relocated by the dynamic loader at every
//! start: about 25,000 pointers written into the 400 KB of `.data.rel.ro`, each
//! page copied on first write. A run over an unchanged corpus takes a few ms, so
//! those 0.2–0.45 ms and about 94 page faults per process were a visible part of
//! it (BENCHMARKS.md, "linked at a fixed address", `20afc03`). Libraries, stack
//! and heap are still placed at random.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
