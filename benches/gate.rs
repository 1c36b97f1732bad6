//! The privacy gate's cost per record, side by side with serialising the same record to JSON
//! without any policy (what an agent without a gate would do at the least).
//!
//! Run: `cargo bench --bench gate`. Writes its figures to BENCHMARKS.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;

use camagent::policy::{Field, Flow, Gate, Policy, PseudonymKey};
use camagent::record::{Record, Value};

mod common;

const ITERATIONS: u32 = 100_000;
const RUNS: usize = 7;

fn median_ns(f: impl FnMut()) -> f64 {
    common::median_ns(RUNS, ITERATIONS, f)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy = Policy::load(&root.join("policies/imou.toml")).expect("imou profile");
    let gate = Gate::new(
        policy,
        PseudonymKey::from_bytes(&[7; 32]),
        "acme/cams",
        Some("CAMSN0042".into()),
    );
    let text = |s: &str| Value::Text(s.into());
    let activation = Record::new(
        Flow::Activation,
        BTreeMap::from([
            (Field::SerialNumber, text("CAMSN0042")),
            (Field::MacAddress, text("02:00:5e:10:20:30")),
            (Field::IpAddress, text("192.168.77.42")),
            (Field::Model, text("Acme IPC-7")),
            (Field::FirmwareVersion, text("4.2.0")),
            (Field::Location, text("48.13743,11.57549")),
            (Field::WifiSsid, text("HomeNet")),
            (Field::DeviceCredentials, text("secret")),
            (
                Field::Timezone,
                Value::Zone {
                    name: "Europe/Berlin".into(),
                    utc_offset_secs: 3600,
                },
            ),
            (Field::Uptime, Value::Count(4242)),
        ]),
    )
    .unwrap();
    let telemetry = Record::new(
        Flow::Telemetry,
        BTreeMap::from([
            (Field::Uptime, Value::Count(4242)),
            (Field::FirmwareVersion, text("4.2.0")),
        ]),
    )
    .unwrap();

    let gate_activation = median_ns(|| {
        black_box(gate.admit(black_box(&activation), Some(1)).unwrap());
    });
    let gate_telemetry = median_ns(|| {
        black_box(gate.admit(black_box(&telemetry), Some(1)).unwrap());
    });
    let plain_activation = median_ns(|| {
        black_box(serde_json::to_vec(black_box(&activation)).unwrap());
    });

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let section = format!(
        "## Privacy gate: cost per record\n\n\
         `cargo bench --bench gate` — median of {RUNS} runs of {ITERATIONS} records, one core of {cpu}.\n\
         The Imou profile. The activation record holds ten fields: six leave, Wi-Fi SSID and\n\
         device password are forbidden (and every value leaving is searched for them), location\n\
         and uptime are not permitted. Telemetry goes to a topic whose device id is a pseudonym\n\
         under the purpose's own key.\n\n\
         | work | ns per record |\n| --- | ---: |\n\
         | gate, activation record (filter, transforms, topic, JSON) | {gate_activation:.0} |\n\
         | gate, telemetry record (pseudonymous topic under a purpose key) | {gate_telemetry:.0} |\n\
         | no gate: serde_json of the activation record alone | {plain_activation:.0} |\n\n\
         The gate costs {:.1}× a bare serialisation of the same record; at one record a second\n\
         it uses {:.4} % of one core.\n",
        gate_activation / plain_activation,
        gate_activation / 1e9 * 100.0
    );
    println!("{section}");
    common::update_benchmarks(&root.join("BENCHMARKS.md"), "## Privacy gate", &section);
}
