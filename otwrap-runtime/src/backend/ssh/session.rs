//! Connecting to one host: TCP with a deadline, the SSH handshake, the host
//! key checked against known_hosts under the chosen policy, and public-key
//! authentication (a key file, else the agent, else `~/.ssh/id_*`).

use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2::{CheckResult, HashType, KnownHostFileKind, Session};

use crate::config::{HostKeyCheck, HostSpec, SshOptions};

/// What every connection to the hosts of a batch uses.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub(crate) key: Option<PathBuf>,
    pub(crate) known_hosts: PathBuf,
    pub(crate) policy: HostKeyCheck,
    pub(crate) connect_timeout: Duration,
}

impl Access {
    pub(crate) fn from_options(options: &SshOptions) -> Access {
        Access {
            key: options.key.clone(),
            known_hosts: options
                .known_hosts
                .clone()
                .unwrap_or_else(|| home().join(".ssh").join("known_hosts")),
            policy: options.host_key_check.unwrap_or_default(),
            connect_timeout: options.connect_timeout.unwrap_or(Duration::from_secs(10)),
        }
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// The user to log in as on `host`.
pub(crate) fn user_of(host: &HostSpec) -> String {
    host.user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| "root".to_string())
}

/// An authenticated session to one host (blocking, with the connect
/// timeout on every call until the caller changes it).
pub(crate) fn connect(host: &HostSpec, access: &Access) -> Result<super::Conn, String> {
    let user = user_of(host);
    let target = format!("{user}@{host}");
    let addrs: Vec<_> = (host.host.as_str(), host.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", host.host))?
        .collect();
    let mut last = String::from("no address");
    let mut tcp = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, access.connect_timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        format!("cannot connect to {host} ({last}); is sshd running there and the port right?")
    })?;
    let _ = tcp.set_nodelay(true);
    let fd = tcp.as_raw_fd();
    let mut session =
        Session::new().map_err(|e| format!("cannot create an SSH session for {target}: {e}"))?;
    session.set_timeout(u32::try_from(access.connect_timeout.as_millis()).unwrap_or(u32::MAX));
    session.set_tcp_stream(tcp);
    session
        .handshake()
        .map_err(|e| format!("the SSH handshake with {host} failed: {e}"))?;
    check_host_key(&session, host, access)?;
    authenticate(&session, &user, host, access)?;
    Ok(super::Conn { session, fd })
}

/// The name known_hosts uses for a host and port.
fn known_name(host: &HostSpec) -> String {
    if host.port == 22 {
        host.host.clone()
    } else {
        format!("[{}]:{}", host.host, host.port)
    }
}

fn fingerprint(session: &Session) -> String {
    session
        .host_key_hash(HashType::Sha256)
        .map(|h| format!("SHA256:{}", base64_unpadded(h)))
        .unwrap_or_else(|| "unknown fingerprint".to_string())
}

fn check_host_key(session: &Session, host: &HostSpec, access: &Access) -> Result<(), String> {
    let (key, kind) = session
        .host_key()
        .ok_or_else(|| format!("{host} sent no host key"))?;
    let key = key.to_vec();
    let print = fingerprint(session);
    let file = &access.known_hosts;
    if access.policy == HostKeyCheck::Off {
        tracing::warn!(host = %host, fingerprint = %print, "host key not checked (host_key_check = \"off\")");
        return Ok(());
    }
    let mut known = session
        .known_hosts()
        .map_err(|e| format!("cannot read known hosts: {e}"))?;
    let exists = file.exists();
    if exists {
        known
            .read_file(file, KnownHostFileKind::OpenSSH)
            .map_err(|e| format!("cannot read the known_hosts file {}: {e}", file.display()))?;
    }
    match known.check_port(&host.host, host.port, &key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(format!(
            "HOST KEY MISMATCH for {host}: it presented {print}, which differs from its line in {}; \
             someone may be intercepting the connection. If the host was reinstalled, check the new \
             fingerprint and remove the old line with `ssh-keygen -R '{}' -f {}`",
            file.display(),
            known_name(host),
            file.display()
        )),
        CheckResult::NotFound if access.policy == HostKeyCheck::AcceptNew => {
            known
                .add(&known_name(host), &key, "added by otwrap", kind.into())
                .map_err(|e| format!("cannot add {host} to the known hosts: {e}"))?;
            if let Some(dir) = file.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            known
                .write_file(file, KnownHostFileKind::OpenSSH)
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            tracing::warn!(host = %host, fingerprint = %print, file = %file.display(),
                "new host key trusted on first use (host_key_check = \"accept-new\")");
            Ok(())
        }
        CheckResult::NotFound => Err(format!(
            "the host key of {host} ({print}) is unknown: it is not in {}{}. Check the fingerprint \
             with the host's administrator, then add it with `ssh-keyscan -p {} {} >> {}`, or connect \
             once with `ssh`, or set host_key_check = \"accept-new\" to trust new hosts on first use",
            file.display(),
            if exists { "" } else { " (the file does not exist)" },
            host.port,
            host.host,
            file.display()
        )),
        CheckResult::Failure => Err(format!(
            "cannot check the host key of {host} against {}",
            file.display()
        )),
    }
}

fn authenticate(
    session: &Session,
    user: &str,
    host: &HostSpec,
    access: &Access,
) -> Result<(), String> {
    let mut tried = Vec::new();
    if let Some(key) = &access.key {
        if !key.exists() {
            return Err(format!(
                "the SSH key {} does not exist (set `key` under [ssh] or OTWRAP_SSH_KEY)",
                key.display()
            ));
        }
        return match session.userauth_pubkey_file(user, None, key, None) {
            Ok(()) if session.authenticated() => Ok(()),
            Ok(()) => Err(auth_error(user, host, &[key_label(key)], "")),
            Err(e) => Err(auth_error(user, host, &[key_label(key)], e.message())),
        };
    }
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        tried.push("the ssh agent".to_string());
        if session.userauth_agent(user).is_ok() && session.authenticated() {
            return Ok(());
        }
    }
    let mut last = String::new();
    for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
        let key = home().join(".ssh").join(name);
        if key.exists() {
            tried.push(key_label(&key));
            match session.userauth_pubkey_file(user, None, &key, None) {
                Ok(()) if session.authenticated() => return Ok(()),
                Ok(()) => {}
                Err(e) => last = e.message().to_string(),
            }
        }
    }
    if tried.is_empty() {
        return Err(format!(
            "no SSH key to log in as `{user}` on {host}: no ssh agent and no ~/.ssh/id_ed25519, \
             id_ecdsa or id_rsa; set `key` under [ssh] (or OTWRAP_SSH_KEY)"
        ));
    }
    Err(auth_error(user, host, &tried, &last))
}

fn key_label(key: &Path) -> String {
    format!("the key {}", key.display())
}

fn auth_error(user: &str, host: &HostSpec, tried: &[String], detail: &str) -> String {
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    format!(
        "authentication failed as `{user}` on {}:{} with {}{detail}: is the public key in \
         ~{user}/.ssh/authorized_keys on that host, and is the key file the right one? \
         (keys with a passphrase must be loaded into ssh-agent)",
        host.host,
        host.port,
        tried.join(", ")
    )
}

/// Standard base64 without padding (the form of OpenSSH fingerprints).
fn base64_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64_unpadded(b""), "");
        assert_eq!(base64_unpadded(b"f"), "Zg");
        assert_eq!(base64_unpadded(b"fo"), "Zm8");
        assert_eq!(base64_unpadded(b"foo"), "Zm9v");
        assert_eq!(base64_unpadded(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_unpadded(&[0xff, 0xfe]), "//4");
    }

    #[test]
    fn known_hosts_names_carry_the_port_unless_22() {
        let h: HostSpec = "127.0.0.2:2222".parse().expect("valid");
        assert_eq!(known_name(&h), "[127.0.0.2]:2222");
        let h: HostSpec = "node1".parse().expect("valid");
        assert_eq!(known_name(&h), "node1");
    }
}
