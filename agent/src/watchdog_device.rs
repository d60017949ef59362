//! A watchdog the agent holds open and feeds: a Linux hardware watchdog
//! (`/dev/watchdogN`, linux/watchdog.h) or, in tests, a stand-in listening on
//! a Unix stream socket.
//!
//! The contract is the kernel's: once the device is open the countdown runs;
//! [`WatchdogDevice::keepalive`] restarts it; only the *magic close*
//! ([`WatchdogDevice::disarm`]: write `V`, then close) stops it. Dropping a
//! [`WatchdogDevice`] without `disarm` closes the descriptor WITHOUT the
//! magic character, so the watchdog keeps counting and resets the machine at
//! expiry. That is deliberate: an agent that crashes, hangs or exits without
//! a clean shutdown must not leave a node that may still run resources.
//! (A driver built with `nowayout` ignores even the magic close.)
//!
//! Stand-in protocol, line based, the client connects:
//! `arm <ms>` → `ok <ms>` (the timeout it set) or `err <reason>`;
//! `kick` (no reply); `V` then close → disarmed; a close without `V` → the
//! countdown goes on.
//!
//! All calls block, each for microseconds (the stand-in's `arm` waits at
//! most [`STAND_IN_REPLY_TIMEOUT`] for its reply): call them where blocking is
//! allowed.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;

/// How long the stand-in client waits for the reply to `arm`.
pub const STAND_IN_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// An I/O operation on the path (stat, open, connect, write) failed.
    #[error("watchdog {}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    /// A watchdog ioctl failed. `hint` is empty or a parenthesised
    /// explanation (e.g. " (not a watchdog device)" for ENOTTY).
    #[error("watchdog {}: {op}: {}{hint}", path.display(), strerror(*errno))]
    Ioctl {
        path: PathBuf,
        op: &'static str,
        // Not a #[source]: nix's text for it is dated ("Not a typewriter").
        errno: Errno,
        hint: &'static str,
    },
    #[error(
        "watchdog {}: neither a character device (a Linux watchdog) nor a Unix socket (the test stand-in): it is {kind}",
        path.display()
    )]
    Neither { path: PathBuf, kind: &'static str },
    #[error("watchdog {}: timeout {timeout:?} is out of range: {why}", path.display())]
    BadTimeout {
        path: PathBuf,
        timeout: Duration,
        why: &'static str,
    },
    #[error("watchdog {}: the stand-in refused to arm: {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
    #[error("watchdog {}: the stand-in's reply to arm: {what}", path.display())]
    Protocol { path: PathBuf, what: String },
}

/// An open, armed watchdog. Dropping it without [`disarm`](Self::disarm)
/// closes it WITHOUT the magic close: the countdown keeps running and the
/// machine is reset when it expires (see the module documentation).
#[derive(Debug)]
pub struct WatchdogDevice {
    path: PathBuf,
    timeout: Duration,
    identity: String,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Device(File),
    StandIn(UnixStream),
}

/// The raw ioctls of linux/watchdog.h. nix's wrappers are `unsafe fn`s
/// (they take raw pointers); each call below passes a pointer to a live,
/// correctly sized local and the descriptor of an open file.
#[allow(unsafe_code)]
mod ioctl {
    use std::os::fd::RawFd;

    use nix::libc::c_int;

    /// `struct watchdog_info` of linux/watchdog.h.
    #[repr(C)]
    pub struct WatchdogInfo {
        pub options: u32,
        pub firmware_version: u32,
        pub identity: [u8; 32],
    }

    nix::ioctl_read!(wdioc_getsupport, b'W', 0, WatchdogInfo);
    nix::ioctl_read!(wdioc_keepalive, b'W', 5, c_int);
    nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, c_int);
    nix::ioctl_read!(wdioc_gettimeout, b'W', 7, c_int);

    /// WDIOC_SETTIMEOUT; returns the timeout the driver says it set.
    pub fn set_timeout(fd: RawFd, secs: c_int) -> nix::Result<c_int> {
        let mut v = secs;
        // SAFETY: `v` is a live c_int for the duration of the call; the
        // kernel reads and writes exactly one int through the pointer.
        unsafe { wdioc_settimeout(fd, &mut v) }?;
        Ok(v)
    }

    /// WDIOC_GETTIMEOUT.
    pub fn get_timeout(fd: RawFd) -> nix::Result<c_int> {
        let mut v: c_int = 0;
        // SAFETY: as above; the kernel writes one int.
        unsafe { wdioc_gettimeout(fd, &mut v) }?;
        Ok(v)
    }

    /// WDIOC_KEEPALIVE (the argument is ignored by the kernel).
    pub fn keepalive(fd: RawFd) -> nix::Result<()> {
        let mut v: c_int = 0;
        // SAFETY: as above; a valid int pointer is passed.
        unsafe { wdioc_keepalive(fd, &mut v) }?;
        Ok(())
    }

    /// WDIOC_GETSUPPORT.
    pub fn get_support(fd: RawFd) -> nix::Result<WatchdogInfo> {
        let mut info = WatchdogInfo {
            options: 0,
            firmware_version: 0,
            identity: [0; 32],
        };
        // SAFETY: `info` is a live, #[repr(C)] struct of exactly the size
        // encoded in the request number; the kernel writes it whole.
        unsafe { wdioc_getsupport(fd, &mut info) }?;
        Ok(info)
    }
}

/// The C library's message for `errno` (nix's own `desc` has older texts,
/// e.g. "Not a typewriter" for ENOTTY).
fn strerror(errno: Errno) -> String {
    let mut msg = std::io::Error::from(errno).to_string();
    let suffix = format!(" (os error {})", errno as i32);
    if let Some(n) = msg.strip_suffix(&suffix).map(str::len) {
        msg.truncate(n);
    }
    msg
}

fn describe(ft: std::fs::FileType) -> &'static str {
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else {
        "something else"
    }
}

impl WatchdogDevice {
    /// Open `path` and arm it with `timeout`. A character device is a Linux
    /// watchdog: WDIOC_SETTIMEOUT with the timeout in whole seconds rounded
    /// up (at least 1), WDIOC_GETTIMEOUT to read back what the driver really
    /// set, WDIOC_GETSUPPORT for its identity (optional). A Unix socket is
    /// the test stand-in (millisecond timeouts). Anything else is an error.
    ///
    /// Opening a real watchdog starts its countdown at once. If arming then
    /// fails on a device that is a watchdog, it is magic-closed (best
    /// effort) so that a configuration error does not reset the machine.
    pub fn open(path: &Path, timeout: Duration) -> Result<Self, WatchdogError> {
        let meta = std::fs::metadata(path).map_err(|source| WatchdogError::Io {
            path: path.to_owned(),
            op: "stat",
            source,
        })?;
        let ft = meta.file_type();
        if ft.is_char_device() {
            Self::open_device(path, timeout)
        } else if ft.is_socket() {
            Self::open_stand_in(path, timeout)
        } else {
            Err(WatchdogError::Neither {
                path: path.to_owned(),
                kind: describe(ft),
            })
        }
    }

    fn open_device(path: &Path, timeout: Duration) -> Result<Self, WatchdogError> {
        let bad = |why| WatchdogError::BadTimeout {
            path: path.to_owned(),
            timeout,
            why,
        };
        if timeout.is_zero() {
            return Err(bad("it must be positive"));
        }
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let secs = nix::libc::c_int::try_from(secs.max(1))
            .map_err(|_| bad("too many seconds for the watchdog API"))?;
        // O_WRONLY (write only) | O_CLOEXEC (std sets it anyway).
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| WatchdogError::Io {
                path: path.to_owned(),
                op: "open",
                source,
            })?;
        let fd = file.as_raw_fd();
        let ioctl_err = |op, errno: Errno| WatchdogError::Ioctl {
            path: path.to_owned(),
            op,
            errno,
            hint: if errno == Errno::ENOTTY {
                " (not a watchdog device)"
            } else {
                ""
            },
        };
        if let Err(errno) = ioctl::set_timeout(fd, secs) {
            if errno != Errno::ENOTTY {
                // A watchdog that refused the timeout: it is counting now
                // with its default; stop it rather than reset the machine.
                magic_close(file);
            }
            return Err(ioctl_err("WDIOC_SETTIMEOUT", errno));
        }
        let real = match ioctl::get_timeout(fd) {
            Ok(s) if s > 0 => s,
            Ok(_) => {
                magic_close(file);
                return Err(ioctl_err("WDIOC_GETTIMEOUT", Errno::EINVAL));
            }
            Err(errno) => {
                magic_close(file);
                return Err(ioctl_err("WDIOC_GETTIMEOUT", errno));
            }
        };
        let identity = ioctl::get_support(fd)
            .ok()
            .map(|info| {
                let end = info.identity.iter().position(|&b| b == 0).unwrap_or(32);
                String::from_utf8_lossy(&info.identity[..end])
                    .trim()
                    .to_owned()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("watchdog at {}", path.display()));
        Ok(Self {
            path: path.to_owned(),
            timeout: Duration::from_secs(real.unsigned_abs().into()),
            identity,
            inner: Inner::Device(file),
        })
    }

    fn open_stand_in(path: &Path, timeout: Duration) -> Result<Self, WatchdogError> {
        let io = |op| {
            move |source| WatchdogError::Io {
                path: path.to_owned(),
                op,
                source,
            }
        };
        let proto = |what: String| WatchdogError::Protocol {
            path: path.to_owned(),
            what,
        };
        if timeout.is_zero() {
            return Err(WatchdogError::BadTimeout {
                path: path.to_owned(),
                timeout,
                why: "it must be positive",
            });
        }
        let nanos = timeout.as_nanos();
        let ms = nanos.div_ceil(1_000_000).max(1);
        let mut stream = UnixStream::connect(path).map_err(io("connect"))?;
        stream
            .set_read_timeout(Some(STAND_IN_REPLY_TIMEOUT))
            .map_err(io("set read timeout"))?;
        stream
            .write_all(format!("arm {ms}\n").as_bytes())
            .map_err(io("send arm"))?;
        let mut line = String::new();
        let mut reader = BufReader::new(stream.try_clone().map_err(io("clone socket"))?);
        match reader.read_line(&mut line) {
            Ok(0) => return Err(proto("connection closed without a reply".into())),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(proto(format!("no reply within {STAND_IN_REPLY_TIMEOUT:?}")));
            }
            Err(e) => return Err(io("read the reply to arm")(e)),
        }
        let line = line.trim_end();
        if let Some(reason) = line.strip_prefix("err") {
            return Err(WatchdogError::Refused {
                path: path.to_owned(),
                reason: reason.trim().to_owned(),
            });
        }
        let real = line
            .strip_prefix("ok ")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&v| v > 0)
            .ok_or_else(|| proto(format!("unexpected reply {line:?}")))?;
        Ok(Self {
            path: path.to_owned(),
            timeout: Duration::from_millis(real),
            identity: format!("stand-in at {}", path.display()),
            inner: Inner::StandIn(stream),
        })
    }

    /// The timeout the device really runs with (read back).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The driver's identity (e.g. "iTCO_wdt") or "stand-in at PATH".
    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn is_stand_in(&self) -> bool {
        matches!(self.inner, Inner::StandIn(_))
    }

    /// Restart the countdown (WDIOC_KEEPALIVE; stand-in: `kick`).
    pub fn keepalive(&mut self) -> Result<(), WatchdogError> {
        match &mut self.inner {
            Inner::Device(f) => {
                ioctl::keepalive(f.as_raw_fd()).map_err(|errno| WatchdogError::Ioctl {
                    path: self.path.clone(),
                    op: "WDIOC_KEEPALIVE",
                    errno,
                    hint: "",
                })
            }
            Inner::StandIn(s) => s.write_all(b"kick\n").map_err(|source| WatchdogError::Io {
                path: self.path.clone(),
                op: "send kick",
                source,
            }),
        }
    }

    /// Clean stop: the magic close (write `V`, then close), so the countdown
    /// stops.
    pub fn disarm(self) -> Result<(), WatchdogError> {
        let path = self.path;
        let r = match self.inner {
            Inner::Device(mut f) => f.write_all(b"V"),
            Inner::StandIn(mut s) => s
                .write_all(b"V\n")
                .and_then(|()| s.shutdown(std::net::Shutdown::Write)),
        };
        // The descriptor is closed here, when the file or socket is dropped.
        r.map_err(|source| WatchdogError::Io {
            path,
            op: "magic close (write V)",
            source,
        })
    }
}

/// Best effort: stop a watchdog that was opened but could not be armed.
fn magic_close(mut f: File) {
    let _ = f.write_all(b"V");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn watchdog_device_dev_null_is_not_a_watchdog() {
        let e = WatchdogDevice::open(Path::new("/dev/null"), Duration::from_secs(10)).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(
                e,
                WatchdogError::Ioctl {
                    errno: Errno::ENOTTY,
                    ..
                }
            ),
            "{msg}"
        );
        assert_eq!(
            msg,
            "watchdog /dev/null: WDIOC_SETTIMEOUT: Inappropriate ioctl for device (not a watchdog device)"
        );
    }

    #[test]
    fn watchdog_device_regular_file_is_neither() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = WatchdogDevice::open(f.path(), Duration::from_secs(10)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, WatchdogError::Neither { .. }), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        assert!(msg.contains("neither a character device"), "{msg}");
        assert!(msg.contains("a regular file"), "{msg}");
    }

    #[test]
    fn watchdog_device_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no-such-watchdog");
        let e = WatchdogDevice::open(&p, Duration::from_secs(10)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("watchdog {}: stat: ", p.display())),
            "{msg}"
        );
        assert!(msg.contains("No such file or directory"), "{msg}");
    }

    #[test]
    fn watchdog_device_zero_timeout_is_refused() {
        let e = WatchdogDevice::open(Path::new("/dev/null"), Duration::ZERO).unwrap_err();
        assert!(matches!(e, WatchdogError::BadTimeout { .. }), "{e}");
    }

    /// A tiny stand-in: answers `arm` with `reply`, then collects every
    /// later line until the client closes.
    fn serve_once(
        listener: UnixListener,
        reply: &'static str,
    ) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut lines = Vec::new();
            for (i, l) in BufReader::new(s).lines().enumerate() {
                let l = l.unwrap();
                if i == 0 {
                    let ms: u64 = l.strip_prefix("arm ").unwrap().parse().unwrap();
                    let r = reply.replace("{ms}", &(ms * 2).to_string());
                    w.write_all(r.as_bytes()).unwrap();
                }
                lines.push(l);
            }
            lines
        })
    }

    #[test]
    fn watchdog_device_stand_in_arm_kick_disarm() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("wd.sock");
        let server = serve_once(UnixListener::bind(&sock).unwrap(), "ok {ms}\n");
        // 250.5 ms rounds up to 251; the server answers twice that.
        let mut wd = WatchdogDevice::open(&sock, Duration::from_micros(250_500)).unwrap();
        assert!(wd.is_stand_in());
        assert_eq!(wd.timeout(), Duration::from_millis(502));
        assert_eq!(wd.identity(), format!("stand-in at {}", sock.display()));
        wd.keepalive().unwrap();
        wd.keepalive().unwrap();
        wd.disarm().unwrap();
        assert_eq!(server.join().unwrap(), ["arm 251", "kick", "kick", "V"]);
    }

    #[test]
    fn watchdog_device_stand_in_drop_closes_without_v() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("wd.sock");
        let server = serve_once(UnixListener::bind(&sock).unwrap(), "ok {ms}\n");
        let mut wd = WatchdogDevice::open(&sock, Duration::from_millis(100)).unwrap();
        wd.keepalive().unwrap();
        drop(wd);
        assert_eq!(server.join().unwrap(), ["arm 100", "kick"]);
    }

    #[test]
    fn watchdog_device_stand_in_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("wd.sock");
        let server = serve_once(UnixListener::bind(&sock).unwrap(), "err same session\n");
        let e = WatchdogDevice::open(&sock, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, WatchdogError::Refused { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "watchdog {}: the stand-in refused to arm: same session",
                sock.display()
            )
        );
        server.join().unwrap();
    }
}
