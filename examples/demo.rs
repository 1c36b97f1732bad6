//! The agent's main job on an embedded default, shown from the cloud's side.
//!
//! Makes a throwaway CA and certificates, starts a real mosquitto with a mutual-TLS listener
//! on a free loopback port, runs the agent (in this process) on a simulated camera board — a
//! GStreamer test scene as its camera — with the shipped default policy, and prints every
//! message a subscriber on the "cloud" certificate receives: status, device facts, telemetry
//! and motion alerts. Run: `cargo run --example demo`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use support::{AgentSetup, Subscriber, World};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .with_ansi(false)
        .init();
    let world = World::new();
    let broker = world.broker(false);
    println!("mosquitto (mutual TLS) on 127.0.0.1:{}", broker.port);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);

    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
    let mut setup = AgentSetup::new(&world, broker.port);
    setup.facts_interval = "2s";
    // A synthetic camera: GStreamer's moving-ball scene, so motion alerts arrive.
    setup.extra = "[capture]\nsource = \"test\"\npattern = \"ball\"\n".into();
    let config_path = setup.write(&world, &world.path().join("agent"), &policy);
    let config = camagent::config::Config::load(&config_path)?;
    println!("agent config: {}", config_path.display());
    println!("policy: {} — facts leaving and staying:", policy.display());
    let gate_policy = camagent::policy::Policy::load(&policy)?;
    for (field, value) in config.device.read() {
        let purposes = gate_policy.purposes_for(field);
        let fate = if purposes.is_empty() {
            "stays on the device".to_owned()
        } else {
            format!("may leave for {}", purposes.join(", "))
        };
        println!("  {:<17} {:<22} {fate}", field.name(), value.to_string());
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!("\nrunning the agent for 5 s; what the cloud receives:");
    let printer = std::thread::spawn({
        let messages = cloud.messages.clone();
        move || {
            let mut shown = 0;
            for _ in 0..80 {
                std::thread::sleep(Duration::from_millis(100));
                let all = messages.lock().unwrap().clone();
                for m in &all[shown..] {
                    println!("  cloud <- {}  {}", m.topic, readable(&m.payload));
                }
                shown = all.len();
            }
        }
    });
    runtime.block_on(async {
        camagent::agent::run(config, tokio::time::sleep(Duration::from_secs(5))).await
    })?;
    printer.join().ok();
    println!("\nagent stopped; its retained status now says offline.");
    Ok(())
}

/// A payload as a person wants to read it: clip chunks by their header, pictures by size.
fn readable(payload: &[u8]) -> String {
    if let Ok((header, data)) = camagent::wire::chunk::parse(payload) {
        return format!(
            "chunk {}/{} of {} ({} bytes)",
            header.index + 1,
            header.chunks,
            header.clip_id,
            data.len()
        );
    }
    let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return String::from_utf8_lossy(payload).into_owned();
    };
    if let Some(data) = body["fields"]["snapshot"]["base64"].as_str() {
        let shown = format!("<{} base64 characters of JPEG>", data.len());
        body["fields"]["snapshot"]["base64"] = serde_json::json!(shown);
    }
    body.to_string()
}
