//! Reading numbers back from the files a program wrote: after a token (with
//! the skips of `openturns.coupling_tools.get_value`), at a line and column,
//! by regex, or from an XML-ish attribute.

use std::fs;
use std::path::{Path, PathBuf};

use regex::Regex;

use super::CouplingError;

/// Offsets from a token, as in `openturns.coupling_tools.get_value`.
///
/// - `tokens`: occurrences of the token to skip (negative: count from the
///   last occurrence, `-1` being the last);
/// - `lines`: lines to move down from the token's line (negative: up);
/// - `cols`: fields to skip (negative: count from the end of the line),
///   fields being separated by whitespace or by [`col_sep`](Self::col_sep).
///
/// On the token's own line (`lines == 0`) the line is cut at the token:
/// fields are counted after it, or before it when `cols < 0`. With no skip
/// at all the number right after the token is read.
///
/// ```
/// use otwrap_runtime::coupling::Skip;
///
/// let second_occurrence_next_line = Skip::new().tokens(1).lines(1);
/// let last_field_before_token = Skip::new().cols(-1);
/// let csv = Skip::new().lines(1).cols(2).col_sep(",");
/// # let _ = (second_occurrence_next_line, last_field_before_token, csv);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skip<'a> {
    tokens: isize,
    lines: isize,
    cols: isize,
    col_sep: Option<&'a str>,
}

impl<'a> Skip<'a> {
    /// No skip: the number right after the first occurrence of the token.
    #[must_use]
    pub const fn new() -> Self {
        Skip {
            tokens: 0,
            lines: 0,
            cols: 0,
            col_sep: None,
        }
    }

    /// Occurrences of the token to skip (negative: from the last one).
    #[must_use]
    pub const fn tokens(mut self, tokens: isize) -> Self {
        self.tokens = tokens;
        self
    }

    /// Lines to move from the token's line (negative: up).
    #[must_use]
    pub const fn lines(mut self, lines: isize) -> Self {
        self.lines = lines;
        self
    }

    /// Fields to skip (negative: from the end of the line).
    #[must_use]
    pub const fn cols(mut self, cols: isize) -> Self {
        self.cols = cols;
        self
    }

    /// Separates fields by this exact string instead of runs of whitespace
    /// (empty fields then count, as with Python's `str.split(sep)`).
    #[must_use]
    pub const fn col_sep(mut self, col_sep: &'a str) -> Self {
        self.col_sep = Some(col_sep);
        self
    }
}

/// The number after a token in a file; see [`Skip`] for the offsets.
///
/// The token is matched literally (not as a regex; use
/// [`read_values_by_regex`] for patterns).
///
/// ```
/// use otwrap_runtime::coupling::{read_value_by_token, Skip};
///
/// let path = std::env::temp_dir().join(format!("otwrap-token-doc-{}.txt", std::process::id()));
/// std::fs::write(&path, "Y1=2.6 Y1=6.0 # temperature 2\n1 2 3\n")?;
/// assert_eq!(read_value_by_token(&path, "Y1=", Skip::new())?, 2.6);
/// assert_eq!(read_value_by_token(&path, "Y1=", Skip::new().tokens(1))?, 6.0);
/// assert_eq!(read_value_by_token(&path, "#", Skip::new().lines(1).cols(2))?, 3.0);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_value_by_token(
    path: impl AsRef<Path>,
    token: &str,
    skip: Skip<'_>,
) -> Result<f64, CouplingError> {
    ResultFile::read(path)?.value_by_token(token, skip)
}

/// The number at a line and column of a file, both 0-based as in
/// `openturns.coupling_tools.get_line_col`; negative values count from the
/// end (`-1` is the last line, or the last field). Fields are separated by
/// whitespace, or by `col_sep` when given.
///
/// ```
/// use otwrap_runtime::coupling::read_value_at;
///
/// let path = std::env::temp_dir().join(format!("otwrap-at-doc-{}.txt", std::process::id()));
/// std::fs::write(&path, "1.1 1.2 1.3\n2.1;2.2;2.3\n")?;
/// assert_eq!(read_value_at(&path, 0, 2, None)?, 1.3);
/// assert_eq!(read_value_at(&path, -1, -2, Some(";"))?, 2.2);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_value_at(
    path: impl AsRef<Path>,
    line: isize,
    col: isize,
    col_sep: Option<&str>,
) -> Result<f64, CouplingError> {
    ResultFile::read(path)?.value_at(line, col, col_sep)
}

/// Every match of `pattern` in a file, as the number its first capture
/// group holds. As in OpenTURNS, `\R` stands for a real number and `\I` for
/// an integer. No match at all is an error.
///
/// ```
/// use otwrap_runtime::coupling::read_values_by_regex;
///
/// let path = std::env::temp_dir().join(format!("otwrap-regex-doc-{}.txt", std::process::id()));
/// std::fs::write(&path, "@E=-9.5E3\n@E=1\n")?;
/// assert_eq!(read_values_by_regex(&path, r"@E=(\R)")?, vec![-9500.0, 1.0]);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_values_by_regex(
    path: impl AsRef<Path>,
    pattern: &str,
) -> Result<Vec<f64>, CouplingError> {
    let regex = compile_pattern(pattern)?;
    ResultFile::read(path)?.values_by_regex(&regex)
}

/// Compiles a pattern of [`read_values_by_regex`], with `\R` (a real number)
/// and `\I` (an integer) expanded.
pub(crate) fn compile_pattern(pattern: &str) -> Result<Regex, CouplingError> {
    let expanded = pattern
        .replace(r"\R", r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
        .replace(r"\I", r"[+-]?\d+");
    Regex::new(&expanded).map_err(|source| CouplingError::InvalidRegex {
        pattern: pattern.to_owned(),
        source,
    })
}

/// The number in `attribute="..."` of the first `<element ...>` of a file
/// that has this attribute, e.g. `deviation` of `<outputs deviation="1.4e+01"/>`.
/// This is a text scan, not an XML parser: no namespaces, entities or CDATA.
///
/// ```
/// use otwrap_runtime::coupling::read_attribute;
///
/// let path = std::env::temp_dir().join(format!("otwrap-attr-doc-{}.xml", std::process::id()));
/// std::fs::write(&path, "<beam>\n  <outputs deviation=\"1.412345e+01\"/>\n</beam>\n")?;
/// assert_eq!(read_attribute(&path, "outputs", "deviation")?, 14.12345);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_attribute(
    path: impl AsRef<Path>,
    element: &str,
    attribute: &str,
) -> Result<f64, CouplingError> {
    ResultFile::read(path)?.attribute(element, attribute)
}

/// A result file read once, to take several values from it.
///
/// ```
/// use otwrap_runtime::coupling::{ResultFile, Skip};
///
/// let results = ResultFile::from_text("out.txt", "Y1=2.0, Y2=-6.6E2\n");
/// assert_eq!(results.value_by_token("Y1=", Skip::new())?, 2.0);
/// assert_eq!(results.value_by_token("Y2=", Skip::new())?, -660.0);
/// # Ok::<(), otwrap_runtime::coupling::CouplingError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultFile {
    path: PathBuf,
    text: String,
}

impl ResultFile {
    /// Reads a file (UTF-8; invalid bytes are replaced, as results are
    /// numbers and the rest is only context).
    pub fn read(path: impl AsRef<Path>) -> Result<Self, CouplingError> {
        let path = path.as_ref();
        let bytes = fs::read(path).map_err(|source| CouplingError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        };
        Ok(ResultFile {
            path: path.to_path_buf(),
            text,
        })
    }

    /// Text already in memory; `path` is used in error messages.
    pub fn from_text(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        ResultFile {
            path: path.into(),
            text: text.into(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// See [`read_value_by_token`].
    pub fn value_by_token(&self, token: &str, skip: Skip<'_>) -> Result<f64, CouplingError> {
        if token.is_empty() {
            return Err(self.not_found(String::from("an empty token was given")));
        }
        let (start, end) = self.find_token(token, skip.tokens)?;
        let token_line = line_index(&self.text, start);
        let target = token_line.checked_add_signed(skip.lines).ok_or_else(|| {
            self.not_found(format!(
                "cannot move {} lines up from token `{token}` on line {}",
                -skip.lines,
                token_line + 1
            ))
        })?;
        let token_line_start = line_start(&self.text, start);
        let (line_start, line_end) = nth_line(&self.text, target, (token_line_start, token_line))
            .ok_or_else(|| {
            self.not_found(format!(
                "cannot move {} lines down from token `{token}` on line {}: the file ends first",
                skip.lines,
                token_line + 1
            ))
        })?;
        let (from, to) = match skip.lines {
            0 if skip.cols < 0 => (line_start, start),
            // A token that runs past its line (it holds a line break, or
            // ends with the `\r` of a `\r\n`) leaves nothing after it.
            0 => (end, line_end.max(end)),
            _ => (line_start, line_end),
        };
        self.number_in_line(target, from, to, skip.cols, skip.col_sep)
    }

    /// See [`read_value_at`].
    pub fn value_at(
        &self,
        line: isize,
        col: isize,
        col_sep: Option<&str>,
    ) -> Result<f64, CouplingError> {
        let count = line_count(&self.text);
        let index = if line < 0 {
            count.checked_sub(line.unsigned_abs())
        } else {
            Some(line.unsigned_abs())
        };
        let located = index.and_then(|index| Some((index, nth_line(&self.text, index, (0, 0))?)));
        let Some((index, (start, end))) = located else {
            return Err(self.not_found(format!(
                "line {line} was asked for (0-based, negative from the end) but the file has {count} lines"
            )));
        };
        self.number_in_line(index, start, end, col, col_sep)
    }

    /// See [`read_values_by_regex`]; takes a compiled regex to reuse it
    /// across files.
    pub fn values_by_regex(&self, regex: &Regex) -> Result<Vec<f64>, CouplingError> {
        if regex.captures_len() < 2 {
            return Err(CouplingError::RegexWithoutGroup {
                pattern: regex.as_str().to_owned(),
            });
        }
        let mut values = Vec::new();
        for captures in regex.captures_iter(&self.text) {
            let Some(group) = captures.get(1) else {
                let at = captures.get(0).map_or(0, |m| m.start());
                return Err(
                    self.parse_error(at, "nothing: capture group 1 took no part in the match")
                );
            };
            let value = group.as_str().trim().parse::<f64>();
            values.push(value.map_err(|_| self.parse_error(group.start(), group.as_str()))?);
        }
        if values.is_empty() {
            return Err(self.not_found(format!("no match for regex `{}`", regex.as_str())));
        }
        Ok(values)
    }

    /// See [`read_attribute`].
    pub fn attribute(&self, element: &str, attribute: &str) -> Result<f64, CouplingError> {
        let (at, value) = self.find_attribute(element, attribute)?;
        value
            .trim()
            .parse::<f64>()
            .map_err(|_| self.parse_error(at, value))
    }

    /// The raw text of an attribute's value (entities are not decoded).
    pub fn attribute_text(&self, element: &str, attribute: &str) -> Result<&str, CouplingError> {
        self.find_attribute(element, attribute)
            .map(|(_, value)| value)
    }

    /// Byte range of the wanted occurrence of `token`.
    fn find_token(&self, token: &str, skip_tokens: isize) -> Result<(usize, usize), CouplingError> {
        let found = if skip_tokens >= 0 {
            self.text
                .match_indices(token)
                .nth(skip_tokens.unsigned_abs())
        } else {
            // Occurrences are non-overlapping from the start, as when reading
            // forward, then counted from the last.
            let all: Vec<usize> = self.text.match_indices(token).map(|(i, _)| i).collect();
            all.len()
                .checked_sub(skip_tokens.unsigned_abs())
                .map(|i| (all[i], token))
        };
        match found {
            Some((start, _)) => Ok((start, start + token.len())),
            None => {
                let count = self.text.matches(token).count();
                Err(self.not_found(if count == 0 {
                    format!("token `{token}` not found")
                } else {
                    format!(
                        "token `{token}` occurs {count} times, skip_tokens={skip_tokens} asks for more"
                    )
                }))
            }
        }
    }

    /// The number in field `col` of `text[from..to]` (which lies on line
    /// `line`, 0-based); `col == 0` reads from the start without splitting.
    fn number_in_line(
        &self,
        line: usize,
        from: usize,
        to: usize,
        col: isize,
        col_sep: Option<&str>,
    ) -> Result<f64, CouplingError> {
        let segment = &self.text[from..to];
        let from_end = col.unsigned_abs().wrapping_sub(1);
        let field = match (col, col_sep.filter(|sep| !sep.is_empty())) {
            (0, _) => Some(segment),
            (1.., Some(sep)) => segment.split(sep).nth(col.unsigned_abs()),
            (_, Some(sep)) => segment.rsplit(sep).nth(from_end),
            (1.., None) => segment.split_whitespace().nth(col.unsigned_abs()),
            (_, None) => segment.split_whitespace().rev().nth(from_end),
        };
        let Some(field) = field else {
            return Err(self.not_found(format!(
                "line {} has no field {col} (0-based, negative from the end): `{}`",
                line + 1,
                shorten(segment.trim())
            )));
        };
        let field_start = field.as_ptr() as usize - self.text.as_ptr() as usize;
        leading_number(field).ok_or_else(|| self.parse_error(field_start, field))
    }

    /// Position and value of `attribute="value"` in the first `<element ...>`
    /// tag that has it.
    fn find_attribute(
        &self,
        element: &str,
        attribute: &str,
    ) -> Result<(usize, &str), CouplingError> {
        // An empty name matches everywhere and would never advance the scan.
        for (what, name) in [("element", element), ("attribute", attribute)] {
            if name.is_empty() {
                return Err(self.not_found(format!("an empty {what} name was given")));
            }
        }
        let text = self.text.as_str();
        let mut element_found = false;
        let mut search_from = 0;
        while let Some(found) = text[search_from..].find('<') {
            let name_start = search_from + found + 1;
            search_from = name_start;
            let rest = &text[name_start..];
            let Some(after_name) = rest.strip_prefix(element) else {
                continue;
            };
            if !after_name.starts_with(|c: char| c.is_whitespace() || c == '/' || c == '>') {
                continue;
            }
            element_found = true;
            let tag_start = name_start + element.len();
            let tag_end = text[tag_start..]
                .find('>')
                .map_or(text.len(), |i| tag_start + i);
            if let Some(found) = find_attribute_in_tag(text, tag_start, tag_end, attribute) {
                return Ok(found);
            }
        }
        Err(CouplingError::AttributeNotFound {
            path: self.path.clone(),
            element: element.to_owned(),
            attribute: attribute.to_owned(),
            element_found,
        })
    }

    fn not_found(&self, what: String) -> CouplingError {
        CouplingError::ValueNotFound {
            path: self.path.clone(),
            what,
        }
    }

    fn parse_error(&self, at: usize, found: &str) -> CouplingError {
        CouplingError::ParseNumber {
            path: self.path.clone(),
            line: line_index(&self.text, at) + 1,
            found: shorten(found.trim()),
        }
    }
}

/// `name = "value"` or `name='value'` between `from` and `to`, `name`
/// preceded by whitespace.
fn find_attribute_in_tag<'t>(
    text: &'t str,
    from: usize,
    to: usize,
    attribute: &str,
) -> Option<(usize, &'t str)> {
    let tag = &text[from..to];
    let mut search_from = 0;
    while let Some(found) = tag[search_from..].find(attribute) {
        let name_start = search_from + found;
        search_from = name_start + attribute.len();
        let preceded_by_space = tag[..name_start]
            .chars()
            .next_back()
            .is_some_and(char::is_whitespace);
        if !preceded_by_space {
            continue;
        }
        let Some(after_equal) = tag[search_from..].trim_start().strip_prefix('=') else {
            continue;
        };
        let value_part = after_equal.trim_start();
        let Some(quote) = value_part
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
        else {
            continue;
        };
        let value = &value_part[1..];
        let value_end = value.find(quote)?;
        // `value_part` is a suffix of the tag, which ends at `to`.
        let value_start = to - value_part.len() + 1;
        return Some((value_start, &value[..value_end]));
    }
    None
}

/// The number at the start of `field` (after blanks), e.g. `2.6` in
/// `2.6, rest`; `inf` and `nan` included.
fn leading_number(field: &str) -> Option<f64> {
    let text = field.trim_start();
    let bytes = text.as_bytes();
    let mut end = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits_from = end;
    let skip_digits = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    end = skip_digits(end);
    let mut has_digits = end > digits_from;
    if bytes.get(end) == Some(&b'.') {
        let after_point = skip_digits(end + 1);
        has_digits |= after_point > end + 1;
        end = after_point;
    }
    if !has_digits {
        let word_end = bytes[digits_from..]
            .iter()
            .position(|b| !b.is_ascii_alphabetic())
            .map_or(bytes.len(), |i| digits_from + i);
        let word = &text[digits_from..word_end];
        let special = ["inf", "infinity", "nan"]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w));
        return special.then(|| text[..word_end].parse().ok()).flatten();
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut exponent = end + 1;
        if matches!(bytes.get(exponent), Some(b'+' | b'-')) {
            exponent += 1;
        }
        let exponent_end = skip_digits(exponent);
        if exponent_end > exponent {
            end = exponent_end;
        }
    }
    text[..end].parse().ok()
}

/// 0-based index of the line holding byte `at`.
fn line_index(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count()
}

/// Byte offset of the start of the line holding byte `at`.
fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

/// Number of lines as Python's `readline` sees them: a final newline does
/// not start an empty line, but an empty last line before it counts.
fn line_count(text: &str) -> usize {
    text.lines().count()
}

/// Byte range (without the `\n` or `\r\n`) of line `index` (0-based).
/// `known` is the start offset and index of a line already located, to
/// scan from there when the wanted line is not before it.
fn nth_line(text: &str, index: usize, known: (usize, usize)) -> Option<(usize, usize)> {
    let (mut start, mut current) = if index >= known.1 { known } else { (0, 0) };
    while current < index {
        start += text[start..].find('\n')? + 1;
        current += 1;
    }
    // After a final newline there is no further line, as with `readline`.
    if start >= text.len() {
        return None;
    }
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let end = if text[start..end].ends_with('\r') {
        end - 1
    } else {
        end
    };
    Some((start, end))
}

/// At most 60 characters, for error messages.
fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ResultFile {
        ResultFile::from_text("results.txt", text)
    }

    const TABLE: &str = "header line\n\
                         value: 10 20 30\n  \
                         1.0 2.0 3.0\n  \
                         4.0 5.0 6.0\n";

    #[test]
    fn number_right_after_token() {
        let results = file("Y1=2.0, Y2=-6.6E56\n");
        assert_eq!(results.value_by_token("Y1=", Skip::new()).unwrap(), 2.0);
        assert_eq!(results.value_by_token("Y2=", Skip::new()).unwrap(), -6.6e56);
        assert_eq!(
            file("dev = 1.5").value_by_token("=", Skip::new()).unwrap(),
            1.5
        );
    }

    #[test]
    fn skip_tokens_forward_and_backward() {
        let results = file("Y1=2.6 Y1=6.0 # temperature 2\nY1=7\n");
        assert_eq!(
            results
                .value_by_token("Y1=", Skip::new().tokens(1))
                .unwrap(),
            6.0
        );
        assert_eq!(
            results
                .value_by_token("Y1=", Skip::new().tokens(2))
                .unwrap(),
            7.0
        );
        assert_eq!(
            results
                .value_by_token("Y1=", Skip::new().tokens(-1))
                .unwrap(),
            7.0
        );
        assert_eq!(
            results
                .value_by_token("Y1=", Skip::new().tokens(-3))
                .unwrap(),
            2.6
        );
        for skip in [3, -4] {
            let err = results
                .value_by_token("Y1=", Skip::new().tokens(skip))
                .unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains("`results.txt`") && message.contains("occurs 3 times"),
                "{message}"
            );
        }
    }

    #[test]
    fn missing_token_names_token_and_file() {
        let err = file("Y1=2").value_by_token("Z=", Skip::new()).unwrap_err();
        assert!(
            matches!(err, CouplingError::ValueNotFound { .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "`results.txt`: token `Z=` not found; check that the program wrote the expected output"
        );
        let err = file("x").value_by_token("", Skip::new()).unwrap_err();
        assert!(err.to_string().contains("empty token"), "{err}");
    }

    #[test]
    fn skip_lines_and_cols_after_token() {
        let results = file(TABLE);
        let at = |skip| results.value_by_token("value:", skip).unwrap();
        assert_eq!(at(Skip::new()), 10.0);
        assert_eq!(at(Skip::new().cols(1)), 20.0);
        assert_eq!(at(Skip::new().cols(2)), 30.0);
        assert_eq!(at(Skip::new().lines(1)), 1.0);
        assert_eq!(at(Skip::new().lines(1).cols(1)), 2.0);
        assert_eq!(at(Skip::new().lines(2).cols(2)), 6.0);
        assert_eq!(at(Skip::new().lines(2).cols(-1)), 6.0);
        assert_eq!(at(Skip::new().lines(2).cols(-3)), 4.0);
    }

    #[test]
    fn skip_backward_from_token() {
        let results = file("1 2 3\na b 4.5 T= 9\n");
        let at = |skip| results.value_by_token("T=", skip);
        // Same line, before the token.
        assert_eq!(at(Skip::new().cols(-1)).unwrap(), 4.5);
        // Lines above: whole lines, fields from the start.
        assert_eq!(at(Skip::new().lines(-1)).unwrap(), 1.0);
        assert_eq!(at(Skip::new().lines(-1).cols(2)).unwrap(), 3.0);
        assert_eq!(at(Skip::new().lines(-1).cols(-2)).unwrap(), 2.0);
        let err = at(Skip::new().lines(-2)).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot move 2 lines up from token `T=` on line 2"),
            "{err}"
        );
    }

    #[test]
    fn skip_past_the_end_is_an_error() {
        let err = file(TABLE)
            .value_by_token("value:", Skip::new().lines(3))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot move 3 lines down from token `value:` on line 2"),
            "{err}"
        );
        let err = file(TABLE)
            .value_by_token("value:", Skip::new().lines(1).cols(3))
            .unwrap_err();
        assert!(err.to_string().contains("line 3 has no field 3"), "{err}");
    }

    #[test]
    fn a_token_running_past_its_line_is_an_error_not_a_panic() {
        for (text, token) in [("a=\r\n1\r\n", "=\r"), ("a=\n1\n", "=\n"), ("x\r", "\r")] {
            let err = file(text).value_by_token(token, Skip::new()).unwrap_err();
            assert!(
                matches!(&err, CouplingError::ParseNumber { found, .. } if found.is_empty()),
                "{text:?} {token:?}: {err:?}"
            );
        }
    }

    #[test]
    fn column_separator() {
        let results = file("res\n1.5,,3.5\n");
        let at = |cols| {
            results
                .value_by_token("res", Skip::new().lines(1).cols(cols).col_sep(","))
                .unwrap()
        };
        assert_eq!(at(2), 3.5);
        assert_eq!(at(-3), 1.5);
        let err = results
            .value_by_token("res", Skip::new().lines(1).cols(1).col_sep(","))
            .unwrap_err();
        assert!(
            matches!(&err, CouplingError::ParseNumber { line: 2, found, .. } if found.is_empty()),
            "{err:?}"
        );
    }

    #[test]
    fn parse_errors_name_file_line_and_text() {
        let err = file(TABLE)
            .value_by_token("value:", Skip::new().lines(-1))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`results.txt` line 1: expected a number, found `header line`"
        );
        let long = format!("x\nT= {}\n", "z".repeat(100));
        let err = file(&long).value_by_token("T=", Skip::new()).unwrap_err();
        assert!(
            matches!(&err, CouplingError::ParseNumber { line: 2, found, .. }
                if found.len() == 63 && found.ends_with("...")),
            "{err:?}"
        );
    }

    #[test]
    fn value_at_line_and_column() {
        let results = file("1.1 1.2 1.3\n2.1 2.2 2.3\r\n3.1;3.2;3.3\n");
        assert_eq!(results.value_at(0, 0, None).unwrap(), 1.1);
        assert_eq!(results.value_at(0, 2, None).unwrap(), 1.3);
        assert_eq!(results.value_at(1, -1, None).unwrap(), 2.3);
        assert_eq!(results.value_at(-1, 1, Some(";")).unwrap(), 3.2);
        assert_eq!(results.value_at(-3, -3, None).unwrap(), 1.1);
        for line in [3, -4] {
            let err = results.value_at(line, 0, None).unwrap_err();
            assert!(
                err.to_string().contains("but the file has 3 lines"),
                "{err}"
            );
        }
        let err = results.value_at(0, 5, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("line 1 has no field 5 (0-based, negative from the end): `1.1 1.2 1.3`"),
            "{err}"
        );
    }

    #[test]
    fn trailing_empty_line_counts_like_python() {
        let results = file("1\n2\n\n");
        assert_eq!(results.value_at(-2, 0, None).unwrap(), 2.0);
        let err = results.value_at(-1, 0, None).unwrap_err();
        assert!(
            matches!(err, CouplingError::ParseNumber { line: 3, .. }),
            "{err:?}"
        );
        assert!(file("").value_at(0, 0, None).is_err());
    }

    #[test]
    fn values_by_regex() {
        let results = file("@E=-9.5E3\nnoise\n@E=1\n");
        let regex = Regex::new(r"@E=(\S+)").unwrap();
        assert_eq!(results.values_by_regex(&regex).unwrap(), vec![-9500.0, 1.0]);

        let err = results
            .values_by_regex(&Regex::new(r"@E=\S+").unwrap())
            .unwrap_err();
        assert!(
            matches!(err, CouplingError::RegexWithoutGroup { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("parentheses"));

        let err = results
            .values_by_regex(&Regex::new(r"@F=(\S+)").unwrap())
            .unwrap_err();
        assert!(
            err.to_string().contains("no match for regex `@F=(\\S+)`"),
            "{err}"
        );

        let err = results
            .values_by_regex(&Regex::new(r"(noi\w+)").unwrap())
            .unwrap_err();
        assert!(
            matches!(&err, CouplingError::ParseNumber { line: 2, found, .. } if found == "noise"),
            "{err:?}"
        );

        let err = results
            .values_by_regex(&Regex::new(r"(?m)^@E=(x)?").unwrap())
            .unwrap_err();
        assert!(
            matches!(&err, CouplingError::ParseNumber { line: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn regex_from_file_with_shortcuts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        fs::write(&path, "n=12 x=+.5e-3\n").unwrap();
        assert_eq!(read_values_by_regex(&path, r"n=(\I)").unwrap(), vec![12.0]);
        assert_eq!(
            read_values_by_regex(&path, r"x=(\R)").unwrap(),
            vec![0.5e-3]
        );
        let err = read_values_by_regex(&path, "(unclosed").unwrap_err();
        assert!(
            matches!(&err, CouplingError::InvalidRegex { pattern, .. } if pattern == "(unclosed"),
            "{err:?}"
        );
    }

    #[test]
    fn attributes() {
        let results = file(
            "<?xml version=\"1.0\"?>\n<beam>\n  <outputsX deviation=\"1\"/>\n  \
             <outputs xdeviation=\"2\"\n     deviation = '1.412345e+01' other=\"inf\"/>\n\
             <inputs F=\"oops\"/>\n</beam>\n",
        );
        assert_eq!(results.attribute("outputs", "deviation").unwrap(), 14.12345);
        assert_eq!(results.attribute("outputs", "xdeviation").unwrap(), 2.0);
        assert_eq!(
            results.attribute("outputs", "other").unwrap(),
            f64::INFINITY
        );
        assert_eq!(
            results.attribute_text("outputs", "deviation").unwrap(),
            "1.412345e+01"
        );

        let err = results.attribute("inputs", "F").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`results.txt` line 6: expected a number, found `oops`"
        );
        let err = results.attribute("outputs", "missing").unwrap_err();
        assert!(
            matches!(
                err,
                CouplingError::AttributeNotFound {
                    element_found: true,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .contains("no <outputs> element has a `missing` attribute"));
        let err = results.attribute("nothing", "deviation").unwrap_err();
        assert!(err.to_string().contains("no <nothing> element;"), "{err}");
    }

    #[test]
    fn leading_numbers() {
        let cases = [
            ("  2.5, rest", Some(2.5)),
            ("-1e5x", Some(-1e5)),
            ("1e", Some(1.0)),
            ("+.5", Some(0.5)),
            ("5.", Some(5.0)),
            ("inf", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            ("information", None),
            ("abc", None),
            ("-", None),
            (".", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(leading_number(text), expected, "{text:?}");
        }
        assert!(leading_number("nan").is_some_and(f64::is_nan));
        assert!(leading_number("-nan").is_some_and(f64::is_nan));
    }

    #[test]
    fn files_are_read_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        fs::write(&path, b"\xffY=3 4\n<o v=\"5\"/>").unwrap();
        assert_eq!(read_value_by_token(&path, "Y=", Skip::new()).unwrap(), 3.0);
        assert_eq!(read_value_at(&path, 0, 1, None).unwrap(), 4.0);
        assert_eq!(read_attribute(&path, "o", "v").unwrap(), 5.0);
        let results = ResultFile::read(&path).unwrap();
        assert_eq!(results.path(), path);
        assert!(results.text().ends_with("/>"));

        let missing = dir.path().join("missing.txt");
        let err = read_value_by_token(&missing, "Y=", Skip::new()).unwrap_err();
        assert!(matches!(&err, CouplingError::ReadFile { path, .. } if *path == missing));
        assert!(err.to_string().contains("missing.txt"));
    }
}
