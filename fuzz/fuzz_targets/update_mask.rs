//! Fuzz target for `connectord_fuzz::check_update_mask`; see that function for the input layout.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| connectord_fuzz::check_update_mask(data));
