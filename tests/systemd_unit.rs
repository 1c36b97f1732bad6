//! The shipped systemd unit: hardened (systemd's own exposure score) and wired for the agent's
//! notify and watchdog support.

use std::path::Path;
use std::process::Command;

fn unit() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/camagent.service")
}

#[test]
fn exposure_is_two_or_lower() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit())
        .output()
        .expect("systemd-analyze must be installed (scripts/install-deps)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure in:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"));
    assert!(score <= 2.0, "exposure {score} > 2.0: {line}");
}

#[test]
fn unit_uses_notify_watchdog_and_an_unprivileged_user() {
    let text = std::fs::read_to_string(unit()).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=camagent",
        "SupplementaryGroups=video",
        "StateDirectory=camagent",
        "CacheDirectory=camagent",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(text.contains(line), "unit lacks {line:?}");
    }
    assert!(!text.contains("--allow-root"));
}
