//! Input-file templates: literal tokens replaced by a point's values in one
//! pass over the text, written atomically into the work directory.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{CouplingError, NumberFormat};

/// The text of an input file in which tokens (e.g. `@F@`) stand for values.
///
/// Read it once, fill it for every point. Tokens are plain strings matched
/// literally (not regexes as in `openturns.coupling_tools.replace`); every
/// occurrence of a token is replaced, a value is never re-scanned for other
/// tokens, and where two tokens overlap the earlier one wins, then the
/// longer one. A token that does not occur in the template is an error.
///
/// ```
/// use otwrap_runtime::coupling::{NumberFormat, Template};
///
/// let template = Template::new("F=@F@ L=@L@ name=@NAME@", "input.tpl");
/// let text = template
///     .replace("@F@", 3e4)
///     .replace("@L@", 255.5)
///     .replace("@NAME@", "beam")
///     .number_format(NumberFormat::Scientific { digits: 3 })
///     .render()?;
/// assert_eq!(text, "F=3.000e+04 L=2.555e+02 name=beam");
///
/// let text = template.fill(&[("@F@", 3e4), ("@L@", 1.0), ("@NAME@", 7.0)], NumberFormat::Shortest);
/// assert_eq!(text?, "F=30000 L=1 name=7");
/// # Ok::<(), otwrap_runtime::coupling::CouplingError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    name: String,
    text: String,
}

/// A value to put in place of a token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// Written with the [`NumberFormat`] in effect.
    Number(f64),
    /// Written in decimal, whatever the number format.
    Integer(i64),
    /// Written as is.
    Text(&'a str),
}

impl From<f64> for Value<'_> {
    fn from(value: f64) -> Self {
        Value::Number(value)
    }
}

impl From<i64> for Value<'_> {
    fn from(value: i64) -> Self {
        Value::Integer(value)
    }
}

impl From<i32> for Value<'_> {
    fn from(value: i32) -> Self {
        Value::Integer(value.into())
    }
}

impl From<u32> for Value<'_> {
    fn from(value: u32) -> Self {
        Value::Integer(value.into())
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(value: &'a str) -> Self {
        Value::Text(value)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(value: &'a String) -> Self {
        Value::Text(value)
    }
}

impl Template {
    /// A template from its text; `name` is used in error messages (usually
    /// the file it came from).
    pub fn new(text: impl Into<String>, name: impl Into<String>) -> Self {
        Template {
            name: name.into(),
            text: text.into(),
        }
    }

    /// Reads a template file (UTF-8); text that is not UTF-8 is an error
    /// naming the file, line and byte of the first invalid byte.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, CouplingError> {
        let path = path.as_ref();
        let bytes = fs::read(path).map_err(|source| CouplingError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|error| {
            let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            CouplingError::InvalidText {
                path: path.to_path_buf(),
                line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
                column: valid.len() - line_start + 1,
            }
        })?;
        Ok(Template::new(text, path.display().to_string()))
    }

    /// The name used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template's text, tokens included.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Starts a set of substitutions with `token` replaced by `value`;
    /// chain more [`Substitutions::replace`] calls, then render or write.
    pub fn replace<'a>(&'a self, token: &'a str, value: impl Into<Value<'a>>) -> Substitutions<'a> {
        Substitutions {
            template: self,
            items: vec![(token, value.into())],
            format: NumberFormat::default(),
        }
    }

    /// Replaces each token by its number, all printed with `format`.
    pub fn fill(
        &self,
        values: &[(&str, f64)],
        format: NumberFormat,
    ) -> Result<String, CouplingError> {
        let mut out = String::with_capacity(self.text.len() + 24 * values.len());
        self.substitute_into(
            values.len(),
            |i| values[i].0,
            |i, out| format.write(values[i].1, out),
            &mut out,
        )?;
        Ok(out)
    }

    /// [`fill`](Self::fill), then writes the result to `path` atomically
    /// (a temporary file in the same directory renamed over `path`).
    pub fn fill_to(
        &self,
        path: impl AsRef<Path>,
        values: &[(&str, f64)],
        format: NumberFormat,
    ) -> Result<(), CouplingError> {
        write_atomically(path.as_ref(), self.fill(values, format)?.as_bytes())
    }

    /// The single pass behind every substitution: at each step the earliest
    /// remaining match is replaced (the longer token on a tie), so values are
    /// never scanned for tokens.
    fn substitute_into<'t>(
        &self,
        count: usize,
        token: impl Fn(usize) -> &'t str,
        mut write_value: impl FnMut(usize, &mut String),
        out: &mut String,
    ) -> Result<(), CouplingError> {
        let text = self.text.as_str();
        let mut on_stack = [None; 16];
        let mut on_heap = Vec::new();
        let next: &mut [Option<usize>] = if count <= on_stack.len() {
            &mut on_stack[..count]
        } else {
            on_heap.resize(count, None);
            &mut on_heap
        };
        for (i, slot) in next.iter_mut().enumerate() {
            let token = token(i);
            if token.is_empty() {
                return Err(CouplingError::EmptyToken {
                    template: self.name.clone(),
                });
            }
            *slot = text.find(token);
            if slot.is_none() {
                return Err(CouplingError::TokenNotFound {
                    token: token.to_owned(),
                    template: self.name.clone(),
                });
            }
        }

        let mut cursor = 0;
        loop {
            let mut best: Option<(usize, usize)> = None;
            for (i, position) in next.iter().enumerate() {
                let Some(position) = *position else { continue };
                let better = match best {
                    None => true,
                    Some((best_position, best_i)) => {
                        position < best_position
                            || (position == best_position && token(i).len() > token(best_i).len())
                    }
                };
                if better {
                    best = Some((position, i));
                }
            }
            let Some((position, i)) = best else { break };
            out.push_str(&text[cursor..position]);
            write_value(i, out);
            cursor = position + token(i).len();
            for (j, slot) in next.iter_mut().enumerate() {
                if matches!(*slot, Some(p) if p < cursor) {
                    *slot = text[cursor..].find(token(j)).map(|p| p + cursor);
                }
            }
        }
        out.push_str(&text[cursor..]);
        Ok(())
    }
}

/// Tokens and values waiting to be substituted into a [`Template`]; made by
/// [`Template::replace`].
#[derive(Clone, Debug)]
#[must_use = "substitutions do nothing until rendered or written"]
pub struct Substitutions<'a> {
    template: &'a Template,
    items: Vec<(&'a str, Value<'a>)>,
    format: NumberFormat,
}

impl<'a> Substitutions<'a> {
    /// Also replaces `token` by `value`.
    pub fn replace(mut self, token: &'a str, value: impl Into<Value<'a>>) -> Self {
        self.items.push((token, value.into()));
        self
    }

    /// How [`Value::Number`]s are printed (default: [`NumberFormat::Shortest`]).
    pub fn number_format(mut self, format: NumberFormat) -> Self {
        self.format = format;
        self
    }

    /// The filled text.
    pub fn render(&self) -> Result<String, CouplingError> {
        let mut out = String::with_capacity(self.template.text.len() + 24 * self.items.len());
        self.render_into(&mut out)?;
        Ok(out)
    }

    /// Appends the filled text to `out` (to reuse one buffer across points).
    pub fn render_into(&self, out: &mut String) -> Result<(), CouplingError> {
        let format = self.format;
        self.template.substitute_into(
            self.items.len(),
            |i| self.items[i].0,
            |i, out| match self.items[i].1 {
                Value::Number(x) => format.write(x, out),
                Value::Integer(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::Text(text) => out.push_str(text),
            },
            out,
        )
    }

    /// Writes the filled text to `path` atomically (a temporary file in the
    /// same directory renamed over `path`).
    pub fn write_to(&self, path: impl AsRef<Path>) -> Result<(), CouplingError> {
        write_atomically(path.as_ref(), self.render()?.as_bytes())
    }
}

/// Writes next to `path` then renames, so that a reader (or a crash) never
/// sees a half-written input file: `path` is either absent, the old file or
/// the complete new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CouplingError> {
    // Unique within the process; the pid makes it unique across processes
    // sharing a directory.
    static NEXT_TEMPORARY: AtomicU64 = AtomicU64::new(0);
    let write_error = |source| CouplingError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path.file_name().ok_or_else(|| {
        write_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        ))
    })?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(file_name);
    temporary_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        NEXT_TEMPORARY.fetch_add(1, Ordering::Relaxed)
    ));
    let temporary: PathBuf = path.with_file_name(temporary_name);

    // Removing the target first makes the rename a plain one: renaming over
    // an existing file makes ext4 flush the new data to disk (auto_da_alloc),
    // which costs a few hundred microseconds per evaluation.
    // `create_new` (O_EXCL) never opens an existing entry, so a symlink
    // planted at the temporary name is refused rather than followed.
    let result = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| match fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => fs::rename(&temporary, path),
        });
    if let Err(source) = result {
        let _ = fs::remove_file(&temporary);
        return Err(write_error(source));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEAM: &str = r#"<beam><inputs F="@F@" E="@E@" L="@L@" I="@I@"/></beam>"#;

    #[test]
    fn fill_replaces_every_token_with_c_format() {
        let template = Template::new(BEAM, "beam.xml");
        let text = template
            .fill(
                &[("@F@", 3e4), ("@E@", 2.9e7), ("@L@", 255.0), ("@I@", 0.0)],
                NumberFormat::C_E,
            )
            .unwrap();
        assert_eq!(
            text,
            r#"<beam><inputs F="3.000000e+04" E="2.900000e+07" L="2.550000e+02" I="0.000000e+00"/></beam>"#
        );
    }

    #[test]
    fn every_occurrence_is_replaced_and_values_are_not_rescanned() {
        let template = Template::new("@A@ @B@ @A@", "t");
        let text = template
            .replace("@A@", "@B@")
            .replace("@B@", 2)
            .render()
            .unwrap();
        assert_eq!(text, "@B@ 2 @B@");
    }

    #[test]
    fn longer_token_wins_on_overlap() {
        let template = Template::new("X=@X@ X1=@X1@", "t");
        let text = template
            .replace("@X", "short")
            .replace("@X1@", "long")
            .replace("@X@", "exact")
            .render()
            .unwrap();
        assert_eq!(text, "X=exact X1=long");
    }

    #[test]
    fn string_integer_and_formatted_values() {
        let template = Template::new("a=@A@ n=@N@ s=@S@", "t");
        let name = String::from("beam");
        let text = template
            .replace("@A@", 0.1)
            .replace("@N@", 42_i64)
            .replace("@S@", &name)
            .number_format(NumberFormat::Fixed { decimals: 3 })
            .render()
            .unwrap();
        assert_eq!(text, "a=0.100 n=42 s=beam");

        let mut buffer = String::from(">");
        template
            .replace("@A@", 1.5e-7)
            .replace("@N@", 7_u32)
            .replace("@S@", "x")
            .render_into(&mut buffer)
            .unwrap();
        assert_eq!(buffer, ">a=1.5e-7 n=7 s=x");
    }

    #[test]
    fn missing_token_names_token_and_template() {
        let template = Template::new(BEAM, "beam_input_template.xml");
        let err = template.fill(&[("@F@", 1.0), ("@G@", 2.0)], NumberFormat::C_E);
        let err = err.unwrap_err();
        assert!(
            matches!(&err, CouplingError::TokenNotFound { token, template }
                if token == "@G@" && template == "beam_input_template.xml"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("`@G@`") && message.contains("`beam_input_template.xml`"));
    }

    #[test]
    fn empty_token_is_rejected() {
        let err = Template::new("x", "t")
            .replace("", 1.0)
            .render()
            .unwrap_err();
        assert!(matches!(err, CouplingError::EmptyToken { .. }), "{err:?}");
    }

    #[test]
    fn many_tokens_go_to_the_heap() {
        let text: String = (0..20).map(|i| format!("<{i}>")).collect();
        let tokens: Vec<String> = (0..20).map(|i| format!("<{i}>")).collect();
        let values: Vec<(&str, f64)> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as f64))
            .collect();
        let filled = Template::new(text, "t")
            .fill(&values, NumberFormat::Shortest)
            .unwrap();
        let expected: String = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(filled, expected);
    }

    #[test]
    fn from_file_and_write_to() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("template.xml");
        fs::write(&source, BEAM).unwrap();
        let template = Template::from_file(&source).unwrap();
        assert_eq!(template.name(), source.display().to_string());
        assert_eq!(template.text(), BEAM);

        let target = dir.path().join("input.xml");
        template
            .replace("@F@", 1.0)
            .replace("@E@", 2.0)
            .replace("@L@", 3.0)
            .replace("@I@", 4.0)
            .write_to(&target)
            .unwrap();
        assert_eq!(
            fs::read_to_string(&target).unwrap(),
            r#"<beam><inputs F="1" E="2" L="3" I="4"/></beam>"#
        );
        template
            .fill_to(
                &target,
                &[("@F@", 5.0), ("@E@", 6.0), ("@L@", 7.0), ("@I@", 8.0)],
                NumberFormat::Shortest,
            )
            .unwrap();
        assert!(fs::read_to_string(&target).unwrap().contains(r#"F="5""#));
        // No temporary file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn unreadable_template_and_unwritable_target_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.xml");
        let err = Template::from_file(&missing).unwrap_err();
        assert!(matches!(&err, CouplingError::ReadFile { path, .. } if *path == missing));
        assert!(err.to_string().contains("missing.xml"));

        let target = dir.path().join("no-such-dir").join("input.xml");
        let err = Template::new("@A@", "t")
            .fill_to(&target, &[("@A@", 1.0)], NumberFormat::Shortest)
            .unwrap_err();
        assert!(matches!(&err, CouplingError::WriteFile { path, .. } if *path == target));
        assert!(err.to_string().contains("input.xml"), "{err}");
    }
}
