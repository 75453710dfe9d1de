//! The config loader: the file's JSON and the `OXIBOT_` environment
//! overrides, merged, typed and validated. Input: the config text, a NUL,
//! then `NAME=value` lines for the environment. Nothing may panic; every
//! failure is an error that says something. Variables that name files to
//! read (`*_FILE`) are left out: they would read this machine's files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxibot_config::config::Config;

fuzz_target!(|data: &[u8]| {
    let (config, env) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(name, _)| !name.to_ascii_uppercase().contains("FILE"))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let dir = std::env::temp_dir().join(format!("oxibot-fuzz-config-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("config.json");
    if std::fs::write(&path, config).is_err() {
        return;
    }
    if let Err(e) = Config::load_with_env(&path, env) {
        assert!(!e.to_string().trim().is_empty(), "an error that says nothing");
    }
});
