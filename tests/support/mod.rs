//! Test support: a throwaway PKI, a real mosquitto with a mutual-TLS listener, a TCP link the
//! tests can cut, a subscriber playing the cloud, and the agent as a real child process.
//!
//! Shared by the integration tests and by `examples/demo.rs`.
#![allow(dead_code)]

pub mod faults;
pub mod rtsp;
pub mod scenes;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Generous upper bound for things that should happen; not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` until it returns `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A CA and the certificates issued by it, as PEM files in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), ca_cert.pem()).unwrap();
        Self {
            dir: dir.to_owned(),
            ca_cert,
            ca_key,
        }
    }

    pub fn ca_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-ca.pem"))
    }

    /// A leaf certificate: a server one for `names`, or a client one with common name `cn`.
    pub fn issue(&self, cn: &str, names: &[&str], server: bool) -> Identity {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        let id = Identity {
            cert: self.dir.join(format!("{cn}.crt")),
            key: self.dir.join(format!("{cn}.key")),
        };
        std::fs::write(&id.cert, cert.pem()).unwrap();
        write_private(&id.key, &key.serialize_pem());
        id
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mosquitto_path() -> PathBuf {
    [
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/usr/bin/mosquitto",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .unwrap_or_else(|| "mosquitto".into())
}

/// A real mosquitto on a loopback port, requiring client certificates.
pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    conf: PathBuf,
}

/// The test's world: a PKI with a server, a device and a "cloud" identity.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub pki: Pki,
    pub server: Identity,
    pub device: Identity,
    pub cloud: Identity,
}

impl World {
    pub fn new() -> Self {
        Self::new_in(&std::env::temp_dir())
    }

    /// A world under `parent` (e.g. outside /tmp, for a service with PrivateTmp=yes).
    pub fn new_in(parent: &Path) -> Self {
        std::fs::create_dir_all(parent).unwrap();
        let tmp = tempfile::tempdir_in(parent).unwrap();
        // mosquitto started as root drops to its own user: let it reach the files it needs.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let pki = Pki::new(tmp.path(), "main");
        // `broker.qemu`: the name the emulated board (board/qemu-virt) gives the host.
        let server = pki.issue("broker", &["localhost", "broker.qemu"], true);
        let device = pki.issue("device", &[], false);
        let cloud = pki.issue("cloud", &[], false);
        Self {
            tmp,
            pki,
            server,
            device,
            cloud,
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn broker(&self, persistent: bool) -> Broker {
        Broker::start(self, free_port(), persistent, "")
    }

    /// A broker with extra `mosquitto.conf` lines, e.g. `max_packet_size 131072`.
    pub fn broker_with(&self, persistent: bool, extra: &str) -> Broker {
        Broker::start(self, free_port(), persistent, extra)
    }
}

impl Broker {
    fn start(world: &World, port: u16, persistent: bool, extra: &str) -> Self {
        let dir = world.path().join(format!("broker-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        // The throwaway server key must be readable by the `mosquitto` user (see DESIGN.md).
        std::fs::set_permissions(&world.server.key, std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let conf = dir.join("mosquitto.conf");
        let mut text = format!(
            "per_listener_settings false\n\
             listener {port} 127.0.0.1\n\
             cafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
             require_certificate true\nuse_identity_as_username true\n\
             log_dest file {log}\nlog_type error\nlog_type warning\nlog_type notice\n\
             max_queued_messages 10000\n",
            ca = world.pki.ca_file("main").display(),
            cert = world.server.cert.display(),
            key = world.server.key.display(),
            log = dir.join("mosquitto.log").display(),
        );
        if persistent {
            text += &format!(
                "persistence true\npersistence_location {}/\n",
                dir.display()
            );
        } else {
            text += "persistence false\n";
        }
        text += extra;
        std::fs::write(&conf, text).unwrap();
        let mut broker = Self {
            port,
            dir,
            child: None,
            conf,
        };
        broker.restart();
        broker
    }

    /// Starts (again) on the same port; returns once it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Kills the broker as a power cut would (SIGKILL): what it had not saved is gone, the
    /// messages it acknowledged and had not delivered included. It starts again.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "KILL");
            let _ = child.wait();
        }
        self.spawn();
    }

    fn spawn(&mut self) {
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (scripts/install-deps)");
        self.child = Some(child);
        let port = self.port;
        wait_for(PATIENCE, || TcpStream::connect(("127.0.0.1", port)).ok())
            .unwrap_or_else(|| panic!("mosquitto did not listen on {port}: {}", self.log()));
    }

    /// Stops the broker the way an operator does (SIGTERM; it saves persistent state).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the broker: its connections stay open and
    /// nothing answers, like a hung broker or a half-open link.
    pub fn freeze(&self, frozen: bool) {
        if let Some(child) = &self.child {
            signal(child.id(), if frozen { "STOP" } else { "CONT" });
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// A TCP link between the agent and the broker that the test can cut and restore, like a
/// network outage: while cut, live connections are severed and new ones closed at once.
pub struct Link {
    pub port: u16,
    up: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Link {
    pub fn new(target_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, streams2) = (up.clone(), streams.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { return };
                if !up2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let mut list = streams2.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Self { port, up, streams }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    /// When the subscriber received it.
    pub received: std::time::SystemTime,
}

impl Message {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "payload on {} is not JSON ({e}): {:?}",
                self.topic,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }
}

/// The cloud side: a real MQTT client on its own certificate, subscribed to everything.
pub struct Subscriber {
    pub messages: Arc<Mutex<Vec<Message>>>,
    pub subacks: Arc<Mutex<u32>>,
    client: rumqttc::Client,
}

impl Subscriber {
    pub fn connect(world: &World, port: u16, client_id: &str, persistent: bool) -> Self {
        use rumqttc::{Event, MqttOptions, Packet, QoS, Transport};
        let mut options = MqttOptions::new(client_id, "localhost", port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_clean_session(!persistent)
            .set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls_config(world)),
            ));
        let (client, mut connection) = rumqttc::Client::new(options, 100);
        let messages: Arc<Mutex<Vec<Message>>> = Arc::default();
        let subacks: Arc<Mutex<u32>> = Arc::default();
        let (m, s, c) = (messages.clone(), subacks.clone(), client.clone());
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = c.try_subscribe("#", QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => *s.lock().unwrap() += 1,
                    Ok(Event::Incoming(Packet::Publish(p))) => m.lock().unwrap().push(Message {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                        received: std::time::SystemTime::now(),
                    }),
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => return,
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        let sub = Self {
            messages,
            subacks,
            client,
        };
        sub.wait_subscribed(0);
        sub
    }

    /// Waits until more than `seen` subscriptions have been acknowledged.
    pub fn wait_subscribed(&self, seen: u32) {
        wait_for(PATIENCE, || {
            (*self.subacks.lock().unwrap() > seen).then_some(())
        })
        .expect("subscriber never got its SUBACK");
    }

    /// Publishes as the cloud (QoS 1), e.g. a command to the device.
    pub fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .unwrap();
    }

    pub fn suback_count(&self) -> u32 {
        *self.subacks.lock().unwrap()
    }

    pub fn snapshot(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    pub fn on(&self, suffix: &str) -> Vec<Message> {
        self.snapshot()
            .into_iter()
            .filter(|m| m.topic.ends_with(suffix))
            .collect()
    }

    /// Waits for a message whose topic ends in `suffix` and that satisfies `pred`.
    pub fn wait_message(&self, suffix: &str, pred: impl Fn(&Message) -> bool) -> Message {
        wait_for(PATIENCE, || self.on(suffix).into_iter().find(&pred)).unwrap_or_else(|| {
            panic!(
                "no matching message on *{suffix}; got {:?}",
                self.snapshot()
                    .iter()
                    .map(|m| (&m.topic, String::from_utf8_lossy(&m.payload)))
                    .collect::<Vec<_>>()
            )
        })
    }
}

impl Subscriber {
    /// The clip named by a clip record's manifest, reassembled from the chunks received so
    /// far (each index once, whatever was re-sent); `None` while some are missing.
    pub fn clip(&self, manifest: &serde_json::Value) -> Option<Vec<u8>> {
        let id = manifest["clip_id"].as_str()?;
        let count = manifest["chunks"].as_u64()? as u32;
        let mut chunks = std::collections::BTreeMap::new();
        for m in self.on("/clip_data") {
            let (header, data) = camagent::wire::chunk::parse(&m.payload).ok()?;
            if header.clip_id == id {
                chunks.insert(header.index, data.to_vec());
            }
        }
        (chunks.len() as u32 == count && chunks.keys().copied().eq(0..count))
            .then(|| chunks.into_values().flatten().collect())
    }

    /// Chunk messages received for clip `id`, re-sent ones included.
    pub fn chunk_messages(&self, id: &str) -> usize {
        self.on("/clip_data")
            .iter()
            .filter(|m| {
                camagent::wire::chunk::parse(&m.payload).is_ok_and(|(h, _)| h.clip_id == id)
            })
            .count()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

fn tls_config(world: &World) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(world.pki.ca_file("main")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(&world.cloud.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&world.cloud.key).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    Arc::new(config)
}

/// A fake board: device facts in files, so tests know every value that could leak.
pub struct Board {
    pub dir: PathBuf,
}

pub const SERIAL: &str = "CAMSN0042";
pub const MAC: &str = "02:00:5e:10:20:30";
pub const MODEL: &str = "Acme IPC-7";
pub const FIRMWARE: &str = "4.2.0-test";
pub const TIMEZONE: &str = "Europe/Berlin";

impl Board {
    pub fn new(root: &Path) -> Self {
        let dir = root.join("board");
        std::fs::create_dir_all(dir.join("net/eth0")).unwrap();
        std::fs::write(dir.join("net/eth0/address"), format!("{MAC}\n")).unwrap();
        std::fs::write(dir.join("serial-number"), format!("{SERIAL}\0")).unwrap();
        std::fs::write(dir.join("model"), format!("{MODEL}\0")).unwrap();
        std::fs::write(
            dir.join("os-release"),
            format!("NAME=\"CamOS\"\nVERSION_ID=\"{FIRMWARE}\"\n"),
        )
        .unwrap();
        std::fs::write(dir.join("timezone"), format!("{TIMEZONE}\n")).unwrap();
        Self { dir }
    }

    /// `[device]` pointing at the fake board, plus `extra` lines of `[device.sources]`.
    pub fn device_section(&self, extra: &str) -> String {
        let d = self.dir.display();
        format!(
            "[device]\ninterface = \"eth0\"\nnet_class_dir = \"{d}/net\"\n\n[device.sources]\n\
             serial_number = {{ file = \"{d}/serial-number\" }}\n\
             model = {{ file = \"{d}/model\" }}\n\
             firmware_version = {{ file = \"{d}/os-release\", key = \"VERSION_ID\" }}\n\
             timezone = {{ file = \"{d}/timezone\" }}\n{extra}"
        )
    }
}

/// Writes a policy with the given fields for the activation and status flows (contract).
pub fn write_policy(path: &Path, activation_fields: &[&str], status_fields: &[&str]) {
    let list = |f: &[&str]| {
        f.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    std::fs::write(
        path,
        format!(
            "schema = 1\nname = \"test policy\"\nversion = \"1\"\n\n\
             [[purpose]]\nid = \"device_activation\"\nflow = \"activation\"\nlegal_basis = \"contract\"\nfields = [{}]\n\n\
             [[purpose]]\nid = \"device_status\"\nflow = \"status\"\nlegal_basis = \"contract\"\nfields = [{}]\n",
            list(activation_fields),
            list(status_fields)
        ),
    )
    .unwrap();
}

/// Options for the agent's config file.
pub struct AgentSetup {
    pub host: String,
    pub port: u16,
    pub ca_file: PathBuf,
    pub facts_interval: &'static str,
    pub telemetry_interval: &'static str,
    /// Extra `[device.sources]` lines.
    pub sources: String,
    /// Extra config sections, e.g. `[commands]`.
    pub extra: String,
    /// Extra `[broker]` lines.
    pub broker_extra: String,
    pub reconnect_min: &'static str,
    pub reconnect_max: &'static str,
}

impl AgentSetup {
    pub fn new(world: &World, port: u16) -> Self {
        Self {
            host: "localhost".into(),
            port,
            ca_file: world.pki.ca_file("main"),
            facts_interval: "1h",
            telemetry_interval: "1h",
            sources: String::new(),
            extra: String::new(),
            broker_extra: String::new(),
            reconnect_min: "100ms",
            reconnect_max: "1s",
        }
    }

    /// Writes config, policy and board under `dir`; returns the config path.
    pub fn write(&self, world: &World, dir: &Path, policy: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let board = Board::new(dir);
        let config = dir.join("camagent.toml");
        std::fs::write(
            &config,
            format!(
                "[broker]\nhost = \"{host}\"\nport = {port}\n\
                 ca_file = \"{ca}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n\
                 topic_prefix = \"test/cams\"\nkeep_alive = \"10s\"\n\
                 reconnect_min = \"{rmin}\"\nreconnect_max = \"{rmax}\"\n{broker_extra}\n\
                 [agent]\nstate_dir = \"{state}\"\npolicy_file = \"{policy}\"\n\
                 facts_interval = \"{interval}\"\ntelemetry_interval = \"{telemetry}\"\n\n{extra}\n{device}",
                host = self.host,
                port = self.port,
                ca = self.ca_file.display(),
                cert = world.device.cert.display(),
                key = world.device.key.display(),
                rmin = self.reconnect_min,
                rmax = self.reconnect_max,
                broker_extra = self.broker_extra,
                state = dir.join("state").display(),
                policy = policy.display(),
                interval = self.facts_interval,
                telemetry = self.telemetry_interval,
                extra = self.extra,
                device = board.device_section(&self.sources),
            ),
        )
        .unwrap();
        config
    }
}

/// A command for the agent binary; under cross-test runs (`cross/qemu-armv7`) it goes through
/// the emulator named in `CAMAGENT_TEST_EXEC_WRAPPER`, as the test binary itself does.
pub fn agent_command(bin: &str) -> Command {
    match exec_wrapper() {
        Some(wrapper) => {
            let mut c = Command::new(wrapper);
            c.arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

/// The reference receiver, a binary of the workspace's `camagent-receiver` package: built
/// beside the agent (`agent`) by `cargo test --workspace`.
pub fn receiver_bin(agent: &str) -> String {
    let receiver = Path::new(agent).with_file_name("camagent-receiver");
    assert!(
        receiver.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        receiver.display()
    );
    receiver.display().to_string()
}

/// The number in environment variable `name` (a run's size or seed), or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The cloud's command-signing key (Ed25519): devices verify with its public half
/// (`commands.verify_key`), the reference receiver signs with it (`--command-key`).
pub struct Cloud {
    pkcs8: Vec<u8>,
    key: ring::signature::Ed25519KeyPair,
}

impl Cloud {
    pub fn new() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Self {
            key: ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    /// The public key as `commands.verify_key` takes it.
    pub fn public_hex(&self) -> String {
        use ring::signature::KeyPair;
        camagent::hex::encode(self.key.public_key().as_ref())
    }

    /// A signed command carrying `body`.
    pub fn sign(&self, body: &serde_json::Value) -> Vec<u8> {
        let body = body.to_string();
        let sig = camagent::hex::encode(self.key.sign(body.as_bytes()).as_ref());
        serde_json::json!({"body": body, "sig": sig})
            .to_string()
            .into_bytes()
    }

    /// Writes the key (PKCS#8 DER, for the receiver's `--command-key`) in `dir`.
    pub fn key_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("command.key");
        std::fs::write(&path, &self.pkcs8).unwrap();
        path
    }
}

/// `mosquitto_pub` to the broker on `port` at QoS 1 with the cloud's identity: for messages
/// larger than the harness's own client takes, and as a reference sender.
pub fn mosquitto_pub(world: &World, port: u16) -> Command {
    let mut command = Command::new("mosquitto_pub");
    command
        .args(["-h", "localhost", "-p", &port.to_string(), "-q", "1"])
        .arg("--cafile")
        .arg(world.pki.ca_file("main"))
        .arg("--cert")
        .arg(&world.cloud.cert)
        .arg("--key")
        .arg(&world.cloud.key);
    command
}

/// Publishes the bytes of `file` to `topic` with [`mosquitto_pub`].
pub fn publish_file(world: &World, port: u16, topic: &str, file: &Path) {
    let status = mosquitto_pub(world, port)
        .args(["-t", topic, "-f"])
        .arg(file)
        .status()
        .expect("mosquitto_pub (mosquitto-clients)");
    assert!(status.success(), "mosquitto_pub to {topic}");
}

/// The reference receiver as a child process, subscribed to the test broker with the cloud's
/// identity; its JSON lines are collected in a file. Killed when dropped.
pub struct ReceiverProcess {
    child: Child,
    lines: PathBuf,
    pub out: PathBuf,
}

impl ReceiverProcess {
    /// Starts it in `dir` with `args` (`--audit POLICY`, `--command-key KEY`) and waits until
    /// it is subscribed (it reports nothing of that, so a second's grace).
    pub fn start(
        agent_bin: &str,
        world: &World,
        port: u16,
        dir: &Path,
        args: &[&std::ffi::OsStr],
    ) -> Self {
        let config = dir.join("receiver.toml");
        std::fs::write(
            &config,
            format!(
                "[broker]\nhost = \"localhost\"\nport = {port}\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\ntopic_prefix = \"test/cams\"\n",
                world.pki.ca_file("main").display(),
                world.cloud.cert.display(),
                world.cloud.key.display(),
            ),
        )
        .unwrap();
        let out = dir.join("received");
        let lines = dir.join("receiver.jsonl");
        let mut command = agent_command(&receiver_bin(agent_bin));
        command
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .args(args);
        let child = command
            .stdout(std::fs::File::create(&lines).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(1));
        Self { child, lines, out }
    }

    /// Every line it printed so far.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.lines)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Its lines of `kind` (`"clip"`, `"alert"`, ...).
    pub fn of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["type"] == kind)
            .collect()
    }
}

impl Drop for ReceiverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The emulator the agent runs under (`cross/qemu-armv7` sets it), if any.
fn exec_wrapper() -> Option<String> {
    std::env::var("CAMAGENT_TEST_EXEC_WRAPPER")
        .ok()
        .filter(|w| !w.is_empty())
}

/// The agent binary as a child process, its log captured to a file.
pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
}

impl Agent {
    pub fn start(bin: &str, config: &Path) -> Self {
        Self::start_with_env(bin, config, &[])
    }

    /// Starts the agent with extra environment variables (`TZ`, …).
    pub fn start_with_env(bin: &str, config: &Path, env: &[(&str, &str)]) -> Self {
        let log = config.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let child = agent_command(bin)
            .arg("--config")
            .arg(config)
            .args(["run", "--allow-root"])
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str) {
        wait_for(PATIENCE, || self.log().contains(needle).then_some(()))
            .unwrap_or_else(|| panic!("agent never logged {needle:?}; log:\n{}", self.log()));
    }

    /// The device's own pseudonymous id, as logged at start (command topic, client id).
    pub fn anchor_id(&self) -> String {
        self.wait_log("camagent started");
        let log = self.log();
        let at = log.find("device_id=").expect("device_id in start line") + "device_id=".len();
        log[at..].split_whitespace().next().unwrap().to_owned()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM and wait: the clean shutdown path. An agent that does not stop fails the
    /// test with its log.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        wait_for(command_limit(exec_wrapper().is_some()), || {
            self.child.try_wait().unwrap()
        })
        .unwrap_or_else(|| panic!("the agent did not stop on SIGTERM; log:\n{}", self.log()))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long one command line may take before it counts as hung: far above what any command
/// here needs, natively or emulated. Not a timing assertion.
fn command_limit(emulated: bool) -> Duration {
    Duration::from_secs(if emulated { 90 } else { 600 })
}

/// `Command::output`, but a command that hangs is killed and fails the test with what it
/// printed, rather than stalling the whole run.
///
/// Under emulation a hang is retried once: qemu-user 7.2 now and then never finishes a
/// command that exits at once natively (seen in CI; not reproduced in hundreds of direct
/// runs). Each retry is written to `emulation-retries.log` in the test target's temporary
/// directory, which `.ci/run` prints. Natively a hang always fails.
pub fn output(cmd: &mut Command) -> Output {
    let emulated = exec_wrapper().is_some();
    let limit = command_limit(emulated);
    match output_within(cmd, limit) {
        Ok(out) => out,
        Err(hung) if emulated => {
            let note = format!("retried once under emulation: {hung}\n");
            eprint!("{note}");
            // Integration tests have a target temporary directory; the examples have none.
            if let Some(dir) = option_env!("CARGO_TARGET_TMPDIR") {
                let log = Path::new(dir).join("emulation-retries.log");
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log);
                if let Ok(mut file) = file {
                    let _ = file.write_all(note.as_bytes());
                }
            }
            output_within(cmd, limit).unwrap_or_else(|hung| panic!("{hung}"))
        }
        Err(hung) => panic!("{hung}"),
    }
}

fn output_within(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    fn drain(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = from.read_to_end(&mut bytes);
            bytes
        })
    }
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_for(limit, || child.try_wait().expect("waiting on a child"));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = stderr.join().unwrap_or_default();
    let stdout = stdout.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "{cmd:?} still running after {limit:?}, killed; its stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        )),
    }
}

/// Lowercase hex SHA-256, as manifests carry it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Records waiting in the outbox of the agent whose files are under `agent_dir`.
pub fn queued_records(agent_dir: &Path) -> usize {
    std::fs::read_dir(agent_dir.join("state/outbox"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "rec"))
                .count()
        })
        .unwrap_or(0)
}

/// `camagent status --json`, parsed; `None` until the agent has written a status.
pub fn status_json(bin: &str, config: &Path) -> Option<serde_json::Value> {
    let (ok, out, _) = cli_with(bin, config, &["status", "--json"]);
    ok.then(|| serde_json::from_str(&out).ok()).flatten()
}

/// `camagent --config CONFIG ARGS…` to completion; returns (success, stdout, stderr).
pub fn cli_with(bin: &str, config: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    cli(bin, &all)
}

/// Runs a `camagent` command line to completion; returns (success, stdout, stderr).
pub fn cli(bin: &str, args: &[&str]) -> (bool, String, String) {
    let out = output(agent_command(bin).args(args));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Extra `[device.sources]` for a board that holds every kind of fact, secrets included, so
/// tests can prove which never leave. Values are distinct strings that cannot occur by chance.
pub fn rich_sources() -> String {
    RICH_FACTS
        .iter()
        .map(|(field, value)| format!("{field} = {{ value = {value:?} }}\n"))
        .collect()
}

pub const RICH_FACTS: [(&str, &str); 9] = [
    ("ip_address", "192.168.77.42"),
    ("device_name", "Front-Door-Cam"),
    ("country", "Country-DE-Test"),
    ("location", "48.13743,11.57549"),
    ("wifi_ssid", "HomeNet-Secret-5G"),
    ("channel", "channel-A1"),
    ("configuration", "cfg-motion-on"),
    ("device_credentials", "admin-pass-hunter2"),
    ("email_alert_credentials", "owner@mail.test:mailpass-9"),
];

/// The number logged as `name` (`units=`, `media_s=`) on the first line of `log` holding
/// `what`.
pub fn log_field(log: &str, what: &str, name: &str) -> f64 {
    log_field_text(log, what, name).parse().unwrap()
}

/// The text of field `name` in the first log line that contains `what`.
pub fn log_field_text<'a>(log: &'a str, what: &str, name: &str) -> &'a str {
    let line = log
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no {what:?} in the log:\n{log}"));
    let at = line
        .find(name)
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len();
    line[at..].split_whitespace().next().unwrap_or_default()
}

/// What the agent logs when a scene went still and its detector decodes keyframes only.
pub const KEYFRAMES_ONLY: &str = "the scene is still: decoding keyframes only";

/// Runs `filesrc location=PATH ! TAIL ! appsink` to the end, mapping each sample with `each`;
/// an error on the pipeline's bus fails the test rather than cutting the samples short.
pub fn pull_all<T>(
    path: &Path,
    tail: &str,
    mut each: impl FnMut(&gstreamer::Sample) -> T,
) -> Vec<T> {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! {tail} ! appsink name=sink sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gstreamer_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        out.push(each(&sample));
    }
    let error = pipeline
        .bus()
        .unwrap()
        .pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(error.is_none(), "{}: {error:?}", path.display());
    out
}
