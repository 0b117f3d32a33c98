//! Fuzz target: see `deme_formats::fuzzing::cifar10`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deme_formats::fuzzing::cifar10(data);
});
