//! Fuzz target for `connectord_fuzz::check_config_any`; see that function for the input layout.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| connectord_fuzz::check_config_any(data));
