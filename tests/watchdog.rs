//! The watchdog at work under a real systemd: the shipped unit, booted as PID 1 of a
//! `systemd-nspawn` container (the host's own /usr, a throwaway root), runs the agent; a fault
//! injected into the test build hangs the agent's main loop; systemd's watchdog kills it and
//! `Restart=on-failure` starts it again.
//!
//! Needs root and systemd-nspawn (scripts/install-deps). Not run under qemu-arm: the container
//! runs the host's x86 userland.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");

/// The shipped unit, adapted only where the throwaway container differs from a camera: it has
/// no `camagent` user (runs as root, told so), the binary and config are bind-mounted, the
/// watchdog is short, and the log goes to a file the test can read.
fn test_unit() -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/camagent.service"),
    )
    .unwrap();
    let mut out = String::new();
    for line in shipped.lines() {
        let key = line.split('=').next().unwrap_or("");
        let replaced = match key {
            "ExecStart" => {
                "ExecStart=/opt/camagent --config /etc/camagent/camagent.toml run --allow-root"
                    .to_owned()
            }
            "WatchdogSec" => "WatchdogSec=2s".to_owned(),
            "RestartSec" => "RestartSec=500ms".to_owned(),
            "User" => "User=root".to_owned(),
            "Group" => "Group=root".to_owned(),
            "SupplementaryGroups" => continue,
            _ => line.to_owned(),
        };
        out += &replaced;
        out.push('\n');
        if key == "ExecStart" {
            out += "Environment=CAMAGENT_FAULT_HANG_AFTER=3\nStandardError=append:/out/agent.log\nReadWritePaths=/out\n";
        }
    }
    assert!(out.contains("Type=notify") && out.contains("Restart=on-failure"));
    out
}

#[test]
fn hung_main_loop_is_killed_and_restarted_by_systemd() {
    if std::env::var_os("CAMAGENT_TEST_EXEC_WRAPPER").is_some() {
        eprintln!("skipped under qemu-arm: the container runs the host's userland");
        return;
    }
    // Not under /tmp or /var/tmp (wherever the checkout is): the unit's PrivateTmp=yes would
    // hide it from the agent.
    let world = World::new_in(Path::new("/var/lib/camagent-tests"));
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let policy = world.path().join("policy.toml");
    write_policy(&policy, &["model"], &["online_status"]);
    let etc = world.path().join("etc");
    let config = AgentSetup::new(&world, broker.port).write(&world, &etc, &policy);
    // The agent inside uses the unit's StateDirectory.
    let text = std::fs::read_to_string(&config).unwrap();
    let state_line = text
        .lines()
        .find(|l| l.starts_with("state_dir"))
        .unwrap()
        .to_owned();
    std::fs::write(
        &config,
        text.replace(&state_line, "state_dir = \"/var/lib/camagent\""),
    )
    .unwrap();
    let out = world.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let unit = world.path().join("camagent.service");
    std::fs::write(&unit, test_unit()).unwrap();

    let console = std::fs::File::create(world.path().join("console.log")).unwrap();
    let bind = |from: &Path, to: &str, rw: bool| {
        format!(
            "--bind{}={}:{to}",
            if rw { "" } else { "-ro" },
            from.display()
        )
    };
    let mut container = Command::new("systemd-nspawn")
        .args([
            "--quiet",
            "--volatile=yes",
            "--directory=/",
            "--register=no",
            "--keep-unit",
        ])
        .arg(bind(Path::new(BIN), "/opt/camagent", false))
        .arg(bind(
            world.path(),
            &world.path().display().to_string(),
            false,
        ))
        .arg(bind(&config, "/etc/camagent/camagent.toml", false))
        .arg(bind(&unit, "/etc/systemd/system/camagent.service", false))
        .arg(bind(&out, "/out", true))
        .arg(bind(Path::new("/etc/hosts"), "/etc/hosts", false))
        .args([
            "--boot",
            "systemd.unit=camagent.service",
            "systemd.firstboot=off",
            "systemd.log_target=console",
        ])
        .stdin(Stdio::null())
        .stdout(console.try_clone().unwrap())
        .stderr(console)
        .spawn()
        .expect("systemd-nspawn must be installed (scripts/install-deps)");

    let log = || std::fs::read_to_string(out.join("agent.log")).unwrap_or_default();
    let restarted = wait_for(std::time::Duration::from_secs(90), || {
        let l = log();
        let online = cloud
            .on("/status")
            .iter()
            .filter(|m| m.json()["fields"]["online_status"] == "online")
            .count();
        (l.contains("fault injection: the main loop hangs now")
            && l.matches("camagent started").count() >= 2
            && online >= 2)
            .then_some(())
    });
    signal(container.id(), "TERM");
    let _ = container.wait();
    let console_text =
        std::fs::read_to_string(world.path().join("console.log")).unwrap_or_default();
    assert!(
        restarted.is_some(),
        "no watchdog restart; agent log:\n{}\nconsole:\n{console_text}",
        log()
    );
    // systemd itself says why: its watchdog fired, and it scheduled the restart.
    assert!(
        console_text.contains("camagent.service: Watchdog timeout"),
        "{console_text}"
    );

    // Both lives reached the broker: the restarted agent works, not merely exists.
    assert!(
        log().matches("connected to broker").count() >= 2,
        "{}",
        log()
    );
}
