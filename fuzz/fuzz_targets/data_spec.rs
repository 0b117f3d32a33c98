//! Fuzz target: see `deme_formats::fuzzing::data_spec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deme_formats::fuzzing::data_spec(data);
});
