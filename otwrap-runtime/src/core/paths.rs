//! Small path and quoting helpers every layer uses (one copy each).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// `path` made absolute against the current directory (unchanged if that
/// cannot be read): paths in messages and across processes must not depend
/// on where the reader stands.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Quotes a word for a POSIX shell: as it is when every character is plain
/// (letters, digits, `/._-+=:,@%`), else in single quotes with `'` written
/// `'\''`.
///
/// ```
/// use otwrap_runtime::core::paths::shell_quote;
/// assert_eq!(shell_quote("/usr/bin/app"), "/usr/bin/app");
/// assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
/// assert_eq!(shell_quote(""), "''");
/// assert_eq!(shell_quote("$(rm -rf ~)"), "'$(rm -rf ~)'");
/// ```
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        return word.to_string();
    }
    let quoted = quote_bytes(word.as_bytes());
    String::from_utf8(quoted).unwrap_or_default()
}

/// Quotes any argument (not necessarily UTF-8) in single quotes for a POSIX
/// shell, byte for byte.
pub fn shell_quote_os(arg: &OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    OsString::from_vec(quote_bytes(arg.as_bytes()))
}

fn quote_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut quoted = Vec::with_capacity(bytes.len() + 2);
    quoted.push(b'\'');
    for &byte in bytes {
        if byte == b'\'' {
            quoted.extend_from_slice(br"'\''");
        } else {
            quoted.push(byte);
        }
    }
    quoted.push(b'\'');
    quoted
}
