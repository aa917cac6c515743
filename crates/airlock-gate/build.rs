//! Converts the built-in rules (`rules/default.toml`) to JSON at build time: the hook parses the
//! rules on every call, and JSON parses several times faster than TOML.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=rules/default.toml");
    let text = std::fs::read_to_string("rules/default.toml").expect("read rules/default.toml");
    let value: toml::Value = toml::from_str(&text).expect("rules/default.toml is valid TOML");
    let json = serde_json::to_string(&value).expect("rules convert to JSON");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    std::fs::write(out.join("default-rules.json"), json).expect("write default-rules.json");
}
