//! A camera's RTSP address with its credentials kept apart. Cameras take their user name and
//! password in the URL (`rtsp://user:pass@host/path`); the agent hands them to the RTSP
//! client separately, so the address it logs, reports and passes to GStreamer (whose errors
//! quote it) never holds the password.

use std::fmt;

/// An RTSP address: printing it shows the location and, at most, the user name.
#[derive(Clone, PartialEq)]
pub struct RtspUrl {
    /// The URL without user information.
    location: String,
    user: Option<String>,
    password: Option<String>,
}

impl RtspUrl {
    /// Parses `rtsp://[user[:password]@]host[:port][/path]` (or `rtsps://`), the value of
    /// config key `key`; user and password may be percent-encoded. The error never quotes
    /// the URL.
    pub fn parse(key: &str, url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "rtsp" | "rtsps"))
            .ok_or_else(|| {
                format!("`{key}` is not an RTSP address; write it as rtsp://host:port/path")
            })?;
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(format!(
                "`{key}` names no host; write it as rtsp://host:port/path"
            ));
        }
        let (user, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                let decode = |s: &str| {
                    percent_decode(s).ok_or_else(|| {
                        format!("`{key}` has a user name or password that is not valid percent-encoding (write @ as %40, : as %3A)")
                    })
                };
                (Some(decode(user)?), password.map(decode).transpose()?)
            }
        };
        Ok(Self {
            location: format!("{scheme}://{host}{path}"),
            user,
            password,
        })
    }

    /// The address without user information: what the RTSP client connects to.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether the camera speaks RTSP over TLS (`rtsps://`).
    pub fn tls(&self) -> bool {
        self.location.starts_with("rtsps://")
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password, for the RTSP client and for the gate's list of values never to send.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

impl fmt::Debug for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The location, with the user name where there is one; the password never.
impl fmt::Display for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.user, self.location.split_once("://")) {
            (Some(user), Some((scheme, rest))) => write!(f, "{scheme}://{user}@{rest}"),
            _ => f.write_str(&self.location),
        }
    }
}

/// `s` with each `%XX` replaced by its byte; `None` if an escape is malformed or the result is
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_the_address() {
        let url = RtspUrl::parse(
            "url",
            "rtsp://admin:p%40ss:word@192.0.2.10:554/stream1?ch=2",
        )
        .unwrap();
        assert_eq!(url.location(), "rtsp://192.0.2.10:554/stream1?ch=2");
        assert_eq!(url.user(), Some("admin"));
        assert_eq!(url.password(), Some("p@ss:word"));
        let shown = format!("{url} {url:?}");
        assert!(
            !shown.contains("p@ss") && !shown.contains("p%40ss"),
            "{shown}"
        );
        assert!(shown.contains("admin@192.0.2.10"), "{shown}");
    }

    #[test]
    fn an_address_without_credentials_is_kept_as_it_is() {
        let url = RtspUrl::parse("url", "rtsps://cam.local/live").unwrap();
        assert_eq!(url.location(), "rtsps://cam.local/live");
        assert_eq!((url.user(), url.password()), (None, None));
        assert_eq!(url.to_string(), "rtsps://cam.local/live");
        assert!(url.tls());
        assert!(!RtspUrl::parse("url", "rtsp://cam.local/live")
            .unwrap()
            .tls());
    }

    #[test]
    fn errors_never_quote_the_url() {
        for bad in [
            "http://admin:hunter2@cam/x",
            "rtsp://admin:hunter2@/x",
            "rtsp://admin:hunter2%zz@cam/x",
        ] {
            let err = RtspUrl::parse("url", bad).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("`url`"), "{err}");
        }
    }
}
