//! Fuzz target: see `deme_formats::fuzzing::safetensors`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deme_formats::fuzzing::safetensors(data);
});
