//! Embeds the committed OpenAPI document (openapi.yaml, its one source) as JSON: the worker
//! serves it at /openapi.json exactly as committed.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo::rerun-if-changed=openapi.yaml");
    let yaml = fs::read_to_string("openapi.yaml").expect("openapi.yaml is readable");
    let document: serde_json::Value =
        serde_norway::from_str(&yaml).expect("openapi.yaml is valid YAML");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("openapi.json");
    fs::write(
        out,
        serde_json::to_string(&document).expect("JSON serializes"),
    )
    .expect("OUT_DIR is writable");
}
