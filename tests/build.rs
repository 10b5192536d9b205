//! Embeds an rpath to the libdir of the CPython that pyo3 was built against, so the runner
//! loads that interpreter's `libpython` (and so its stdlib and site-packages) at run time
//! instead of whichever `libpython3.x.so` the system linker finds first.

fn main() {
    let config = pyo3_build_config::get();
    if let Some(lib_dir) = &config.lib_dir {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
