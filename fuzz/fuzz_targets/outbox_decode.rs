//! Whatever is found in an outbox file at start decodes or is refused: no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = camagent::uplink::outbox::decode(data);
});
