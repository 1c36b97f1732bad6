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

/// Runs the receiver on `config` and returns its error output; it must fail.
fn refused(config: &std::path::Path, out: &std::path::Path) -> String {
    let run = receiver()
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(!run.status.success());
    String::from_utf8_lossy(&run.stderr).into_owned()
}

#[test]
fn a_missing_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("receiver.toml");
    let stderr = refused(&missing, dir.path());
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}

#[test]
fn a_config_without_a_broker_table_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("receiver.toml");
    std::fs::write(&config, "[agent]\n").unwrap();
    let stderr = refused(&config, dir.path());
    assert!(stderr.contains("broker"), "{stderr}");
}
