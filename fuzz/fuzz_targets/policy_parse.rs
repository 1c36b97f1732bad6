//! Any text given to `policy check` is either a valid policy or a clean error: no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = camagent::policy::Policy::parse(text, std::path::Path::new("fuzz.toml"))
        {
            // A policy that parses also explains without panicking.
            let _ = camagent::policy::explain::text(&policy, None);
        }
    }
});
