//! The error type of the coupling tools and the helpers that make its
//! messages readable (command lines, exit statuses, signal names).

use std::fmt::Write as _;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while filling a template, running a program
/// or reading its results.
///
/// Messages name the file, token, line (1-based), program and exit status
/// involved, and end with what to check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CouplingError {
    /// A file (template, result file, captured output) could not be read.
    #[error("cannot read `{}`: {source}; check that the file exists and is readable", .path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// A file (filled template, capture file) could not be written.
    #[error("cannot write `{}`: {source}; check that its directory exists and is writable", .path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// A text file (a template) is not valid UTF-8.
    #[error(
        "`{}` line {line}, byte {column}: the text is not valid UTF-8; \
         save the file as UTF-8 (or ASCII)",
        .path.display()
    )]
    InvalidText {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the first invalid byte.
        line: usize,
        /// The 1-based byte offset of the first invalid byte in its line.
        column: usize,
    },

    /// A token given for substitution never occurs in the template.
    #[error(
        "token `{token}` does not occur in template `{template}`; \
         tokens are matched literally and case-sensitively, check its spelling in the template"
    )]
    TokenNotFound {
        /// The token.
        token: String,
        /// The template's file name (or the name given to [`Template::new`](super::Template::new)).
        template: String,
    },

    /// An empty string was given as a token.
    #[error("an empty token was given for template `{template}`; tokens must be non-empty")]
    EmptyToken {
        /// The template's name.
        template: String,
    },

    /// The program could not be found.
    #[error("cannot run `{program}`: program not found; {hint}")]
    ProgramNotFound {
        /// The program as given.
        program: String,
        /// Where it was looked for (the PATH, or the path as given).
        hint: String,
    },

    /// The program exists but may not be executed.
    #[error(
        "cannot run `{program}`: permission denied; \
         check that it is a regular file with execute permission (chmod +x)"
    )]
    ProgramNotExecutable {
        /// The program as given.
        program: String,
    },

    /// The run directory given to [`Program::current_dir`](super::Program::current_dir) does not exist.
    #[error("cannot run `{program}` in `{}`: the directory does not exist; create it first", .dir.display())]
    DirNotFound {
        /// The program as given.
        program: String,
        /// The missing directory.
        dir: PathBuf,
    },

    /// Starting or waiting for the program failed for another reason.
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        /// The program as given.
        program: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// The program ended unsuccessfully (non-zero exit or killed by a signal).
    #[error(
        "`{}`{} failed with {}; check its input files and logs, \
         or use .check(false) to accept this status{}",
        command_line(.program, .args),
        in_dir(.dir.as_deref()),
        describe_status(*.status),
        stderr_section(.stderr_tail)
    )]
    ProgramFailed {
        /// The program as given.
        program: String,
        /// Its arguments.
        args: Vec<String>,
        /// The run directory, when one was set.
        dir: Option<PathBuf>,
        /// How it ended.
        status: ExitStatus,
        /// The last lines of its stderr (at most about 20 lines / 2 KB),
        /// empty when stderr was not captured or was empty.
        stderr_tail: String,
    },

    /// The program did not finish in time; it and every process of its
    /// process group were killed with SIGKILL.
    #[error(
        "`{}`{} did not finish within {timeout:?} and was killed with its child processes (SIGKILL); \
         raise the timeout or look for a hang in its logs",
        command_line(.program, .args),
        in_dir(.dir.as_deref())
    )]
    Timeout {
        /// The program as given.
        program: String,
        /// Its arguments.
        args: Vec<String>,
        /// The run directory, when one was set.
        dir: Option<PathBuf>,
        /// The timeout that expired.
        timeout: Duration,
    },

    /// The batch was interrupted (Ctrl-C, SIGTERM) while the program ran;
    /// it and every process of its process group were killed with SIGKILL.
    #[error(
        "`{program}` was stopped with its child processes: the batch was interrupted by {cause}"
    )]
    Interrupted {
        /// The program as given.
        program: String,
        /// What interrupted the batch (`Ctrl-C (SIGINT)`, `SIGTERM`, ...).
        cause: &'static str,
    },

    /// What was looked for (a token, a regex match, a line, a column) is not
    /// in the result file.
    #[error("`{}`: {what}; check that the program wrote the expected output", .path.display())]
    ValueNotFound {
        /// The result file.
        path: PathBuf,
        /// What was missing, e.g. "token `Y=` occurs 1 time, occurrence 3 was asked for".
        what: String,
    },

    /// A value was found where expected but it is not a number.
    #[error("`{}` line {line}: expected a number, found `{found}`", .path.display())]
    ParseNumber {
        /// The result file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The text found (shortened when long).
        found: String,
    },

    /// An XML-ish attribute was not found.
    #[error(
        "`{}`: {}; check the element and attribute names (case-sensitive)",
        .path.display(),
        if *.element_found {
            format!("no <{element}> element has a `{attribute}` attribute")
        } else {
            format!("no <{element}> element")
        }
    )]
    AttributeNotFound {
        /// The result file.
        path: PathBuf,
        /// The element name.
        element: String,
        /// The attribute name.
        attribute: String,
        /// Whether at least one such element exists.
        element_found: bool,
    },

    /// The regular expression does not compile.
    #[error("invalid regular expression `{pattern}`: {source}")]
    InvalidRegex {
        /// The pattern as given.
        pattern: String,
        /// The regex crate's error.
        #[source]
        source: regex::Error,
    },

    /// The regular expression has no capture group to take the value from.
    #[error("regular expression `{pattern}` has no capture group; surround the number with parentheses, e.g. `Y=(\\R)`")]
    RegexWithoutGroup {
        /// The pattern as given.
        pattern: String,
    },
}

/// `prog arg1 'arg 2'`, quoting arguments only when that helps reading.
pub(crate) fn command_line(program: &str, args: &[String]) -> String {
    let mut line = String::from(program);
    for arg in args {
        line.push(' ');
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
            let _ = write!(line, "{arg:?}");
        } else {
            line.push_str(arg);
        }
    }
    line
}

fn in_dir(dir: Option<&Path>) -> String {
    dir.map(|d| format!(" in `{}`", d.display()))
        .unwrap_or_default()
}

fn stderr_section(tail: &str) -> String {
    if tail.is_empty() {
        String::from(" (stderr empty or not captured)")
    } else {
        let mut section = String::from("; end of stderr:");
        for line in tail.lines() {
            section.push_str("\n    ");
            section.push_str(line);
        }
        section
    }
}

/// "exit status 3", "signal SIGSEGV (11), core dumped".
pub(crate) fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(signal) = status.signal() {
        let core = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        match signal_name(signal) {
            Some(name) => format!("signal {name} ({signal}){core}"),
            None => format!("signal {signal}{core}"),
        }
    } else {
        format!("{status}")
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    const NAMES: &[(i32, &str)] = &[
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGSYS, "SIGSYS"),
    ];
    NAMES
        .iter()
        .find(|(number, _)| *number == signal)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes_only_when_needed() {
        let args = vec!["-x".to_string(), "my input.xml".to_string(), String::new()];
        assert_eq!(command_line("beam", &args), r#"beam -x "my input.xml" """#);
    }

    #[test]
    fn statuses_are_described_with_signal_names() {
        assert_eq!(
            describe_status(ExitStatus::from_raw(3 << 8)),
            "exit status 3"
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(libc::SIGSEGV)),
            "signal SIGSEGV (11)"
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(libc::SIGABRT | 0x80)),
            "signal SIGABRT (6), core dumped"
        );
        assert_eq!(describe_status(ExitStatus::from_raw(40)), "signal 40");
    }

    #[test]
    fn program_failed_message_quotes_stderr() {
        let err = CouplingError::ProgramFailed {
            program: "beam".into(),
            args: vec!["-x".into(), "in.xml".into()],
            dir: Some(PathBuf::from("/tmp/run-1")),
            status: ExitStatus::from_raw(2 << 8),
            stderr_tail: "beam: F est strictement negatif\n".into(),
        };
        let message = err.to_string();
        assert_eq!(
            message,
            "`beam -x in.xml` in `/tmp/run-1` failed with exit status 2; check its input files \
             and logs, or use .check(false) to accept this status; end of stderr:\n    \
             beam: F est strictement negatif"
        );
    }
}
