//! A real RTSP camera for the tests: gst-rtsp-server, run by `rtsp_camera.py` on the host's
//! Python and GStreamer (also when the test itself runs under qemu-arm), with a password.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use super::scenes::host_command;

pub struct RtspCamera {
    child: Child,
    pub port: u16,
}

impl RtspCamera {
    /// Serves each `(path, clip)` at `rtsp://127.0.0.1:port/path` to `user` with `password`.
    pub fn start(port: u16, user: &str, password: &str, mounts: &[(&str, &Path)]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/rtsp_camera.py");
        let mut child = host_command("/usr/bin/python3")
            .arg(script)
            .args([&port.to_string(), user, password])
            .args(
                mounts
                    .iter()
                    .map(|(path, clip)| format!("{path}={}", clip.display())),
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with gst-rtsp-server's bindings (scripts/install-deps)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the RTSP camera did not start");
        Self { child, port }
    }

    /// Hangs the camera (SIGSTOP): its connections stay open and it sends nothing more.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Wakes a [`RtspCamera::freeze`]d camera.
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id() as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal {signal}");
    }

    /// Pulls the plug: SIGKILL, no RTSP teardown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RtspCamera {
    fn drop(&mut self) {
        self.kill();
    }
}
