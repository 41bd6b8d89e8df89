//! Embeds the demo's config and redirect plan for `cutover demo` outside a checkout (an installed
//! binary). Copied into OUT_DIR and deliberately not re-run when they change: in a checkout the
//! demo reads `config/demo.toml` itself, so editing it must not rebuild the binary; a clean build
//! (a release, `cargo install`) always embeds the current files.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for file in ["demo.toml", "redirects.csv"] {
        let from = std::path::Path::new("config").join(file);
        if let Err(e) = std::fs::copy(&from, out.join(file)) {
            panic!("copying {} for the built-in demo: {e}", from.display());
        }
    }
}
