//! apply_patch's diff handling, on the model's (hostile) diffs: split into
//! files, each parsed, each applied to a base text in memory — the very
//! code toold runs (`oxibot_toold::fuzzing`). Input: the base
//! text, a NUL, then the diff. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

use oxibot_toold::fuzzing as diff;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (base, patch) = text.split_once('\0').unwrap_or(("", text));
    for (i, file) in diff::split_files(patch).iter().enumerate() {
        if let Ok(parsed) = diff::parse(file, i) {
            // A header names one path, on one line.
            for path in [&parsed.old, &parsed.new].into_iter().flatten() {
                assert!(!path.contains('\n'), "{path:?}");
            }
            let _ = diff::apply(base, &parsed.patch);
        }
    }
});
