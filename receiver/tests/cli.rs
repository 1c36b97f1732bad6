//! The receiver's command line: bad input gets an error that names what to fix. (Its work
//! against a real agent and broker is `tests/clips.rs` in the agent's package, which runs this
//! binary.)

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_camagent-receiver");

/// The receiver, under the emulator the armv7 suite runs binaries with (`cross/qemu-armv7`
/// sets `CAMAGENT_TEST_EXEC_WRAPPER`).
fn receiver() -> Command {
    match std::env::var("CAMAGENT_TEST_EXEC_WRAPPER") {
        Ok(wrapper) if !wrapper.is_empty() => {
            let mut c = Command::new(wrapper);
            c.arg(BIN);
            c
        }
        _ => Command::new(BIN),
    }
}

#[test]
fn a_missing_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("receiver.toml");
    let out = receiver()
        .arg("--config")
        .arg(&missing)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}

#[test]
fn a_config_without_a_broker_table_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("receiver.toml");
    std::fs::write(&config, "[agent]\n").unwrap();
    let out = receiver()
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broker"), "{stderr}");
}
