//! Options of the `ssh` backend.
//!
//! ```toml
//! backend = "ssh"
//! [ssh]
//! hosts = ["4/alice@node1", "2/alice@node2:2222"]   # [slots/][user@]host[:port]
//! key = "~/.ssh/id_ed25519"        # default: the ssh agent, then ~/.ssh/id_*
//! known_hosts = "~/.ssh/known_hosts"
//! host_key_check = "strict"        # "strict" | "accept-new" | "off"
//! connect_timeout = 10             # seconds
//! worker_path = "/shared/bin/app"  # the binary is on a shared filesystem: no copy
//! remote_dir = ".cache/otwrap"     # where copies go, relative to the remote home
//! ```

use crate::core::options::{HostKeyCheck, HostSpec, SshOptions};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::value::{unknown_key, RawValue};

impl FromStr for HostSpec {
    type Err = String;

    /// Parses `[slots/][user@]host[:port]`, e.g. `8/alice@node3:2222`
    /// (GNU parallel's `--sshlogin` form); one slot when not written.
    fn from_str(text: &str) -> Result<Self, String> {
        let spec = text.trim();
        let bad = |why: &str| {
            format!("invalid host `{spec}`: {why}; expected `[slots/][user@]host[:port]`, e.g. `4/alice@node1:22`")
        };
        let (slots, rest) = match spec.split_once('/') {
            Some((n, rest)) => (
                n.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        bad("the slot count before `/` must be a whole number of at least 1")
                    })?,
                rest,
            ),
            None => (1, spec),
        };
        let (user, rest) = match rest.split_once('@') {
            Some((u, rest)) if !u.is_empty() => (Some(u.to_string()), rest),
            Some(_) => return Err(bad("the user before `@` is empty")),
            None => (None, rest),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            // [::1]:2222
            let (h, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("a `[` address needs its `]`"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after `]`")),
            };
            (h, port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
            None => 22,
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad("the host name is empty or contains spaces"));
        }
        Ok(HostSpec {
            host: host.to_string(),
            port,
            user,
            slots,
        })
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if self.port != 22 {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl FromStr for HostKeyCheck {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "strict" | "yes" => Ok(HostKeyCheck::Strict),
            "accept-new" | "accept_new" => Ok(HostKeyCheck::AcceptNew),
            "off" | "no" => Ok(HostKeyCheck::Off),
            _ => Err(format!(
                "unknown host key policy `{s}`; expected one of: strict, accept-new, off"
            )),
        }
    }
}

impl SshOptions {
    /// The keys of the `[ssh]` section (and of the attribute).
    pub const KEYS: &'static [&'static str] = &[
        "hosts",
        "key",
        "known_hosts",
        "host_key_check",
        "connect_timeout",
        "worker_path",
        "remote_dir",
    ];

    /// Sets one option from its written form.
    pub fn set(&mut self, key: &str, value: RawValue) -> Result<(), String> {
        match key {
            "hosts" => {
                let hosts = value
                    .list(',')?
                    .iter()
                    .map(|h| h.parse::<HostSpec>())
                    .collect::<Result<Vec<_>, _>>()?;
                if hosts.is_empty() {
                    return Err("expected at least one host, e.g. [\"4/alice@node1\"]".into());
                }
                self.hosts = Some(hosts);
            }
            "key" => self.key = Some(value.path()?),
            "known_hosts" => self.known_hosts = Some(value.path()?),
            "host_key_check" => self.host_key_check = Some(value.string()?.parse()?),
            "connect_timeout" => self.connect_timeout = Some(value.seconds("10")?),
            "worker_path" => self.worker_path = Some(PathBuf::from(value.string()?)),
            "remote_dir" => self.remote_dir = Some(value.string()?),
            _ => return Err(unknown_key("ssh", key, Self::KEYS)),
        }
        Ok(())
    }

    /// `self` over `lower`.
    pub fn over(self, lower: SshOptions) -> SshOptions {
        SshOptions {
            hosts: self.hosts.or(lower.hosts),
            key: self.key.or(lower.key),
            known_hosts: self.known_hosts.or(lower.known_hosts),
            host_key_check: self.host_key_check.or(lower.host_key_check),
            connect_timeout: self.connect_timeout.or(lower.connect_timeout),
            worker_path: self.worker_path.or(lower.worker_path),
            remote_dir: self.remote_dir.or(lower.remote_dir),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_specs_parse_in_every_form() {
        let h: HostSpec = "8/alice@node3:2222".parse().expect("valid");
        assert_eq!(
            h,
            HostSpec {
                host: "node3".into(),
                port: 2222,
                user: Some("alice".into()),
                slots: 8
            }
        );
        assert_eq!(h.to_string(), "alice@node3:2222");
        let h: HostSpec = "127.0.0.2".parse().expect("valid");
        assert_eq!((h.port, h.slots, h.user), (22, 1, None));
        let h: HostSpec = "2/[::1]:2200".parse().expect("valid");
        assert_eq!((h.host.as_str(), h.port, h.slots), ("::1", 2200, 2));
    }

    #[test]
    fn bad_host_specs_say_what_is_wrong() {
        for (spec, hint) in [
            ("0/node", "at least 1"),
            ("x/node", "whole number"),
            ("node:99999", "port"),
            ("@node", "user"),
            ("", "host name"),
        ] {
            let e = spec.parse::<HostSpec>().unwrap_err();
            assert!(e.contains(hint), "{spec}: {e}");
        }
    }

    #[test]
    fn set_checks_keys_and_values() {
        let mut o = SshOptions::default();
        o.set("hosts", RawValue::Str("2/a@h1, 3/h2:2222".into()))
            .expect("valid");
        assert_eq!(o.hosts.as_ref().map(|h| h.len()), Some(2));
        let e = o.set("host", RawValue::Str("h".into())).unwrap_err();
        assert!(e.contains("did you mean `hosts`"), "{e}");
        let e = o
            .set("host_key_check", RawValue::Str("maybe".into()))
            .unwrap_err();
        assert!(e.contains("accept-new"), "{e}");
    }
}
