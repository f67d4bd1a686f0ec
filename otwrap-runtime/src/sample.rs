//! Samples: rows of `f64` with column names, the currency of designs of
//! experiments and of model results.
//!
//! This module owns the in-memory [`Sample`] (flat row-major storage), its
//! conversions to and from arrays and vectors, the CSV format shared with
//! OpenTURNS (`Sample.ImportFromCSVFile` / `Sample.exportToCSVFile`), the
//! compressed binary dump (the successor of otwrapy's `dump_array` /
//! `load_array`) and the OpenTURNS-like text display.
//!
//! Files are always written atomically: the content goes to a temporary file
//! in the target's directory which is then renamed over the target, so a
//! crash leaves either the old file or the new one, never half of one.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::iter::FusedIterator;
use std::ops::{Index, IndexMut};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Everything that can go wrong while building, converting, reading or
/// writing a [`Sample`].
///
/// Messages name the file, the 1-based line and the column where relevant,
/// say what was found and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// A row does not have one value per column.
    #[error(
        "row {row} has {found} values but the sample has {expected} columns ({names}); \
         give exactly one value per column"
    )]
    RowWidth {
        /// 0-based index of the offending row.
        row: usize,
        /// Number of columns of the sample.
        expected: usize,
        /// Number of values in the row.
        found: usize,
        /// The sample's column names, for the message.
        names: String,
    },

    /// A conversion asked for a fixed number of columns the sample does not have.
    #[error(
        "cannot convert a sample of dimension {found} into rows of {expected} values; \
         select the right columns first or convert with to_vecs()"
    )]
    DimensionMismatch {
        /// Number of columns requested.
        expected: usize,
        /// Number of columns of the sample.
        found: usize,
    },

    /// The number of names does not match the number of columns.
    #[error(
        "{found} column names were given for a sample of dimension {expected}; \
         give exactly one name per column"
    )]
    NameCount {
        /// Number of columns of the sample.
        expected: usize,
        /// Number of names given.
        found: usize,
    },

    /// Flat row-major data whose length is not a whole number of rows.
    #[error(
        "{found} values cannot be split into rows of {dimension} columns; \
         the flat data must hold len * dimension values, row after row"
    )]
    FlatLength {
        /// Number of columns of the sample.
        dimension: usize,
        /// Number of values given.
        found: usize,
    },

    /// No column has the requested name.
    #[error("no column is named \"{name}\"; the columns are {available}")]
    UnknownColumn {
        /// The name that was looked up.
        name: String,
        /// The sample's column names, for the message.
        available: String,
    },

    /// The operating system refused an operation on a file.
    #[error("cannot {action} {file}: {source}")]
    Io {
        /// What was being done, e.g. "open", "write".
        action: &'static str,
        /// The file concerned.
        file: String,
        /// The underlying error.
        source: io::Error,
    },

    /// A CSV file has no header and no data.
    #[error(
        "{file} is empty: expected a header line of quoted column names \
         (like \"X0\",\"X1\") and/or lines of numbers"
    )]
    EmptyFile {
        /// The file concerned.
        file: String,
    },

    /// A CSV line is not UTF-8 text.
    #[error("{file} line {line} is not valid UTF-8 text; save the file as UTF-8 (or ASCII)")]
    NotUtf8 {
        /// The file concerned.
        file: String,
        /// 1-based line number.
        line: usize,
    },

    /// A CSV line has a broken quoted field.
    #[error("{file} line {line}: {problem}; quote a field as \"text\" and write a quote inside it as \"\"")]
    BadQuoting {
        /// The file concerned.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the quotes.
        problem: String,
    },

    /// A CSV line does not have one field per column.
    #[error("{file} line {line}: expected {expected} fields, found {found}; {hint}")]
    FieldCount {
        /// The file concerned.
        file: String,
        /// 1-based line number.
        line: usize,
        /// Number of columns (from the header or the first line of numbers).
        expected: usize,
        /// Number of fields on this line.
        found: usize,
        /// What to do about it.
        hint: String,
    },

    /// A CSV cell is not a number.
    #[error(
        "{file} line {line}, column \"{column}\": cannot read \"{found}\" as a number; {hint}"
    )]
    BadNumber {
        /// The file concerned.
        file: String,
        /// 1-based line number.
        line: usize,
        /// Name of the column.
        column: String,
        /// The text of the cell.
        found: String,
        /// What to do about it.
        hint: String,
    },

    /// The CSV separator cannot be told apart from the data.
    #[error(
        "{separator:?} cannot be used as a CSV separator because it is not ASCII, or it can be part \
         of a number or a quoted name; use ',', ';', '\\t' or ' '"
    )]
    InvalidSeparator {
        /// The rejected separator.
        separator: char,
    },

    /// The file does not start with the sample dump magic bytes.
    #[error(
        "{file} is not a sample dump (it does not start with the otwrap sample magic bytes); \
         load only files written by Sample::dump, and read CSV files with Sample::read_csv"
    )]
    NotADump {
        /// The file concerned.
        file: String,
    },

    /// The dump was written by an incompatible version of the format.
    #[error(
        "{file} uses sample dump format version {found} but this build reads version {supported}; \
         re-create it with this version of otwrap or load it with the version that wrote it"
    )]
    UnsupportedVersion {
        /// The file concerned.
        file: String,
        /// Version found in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },

    /// A batch cannot become a sample: its model's inputs or outputs are
    /// not numbers.
    #[error(
        "cannot turn the {part}s of {model} into sample columns (point {point}): {reason}; \
         Batch::to_sample takes models whose inputs and outputs are numbers, arrays, tuples or \
         structs of numbers: build the Sample with Sample::push for the others"
    )]
    NotNumbers {
        /// The model's name.
        model: String,
        /// `"input"` or `"output"`.
        part: &'static str,
        /// The 0-based index of the point whose value could not be read.
        point: usize,
        /// What is not a number.
        reason: String,
    },

    /// The points of a batch do not all have the same number of values.
    #[error(
        "point {point} of {model} has {found} {part} numbers but point {first} has {expected}; \
         a sample needs one column per number, so vectors must keep one length across the batch"
    )]
    RaggedPoint {
        /// The model's name.
        model: String,
        /// `"input"` or `"output"`.
        part: &'static str,
        /// The point that gave the columns.
        first: usize,
        /// Its number of values.
        expected: usize,
        /// The 0-based index of the offending point.
        point: usize,
        /// Its number of values.
        found: usize,
    },

    /// The inputs given do not match the batch.
    #[error(
        "{inputs} inputs were given for a batch of {points} points; \
         pass the inputs the batch was run on, in the same order"
    )]
    BatchLength {
        /// Number of inputs given.
        inputs: usize,
        /// Number of points in the batch.
        points: usize,
    },

    /// Every point failed and the output type does not tell its columns.
    #[error(
        "every point of {model} failed, and its output type has no fixed shape ({reason}), \
         so its output columns are unknown; look at the batch's errors"
    )]
    UnknownOutputColumns {
        /// The model's name.
        model: String,
        /// Why the type has no fixed shape.
        reason: String,
    },

    /// The dump is truncated or its content is damaged.
    #[error("{file} is truncated or corrupt ({detail}); re-create it with Sample::dump")]
    CorruptDump {
        /// The file concerned.
        file: String,
        /// What was detected.
        detail: String,
    },
}

/// How the first line of a CSV file is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderMode {
    /// Reading: the first line is a header when one of its fields is quoted
    /// or none of them is a number (like OpenTURNS). Writing: write a header.
    #[default]
    Auto,
    /// Reading: the first line is always a header. Writing: write a header.
    Present,
    /// Reading: there is no header, columns are named `X0, X1, ...`.
    /// Writing: write no header.
    Absent,
}

/// Options of the CSV reader and writer.
///
/// ```
/// use otwrap_runtime::sample::{CsvOptions, HeaderMode};
///
/// let options = CsvOptions::default().with_separator(';');
/// assert_eq!(options.separator, Some(';'));
/// assert_eq!(options.header, HeaderMode::Auto);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field separator. `None` (the default): reading detects `;`
    /// (OpenTURNS' `exportToCSVFile` default), a tab, `,` or runs of blanks
    /// from the first line, and writing uses `,`. A space `' '` means "any
    /// run of spaces and tabs" when reading. Only ASCII separators.
    pub separator: Option<char>,
    /// Whether the first line holds the column names.
    pub header: HeaderMode,
    /// Reading: lines whose first non-blank character is this one are
    /// skipped (OpenTURNS' `Sample-CommentMarkers`, `#` by default).
    pub comment: Option<char>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            separator: None,
            header: HeaderMode::Auto,
            comment: Some('#'),
        }
    }
}

impl CsvOptions {
    /// These options with this field separator (no detection when reading).
    pub fn with_separator(self, separator: char) -> Self {
        CsvOptions {
            separator: Some(separator),
            ..self
        }
    }

    /// These options with another header mode.
    pub fn with_header(self, header: HeaderMode) -> Self {
        CsvOptions { header, ..self }
    }

    /// These options with another comment marker (`None`: no comments).
    pub fn with_comment(self, comment: Option<char>) -> Self {
        CsvOptions { comment, ..self }
    }

    fn check(&self) -> Result<(), SampleError> {
        let Some(s) = self.separator else {
            return Ok(());
        };
        if s == '"'
            || s == '\n'
            || s == '\r'
            || s == '.'
            || s == '+'
            || s == '-'
            || s.is_alphanumeric()
            || !s.is_ascii()
        {
            return Err(SampleError::InvalidSeparator { separator: s });
        }
        Ok(())
    }
}

/// Rows of `f64` values with one name per column, stored flat and row-major.
///
/// The equivalent of an OpenTURNS `Sample`: `len()` rows (the size) of
/// `dimension()` values each, with a description (`names()`).
///
/// ```
/// use otwrap_runtime::sample::Sample;
///
/// let mut doe = Sample::new(vec!["Load".into(), "Length".into()]);
/// doe.push(&[3.0e4, 250.0])?;
/// doe.push(&[3.1e4, 260.0])?;
/// assert_eq!(doe.len(), 2);
/// assert_eq!(doe.row(1), &[3.1e4, 260.0]);
/// assert_eq!(doe.column_by_name("Length")?, vec![250.0, 260.0]);
/// # Ok::<(), otwrap_runtime::sample::SampleError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    names: Vec<String>,
    // Kept separately so that a sample of dimension 0 still has a size.
    len: usize,
    data: Vec<f64>,
}

impl Sample {
    /// An empty sample with these column names (its dimension is `names.len()`).
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let s = Sample::new(vec!["x".into(), "y".into()]);
    /// assert_eq!((s.len(), s.dimension()), (0, 2));
    /// ```
    pub fn new(names: Vec<String>) -> Self {
        Sample {
            names,
            len: 0,
            data: Vec::new(),
        }
    }

    /// An empty sample with room for `rows` rows before reallocating.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let s = Sample::with_capacity(Sample::default_names(3), 1000);
    /// assert!(s.is_empty());
    /// ```
    pub fn with_capacity(names: Vec<String>, rows: usize) -> Self {
        let capacity = rows.saturating_mul(names.len());
        Sample {
            names,
            len: 0,
            data: Vec::with_capacity(capacity),
        }
    }

    /// OpenTURNS' default column names: `X0, X1, ..., X{dimension-1}`.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// assert_eq!(Sample::default_names(2), vec!["X0", "X1"]);
    /// ```
    pub fn default_names(dimension: usize) -> Vec<String> {
        (0..dimension).map(|j| format!("X{j}")).collect()
    }

    /// A sample from rows, checking that every row has one value per name.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let s = Sample::from_rows(vec!["a".into()], vec![vec![1.0], vec![2.0]])?;
    /// assert_eq!(s.column(0), vec![1.0, 2.0]);
    /// assert!(Sample::from_rows(vec!["a".into()], vec![vec![1.0, 2.0]]).is_err());
    /// # Ok::<(), otwrap_runtime::sample::SampleError>(())
    /// ```
    pub fn from_rows(names: Vec<String>, rows: Vec<Vec<f64>>) -> Result<Self, SampleError> {
        let mut sample = Sample::with_capacity(names, rows.len());
        for row in &rows {
            sample.push(row)?;
        }
        Ok(sample)
    }

    /// A sample from flat row-major data (`data.len()` must be a multiple of
    /// `names.len()`); no copy is made.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let s = Sample::from_flat(Sample::default_names(2), vec![1.0, 2.0, 3.0, 4.0])?;
    /// assert_eq!(s.row(1), &[3.0, 4.0]);
    /// # Ok::<(), otwrap_runtime::sample::SampleError>(())
    /// ```
    pub fn from_flat(names: Vec<String>, data: Vec<f64>) -> Result<Self, SampleError> {
        let dimension = names.len();
        let len = match dimension {
            0 if data.is_empty() => 0,
            0 => {
                return Err(SampleError::FlatLength {
                    dimension,
                    found: data.len(),
                })
            }
            d if data.len().is_multiple_of(d) => data.len() / d,
            _ => {
                return Err(SampleError::FlatLength {
                    dimension,
                    found: data.len(),
                })
            }
        };
        Ok(Sample { names, len, data })
    }

    /// A sample from fixed-size rows, with columns named `X0, X1, ...`.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let s = Sample::from_arrays(&[[1.0, 2.0], [3.0, 4.0]]);
    /// assert_eq!(s.names(), &["X0", "X1"]);
    /// assert_eq!(s.to_arrays::<2>()?, vec![[1.0, 2.0], [3.0, 4.0]]);
    /// # Ok::<(), otwrap_runtime::sample::SampleError>(())
    /// ```
    pub fn from_arrays<const N: usize>(rows: &[[f64; N]]) -> Self {
        Sample {
            names: Sample::default_names(N),
            len: rows.len(),
            data: rows.as_flattened().to_vec(),
        }
    }

    /// The rows as fixed-size arrays; fails unless the dimension is `N`.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let s = Sample::from_arrays(&[[1.0, 2.0, 3.0]]);
    /// assert_eq!(s.to_arrays::<3>()?, vec![[1.0, 2.0, 3.0]]);
    /// assert!(s.to_arrays::<2>().is_err());
    /// # Ok::<(), otwrap_runtime::sample::SampleError>(())
    /// ```
    pub fn to_arrays<const N: usize>(&self) -> Result<Vec<[f64; N]>, SampleError> {
        if self.dimension() != N {
            return Err(SampleError::DimensionMismatch {
                expected: N,
                found: self.dimension(),
            });
        }
        Ok(self
            .rows()
            .map(|row| {
                let mut array = [0.0; N];
                array.copy_from_slice(row);
                array
            })
            .collect())
    }

    /// A sample from rows of equal length, with columns named `X0, X1, ...`
    /// (no rows: an empty sample of dimension 0).
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let s = Sample::from_vecs(vec![vec![1.0, 2.0], vec![3.0, 4.0]])?;
    /// assert_eq!(s.to_vecs(), vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
    /// assert!(Sample::from_vecs(vec![vec![1.0], vec![2.0, 3.0]]).is_err());
    /// # Ok::<(), otwrap_runtime::sample::SampleError>(())
    /// ```
    pub fn from_vecs(rows: Vec<Vec<f64>>) -> Result<Self, SampleError> {
        let dimension = rows.first().map_or(0, Vec::len);
        Sample::from_rows(Sample::default_names(dimension), rows)
    }

    /// The rows as vectors.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// assert_eq!(Sample::from_arrays(&[[5.0]]).to_vecs(), vec![vec![5.0]]);
    /// ```
    pub fn to_vecs(&self) -> Vec<Vec<f64>> {
        self.rows().map(<[f64]>::to_vec).collect()
    }

    /// Appends a row; fails unless it has one value per column.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let mut s = Sample::new(Sample::default_names(2));
    /// s.push(&[1.0, 2.0])?;
    /// assert!(s.push(&[1.0]).is_err());
    /// assert_eq!(s.len(), 1);
    /// # Ok::<(), otwrap_runtime::sample::SampleError>(())
    /// ```
    pub fn push(&mut self, row: &[f64]) -> Result<(), SampleError> {
        if row.len() != self.dimension() {
            return Err(SampleError::RowWidth {
                row: self.len,
                expected: self.dimension(),
                found: row.len(),
                names: quoted_list(&self.names),
            });
        }
        self.data.extend_from_slice(row);
        self.len += 1;
        Ok(())
    }

    /// Appends all rows of `other`, which must have the same dimension
    /// (its names are not checked).
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let mut s = Sample::from_arrays(&[[1.0]]);
    /// s.extend_from_sample(&Sample::from_arrays(&[[2.0], [3.0]]))?;
    /// assert_eq!(s.column(0), vec![1.0, 2.0, 3.0]);
    /// # Ok::<(), otwrap_runtime::sample::SampleError>(())
    /// ```
    pub fn extend_from_sample(&mut self, other: &Sample) -> Result<(), SampleError> {
        if other.dimension() != self.dimension() {
            return Err(SampleError::RowWidth {
                row: self.len,
                expected: self.dimension(),
                found: other.dimension(),
                names: quoted_list(&self.names),
            });
        }
        self.data.extend_from_slice(&other.data);
        self.len += other.len;
        Ok(())
    }

    /// Reserves room for `rows` more rows.
    pub fn reserve(&mut self, rows: usize) {
        self.data.reserve(rows.saturating_mul(self.dimension()));
    }

    /// Removes all rows, keeping the names.
    pub fn clear(&mut self) {
        self.data.clear();
        self.len = 0;
    }

    /// Number of rows (OpenTURNS' size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the sample has no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of columns.
    pub fn dimension(&self) -> usize {
        self.names.len()
    }

    /// The column names (OpenTURNS' description).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Replaces the column names; fails unless there is one per column.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let mut s = Sample::from_arrays(&[[1.0, 2.0]]);
    /// s.set_names(vec!["E".into(), "F".into()])?;
    /// assert_eq!(s.names(), &["E", "F"]);
    /// # Ok::<(), otwrap_runtime::sample::SampleError>(())
    /// ```
    pub fn set_names(&mut self, names: Vec<String>) -> Result<(), SampleError> {
        if names.len() != self.dimension() {
            return Err(SampleError::NameCount {
                expected: self.dimension(),
                found: names.len(),
            });
        }
        self.names = names;
        Ok(())
    }

    /// Index of the first column with this name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Row `i`.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`; use [`Sample::get`] to avoid it.
    pub fn row(&self, i: usize) -> &[f64] {
        assert!(i < self.len, "row {i} out of a sample of {} rows", self.len);
        let d = self.dimension();
        &self.data[i * d..(i + 1) * d]
    }

    /// Row `i`, mutable.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        assert!(i < self.len, "row {i} out of a sample of {} rows", self.len);
        let d = self.dimension();
        &mut self.data[i * d..(i + 1) * d]
    }

    /// Row `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&[f64]> {
        (i < self.len).then(|| self.row(i))
    }

    /// Iterator over the rows.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let s = Sample::from_arrays(&[[1.0, 2.0], [3.0, 4.0]]);
    /// let sums: Vec<f64> = s.rows().map(|r| r.iter().sum()).collect();
    /// assert_eq!(sums, vec![3.0, 7.0]);
    /// ```
    pub fn rows(&self) -> Rows<'_> {
        Rows {
            sample: self,
            front: 0,
            back: self.len,
        }
    }

    /// A copy of column `j`.
    ///
    /// # Panics
    ///
    /// If `j >= self.dimension()`.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let s = Sample::from_arrays(&[[1.0, 2.0], [3.0, 4.0]]);
    /// assert_eq!(s.column(1), vec![2.0, 4.0]);
    /// ```
    pub fn column(&self, j: usize) -> Vec<f64> {
        let d = self.dimension();
        assert!(j < d, "column {j} out of a sample of dimension {d}");
        self.data.iter().skip(j).step_by(d).copied().collect()
    }

    /// A copy of the first column with this name.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let s = Sample::from_rows(vec!["x".into(), "y".into()], vec![vec![1.0, 2.0]])?;
    /// assert_eq!(s.column_by_name("y")?, vec![2.0]);
    /// assert!(s.column_by_name("z").is_err());
    /// # Ok::<(), otwrap_runtime::sample::SampleError>(())
    /// ```
    pub fn column_by_name(&self, name: &str) -> Result<Vec<f64>, SampleError> {
        match self.column_index(name) {
            Some(j) => Ok(self.column(j)),
            None => Err(SampleError::UnknownColumn {
                name: name.to_owned(),
                available: quoted_list(&self.names),
            }),
        }
    }

    /// All values, row after row.
    pub fn as_flat(&self) -> &[f64] {
        &self.data
    }

    /// All values, row after row, mutable.
    pub fn as_flat_mut(&mut self) -> &mut [f64] {
        &mut self.data
    }

    /// The names and the row-major values, without copying.
    pub fn into_parts(self) -> (Vec<String>, Vec<f64>) {
        (self.names, self.data)
    }
}

/// Iterator over the rows of a [`Sample`], from [`Sample::rows`].
#[derive(Debug, Clone)]
pub struct Rows<'a> {
    sample: &'a Sample,
    front: usize,
    back: usize,
}

impl<'a> Iterator for Rows<'a> {
    type Item = &'a [f64];

    fn next(&mut self) -> Option<&'a [f64]> {
        if self.front >= self.back {
            return None;
        }
        let row = self.sample.row(self.front);
        self.front += 1;
        Some(row)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Rows<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        self.back -= 1;
        Some(self.sample.row(self.back))
    }
}

impl ExactSizeIterator for Rows<'_> {}

impl FusedIterator for Rows<'_> {}

impl<'a> IntoIterator for &'a Sample {
    type Item = &'a [f64];
    type IntoIter = Rows<'a>;

    fn into_iter(self) -> Rows<'a> {
        self.rows()
    }
}

/// `sample[i]` is row `i` (panics past the end).
impl Index<usize> for Sample {
    type Output = [f64];

    fn index(&self, i: usize) -> &[f64] {
        self.row(i)
    }
}

/// `sample[i]` is row `i`, mutable (panics past the end).
impl IndexMut<usize> for Sample {
    fn index_mut(&mut self, i: usize) -> &mut [f64] {
        self.row_mut(i)
    }
}

/// `sample[(i, j)]` is the value of row `i`, column `j` (panics out of range).
impl Index<(usize, usize)> for Sample {
    type Output = f64;

    fn index(&self, (i, j): (usize, usize)) -> &f64 {
        &self.row(i)[j]
    }
}

/// `sample[(i, j)]` is the value of row `i`, column `j`, mutable.
impl IndexMut<(usize, usize)> for Sample {
    fn index_mut(&mut self, (i, j): (usize, usize)) -> &mut f64 {
        &mut self.row_mut(i)[j]
    }
}

/// Same as [`Sample::from_arrays`].
impl<const N: usize> From<Vec<[f64; N]>> for Sample {
    fn from(rows: Vec<[f64; N]>) -> Self {
        Sample::from_arrays(&rows)
    }
}

/// Same as [`Sample::from_arrays`].
impl<const N: usize> From<&[[f64; N]]> for Sample {
    fn from(rows: &[[f64; N]]) -> Self {
        Sample::from_arrays(rows)
    }
}

/// Same as [`Sample::from_vecs`].
impl TryFrom<Vec<Vec<f64>>> for Sample {
    type Error = SampleError;

    fn try_from(rows: Vec<Vec<f64>>) -> Result<Self, SampleError> {
        Sample::from_vecs(rows)
    }
}

/// Collects fixed-size rows into a sample with columns `X0, X1, ...`.
///
/// ```
/// use otwrap_runtime::sample::Sample;
///
/// let s: Sample = (0..3).map(|i| [i as f64, 2.0 * i as f64]).collect();
/// assert_eq!(s.row(2), &[2.0, 4.0]);
/// ```
impl<const N: usize> FromIterator<[f64; N]> for Sample {
    fn from_iter<I: IntoIterator<Item = [f64; N]>>(iter: I) -> Self {
        let mut data = Vec::new();
        let mut len = 0;
        for row in iter {
            data.extend_from_slice(&row);
            len += 1;
        }
        Sample {
            names: Sample::default_names(N),
            len,
            data,
        }
    }
}

fn quoted_list(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut out = String::new();
    for (j, name) in names.iter().take(SHOWN).enumerate() {
        if j > 0 {
            out.push_str(", ");
        }
        out.push('"');
        out.push_str(name);
        out.push('"');
    }
    if names.len() > SHOWN {
        out.push_str(&format!(", ... ({} in all)", names.len()));
    }
    if names.is_empty() {
        out.push_str("none");
    }
    out
}

// ---------------------------------------------------------------------------
// From a batch
// ---------------------------------------------------------------------------

impl Sample {
    /// The inputs and results of a batch of model `M` as one sample: the
    /// input columns, then the output columns; a failed point's outputs are
    /// NaN. For models whose inputs and outputs are numbers (a number,
    /// arrays, tuples and structs of numbers, vectors of one length).
    ///
    /// Input columns are named from the parameters (`x` for a number,
    /// `x0, x1, ...` for an array `x`, the field names of a struct), output
    /// columns from the output: `y` for a number, `y0, y1, ...` for an array
    /// or a tuple, the field names of a struct. See
    /// [`to_named_row`](crate::flat::to_named_row).
    ///
    /// Same as [`Batch::to_sample`](crate::Batch::to_sample).
    pub fn from_batch<M: crate::Model>(
        inputs: &[M::Input],
        batch: &crate::Batch<M::Output>,
    ) -> Result<Sample, SampleError> {
        use crate::flat::{to_named_row, zero_value, NamedRow};
        let results = batch.results();
        if inputs.len() != results.len() {
            return Err(SampleError::BatchLength {
                inputs: inputs.len(),
                points: results.len(),
            });
        }
        let not_numbers = |part, point, e: crate::flat::FlatError| SampleError::NotNumbers {
            model: M::NAME.to_owned(),
            part,
            point,
            reason: e.to_string(),
        };
        let input_row = |point: usize| {
            to_named_row(&inputs[point], "x", M::PARAMETER_NAMES)
                .map_err(|e| not_numbers("input", point, e))
        };
        let output_row = |point: usize, value: &M::Output| {
            to_named_row(value, "y", &[]).map_err(|e| not_numbers("output", point, e))
        };
        // The output columns: from the first point that succeeded, else
        // from the type alone.
        let output_names = match results.iter().position(Result::is_ok) {
            Some(point) => match &results[point] {
                Ok(value) => output_row(point, value)?.names,
                Err(_) => Vec::new(),
            },
            None => {
                let zero: M::Output =
                    zero_value().map_err(|e| SampleError::UnknownOutputColumns {
                        model: M::NAME.to_owned(),
                        reason: e.to_string(),
                    })?;
                to_named_row(&zero, "y", &[])
                    .map_err(|e| not_numbers("output", 0, e))?
                    .names
            }
        };
        let ragged = |part, first, expected, point, found| SampleError::RaggedPoint {
            model: M::NAME.to_owned(),
            part,
            first,
            expected,
            point,
            found,
        };
        let mut sample: Option<Sample> = None;
        let first_output = results.iter().position(Result::is_ok).unwrap_or(0);
        for (point, result) in results.iter().enumerate() {
            let NamedRow { names, mut values } = input_row(point)?;
            let sample = sample.get_or_insert_with(|| {
                let mut all = names.clone();
                all.extend(output_names.iter().cloned());
                let mut sample = Sample::new(qualified_if_repeated(all));
                sample.reserve(results.len());
                sample
            });
            let inputs_width = sample.dimension() - output_names.len();
            if values.len() != inputs_width {
                return Err(ragged("input", 0, inputs_width, point, values.len()));
            }
            match result {
                Ok(value) => {
                    let outputs = output_row(point, value)?.values;
                    if outputs.len() != output_names.len() {
                        return Err(ragged(
                            "output",
                            first_output,
                            output_names.len(),
                            point,
                            outputs.len(),
                        ));
                    }
                    values.extend(outputs);
                }
                Err(_) => values.extend(std::iter::repeat_n(f64::NAN, output_names.len())),
            }
            sample.push(&values)?;
        }
        Ok(sample.unwrap_or_else(|| {
            let mut names = Vec::new();
            if let Ok(zero) = zero_value::<M::Input>() {
                if let Ok(row) = to_named_row(&zero, "x", M::PARAMETER_NAMES) {
                    names = row.names;
                }
            }
            names.extend(output_names);
            Sample::new(qualified_if_repeated(names))
        }))
    }
}

/// Column names made unique: a repeated name (two struct parameters with a
/// field of the same name, a parameter named like an output) gets its
/// column number appended.
fn qualified_if_repeated(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    for name in &names {
        *seen.entry(name.as_str()).or_default() += 1;
    }
    if seen.values().all(|&n| n == 1) {
        return names;
    }
    let repeated: std::collections::HashSet<String> = seen
        .into_iter()
        .filter(|&(_, n)| n > 1)
        .map(|(name, _)| name.to_owned())
        .collect();
    names
        .into_iter()
        .enumerate()
        .map(|(j, name)| {
            if repeated.contains(&name) {
                format!("{name}#{j}")
            } else {
                name
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------

/// Name used in messages for CSV read from a reader rather than a file.
const CSV_INPUT: &str = "CSV input";
/// Name used in messages for CSV written to a writer rather than a file.
const CSV_OUTPUT: &str = "CSV output";

impl Sample {
    /// Reads a CSV file with the default options (separator detected, header
    /// detected, `#` comments), like OpenTURNS' `Sample.ImportFromCSVFile`.
    ///
    /// The separator is read from the first line (the header, or the first
    /// line of numbers): `;` (what OpenTURNS' `exportToCSVFile` writes by
    /// default), else a tab, else `,`, else runs of spaces; a file of one
    /// column needs none. Numbers with a decimal comma (`1,5`) are refused
    /// with a message saying to export with `.` as decimal separator.
    ///
    /// Accepted: a header of quoted or unquoted names or none (columns are
    /// then `X0, X1, ...`), `\n` or `\r\n` line ends, blank lines, numbers
    /// such as `1.5`, `2`, `1.5000000000000000e+00`, `nan`, `NaN`, `inf`,
    /// `-Inf`, `infinity`, optionally quoted. Errors name the file and the
    /// 1-based line.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let path = std::env::temp_dir().join(format!("doc-read-csv-{}.csv", std::process::id()));
    /// std::fs::write(&path, "\"Load\";\"Length\"\n3e4;250\n3.1e4;260\n")?;
    /// let doe = Sample::read_csv(&path)?;
    /// assert_eq!(doe.names(), &["Load", "Length"]);
    /// assert_eq!(doe.row(1), &[3.1e4, 260.0]);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_csv(path: impl AsRef<Path>) -> Result<Self, SampleError> {
        Sample::read_csv_with(path, CsvOptions::default())
    }

    /// Reads a CSV file with these options (an explicit separator is used
    /// as given, without detection).
    ///
    /// ```
    /// use otwrap_runtime::sample::{CsvOptions, Sample};
    ///
    /// let path = std::env::temp_dir().join(format!("doc-read-csv-with-{}.csv", std::process::id()));
    /// std::fs::write(&path, "\"a\";\"b\"\n1;2\n")?;
    /// let s = Sample::read_csv_with(&path, CsvOptions::default().with_separator(';'))?;
    /// assert_eq!(s.row(0), &[1.0, 2.0]);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_csv_with(path: impl AsRef<Path>, options: CsvOptions) -> Result<Self, SampleError> {
        let path = path.as_ref();
        let file_name = path.display().to_string();
        let file = File::open(path).map_err(|source| SampleError::Io {
            action: "open",
            file: file_name.clone(),
            source,
        })?;
        read_csv_named(BufReader::new(file), options, &file_name)
    }

    /// Reads CSV text from any reader; messages call it "CSV input".
    ///
    /// ```
    /// use otwrap_runtime::sample::{CsvOptions, Sample};
    ///
    /// let text = "\"X0\",\"X1\"\r\n1.5,2\r\nnan,-inf\r\n\r\n";
    /// let s = Sample::read_csv_from(text.as_bytes(), CsvOptions::default())?;
    /// assert_eq!(s.len(), 2);
    /// assert!(s[(1, 0)].is_nan());
    /// # Ok::<(), otwrap_runtime::sample::SampleError>(())
    /// ```
    pub fn read_csv_from(reader: impl Read, options: CsvOptions) -> Result<Self, SampleError> {
        read_csv_named(BufReader::new(reader), options, CSV_INPUT)
    }

    /// Writes a CSV file with the default options, atomically: a header of
    /// quoted names, then one line per row with values that read back to the
    /// same bits (`nan`, `inf`, `-inf` for the special values).
    ///
    /// A sample of dimension 0 writes lines that cannot be read back.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let path = std::env::temp_dir().join(format!("doc-write-csv-{}.csv", std::process::id()));
    /// let s = Sample::from_arrays(&[[0.1, 1e300]]);
    /// s.write_csv(&path)?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "\"X0\",\"X1\"\n0.1,1e300\n");
    /// assert_eq!(Sample::read_csv(&path)?, s);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_csv(&self, path: impl AsRef<Path>) -> Result<(), SampleError> {
        self.write_csv_with(path, CsvOptions::default())
    }

    /// Writes a CSV file with these options, atomically.
    ///
    /// ```
    /// use otwrap_runtime::sample::{CsvOptions, HeaderMode, Sample};
    ///
    /// let path = std::env::temp_dir().join(format!("doc-write-csv-with-{}.csv", std::process::id()));
    /// let options = CsvOptions::default().with_separator(';').with_header(HeaderMode::Absent);
    /// Sample::from_arrays(&[[1.0, 2.5]]).write_csv_with(&path, options)?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "1;2.5\n");
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_csv_with(
        &self,
        path: impl AsRef<Path>,
        options: CsvOptions,
    ) -> Result<(), SampleError> {
        options.check()?;
        write_atomically(path.as_ref(), |out| write_csv_unchecked(self, out, options))
    }

    /// Writes CSV text to any writer (not atomic: the writer is the caller's).
    ///
    /// ```
    /// use otwrap_runtime::sample::{CsvOptions, Sample};
    ///
    /// let mut out = Vec::new();
    /// let s = Sample::from_rows(vec!["Young modulus".into()], vec![vec![f64::NAN], vec![-0.0]])?;
    /// s.write_csv_to(&mut out, CsvOptions::default())?;
    /// assert_eq!(String::from_utf8(out)?, "\"Young modulus\"\nnan\n-0\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_csv_to(&self, writer: impl Write, options: CsvOptions) -> Result<(), SampleError> {
        options.check()?;
        let mut out = BufWriter::new(writer);
        write_csv_unchecked(self, &mut out, options)
            .and_then(|()| out.flush())
            .map_err(|source| SampleError::Io {
                action: "write",
                file: CSV_OUTPUT.to_owned(),
                source,
            })
    }
}

fn write_csv_unchecked(
    sample: &Sample,
    out: &mut impl Write,
    options: CsvOptions,
) -> io::Result<()> {
    let mut sep_buf = [0u8; 4];
    let sep = options
        .separator
        .unwrap_or(',')
        .encode_utf8(&mut sep_buf)
        .as_bytes();
    if options.header != HeaderMode::Absent {
        for (j, name) in sample.names.iter().enumerate() {
            if j > 0 {
                out.write_all(sep)?;
            }
            // Line breaks inside a name would split the header line.
            let cleaned = name.replace(['\n', '\r'], " ").replace('"', "\"\"");
            out.write_all(b"\"")?;
            out.write_all(cleaned.as_bytes())?;
            out.write_all(b"\"")?;
        }
        out.write_all(b"\n")?;
    }
    let mut text = String::new();
    for row in sample.rows() {
        for (j, &value) in row.iter().enumerate() {
            if j > 0 {
                out.write_all(sep)?;
            }
            text.clear();
            push_round_trip(&mut text, value);
            out.write_all(text.as_bytes())?;
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Appends the shortest text that parses back to the same `f64`, in a
/// spelling C's `strtod` (hence OpenTURNS) also reads.
fn push_round_trip(out: &mut String, value: f64) {
    use fmt::Write as _;
    if value.is_nan() {
        out.push_str("nan");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "inf" } else { "-inf" });
    } else {
        // Debug is the shortest round-trip form and switches to exponent
        // notation for very large and small magnitudes, unlike Display.
        let start = out.len();
        let _ = write!(out, "{value:?}");
        if out[start..].ends_with(".0") {
            out.truncate(out.len() - 2);
        }
    }
}

/// Whether `b` is a blank around fields: spaces and tabs, except the
/// separator itself (a tab-separated file keeps its tabs as separators).
/// In whitespace mode (`separator == b' '`) blanks are the separator.
fn is_blank_for(b: u8, separator: u8) -> bool {
    (b == b' ' || b == b'\t') && (separator == b' ' || b != separator)
}

/// Rewrites one content line for the csv crate: blanks around fields are
/// dropped (outside quotes), runs of blanks become one separator in
/// whitespace mode, quoted fields are copied as written (the csv crate
/// unescapes them). Records in `quoted` whether each field was quoted.
///
/// The quoting is checked here because the csv crate is lenient by design:
/// it reads `"a"x` as `ax` and an unclosed quote as running to the end of
/// the file, where a design of experiments wants the line named.
fn canonical_line(
    line: &str,
    separator: u8,
    out: &mut Vec<u8>,
    quoted: &mut Vec<bool>,
) -> Result<(), String> {
    let whitespace = separator == b' ';
    let bytes = line.as_bytes();
    let n = bytes.len();
    let mut i = 0;
    let mut first = true;
    quoted.clear();
    loop {
        while i < n && is_blank_for(bytes[i], separator) {
            i += 1;
        }
        if whitespace && i == n {
            return Ok(());
        }
        if !first {
            out.push(separator);
        }
        first = false;
        if i < n && bytes[i] == b'"' {
            let start = i;
            i += 1;
            loop {
                let Some(end) = bytes[i..].iter().position(|&b| b == b'"') else {
                    return Err("a quoted field has no closing quote".to_owned());
                };
                let end = i + end;
                if bytes.get(end + 1) == Some(&b'"') {
                    i = end + 2;
                } else {
                    i = end + 1;
                    break;
                }
            }
            out.extend_from_slice(&bytes[start..i]);
            quoted.push(true);
            let closed = i;
            while i < n && is_blank_for(bytes[i], separator) {
                i += 1;
            }
            if i == n {
                return Ok(());
            }
            let text = || line[start + 1..closed - 1].replace("\"\"", "\"");
            if whitespace {
                if i == closed {
                    return Err(format!(
                        "text follows the closing quote of \"{}\" without a separator",
                        text()
                    ));
                }
            } else if bytes[i] == separator {
                i += 1;
            } else {
                return Err(format!(
                    "text follows the closing quote of \"{}\" before the separator {:?}",
                    text(),
                    char::from(separator)
                ));
            }
        } else {
            let start = i;
            if whitespace {
                while i < n && !is_blank_for(bytes[i], separator) {
                    i += 1;
                }
                out.extend_from_slice(&bytes[start..i]);
            } else {
                while i < n && bytes[i] != separator {
                    i += 1;
                }
                let mut end = i;
                while end > start && is_blank_for(bytes[end - 1], separator) {
                    end -= 1;
                }
                out.extend_from_slice(&bytes[start..end]);
            }
            quoted.push(false);
            if !whitespace {
                if i == n {
                    return Ok(());
                }
                // Past the separator: a field follows, even an empty one.
                i += 1;
            }
        }
    }
}

/// The separator of a file, guessed from its first line (the header, or
/// the first line of numbers): `;` (OpenTURNS' `exportToCSVFile`), else a
/// tab, else `,`, else runs of blanks; `None` for a single column. A comma
/// between two digits does not count when the line also splits on blanks
/// (`1,5 2,5` is two numbers written with a decimal comma). Quoted text
/// is ignored.
fn detect_separator(line: &str) -> Option<char> {
    let bytes = line.as_bytes();
    let (mut semicolons, mut tabs, mut commas, mut plain_commas, mut tokens) = (0, 0, 0, 0, 0);
    let mut in_quotes = false;
    let mut after_blank = true;
    for (i, &b) in bytes.iter().enumerate() {
        if in_quotes {
            in_quotes = b != b'"';
            continue;
        }
        let blank = b == b' ' || b == b'\t';
        if !blank && after_blank {
            tokens += 1;
        }
        after_blank = blank;
        match b {
            b'"' => in_quotes = true,
            b';' => semicolons += 1,
            b'\t' => tabs += 1,
            b',' => {
                commas += 1;
                let digit_before = i > 0 && bytes[i - 1].is_ascii_digit();
                let digit_after = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
                if !(digit_before && digit_after) {
                    plain_commas += 1;
                }
            }
            _ => {}
        }
    }
    if semicolons > 0 {
        Some(';')
    } else if tabs > 0 {
        Some('\t')
    } else if commas > 0 && (plain_commas > 0 || tokens < 2) {
        Some(',')
    } else if tokens >= 2 {
        Some(' ')
    } else {
        None
    }
}
fn parse_number(text: &str) -> Option<f64> {
    // Rust's parser takes every spelling C's strtod writes or reads in
    // practice: 1.5e+00, nan, -nan, NaN, inf, -Inf, infinity.
    text.parse::<f64>().ok()
}

/// Line-by-line reader that tracks 1-based line numbers and skips blank and
/// comment lines.
struct CsvLines<'a, R> {
    reader: R,
    file: &'a str,
    comment: Option<char>,
    buffer: Vec<u8>,
    line: usize,
}

impl<R: BufRead> CsvLines<'_, R> {
    /// The next line with content, as (line number, text).
    fn next_content(&mut self) -> Result<Option<(usize, &str)>, SampleError> {
        let mut comment_buf = [0u8; 4];
        let comment: Option<&[u8]> = self
            .comment
            .map(|c| c.encode_utf8(&mut comment_buf).as_bytes());
        let start = loop {
            self.buffer.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.buffer)
                .map_err(|source| SampleError::Io {
                    action: "read",
                    file: self.file.to_owned(),
                    source,
                })?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            while matches!(self.buffer.last(), Some(b'\n' | b'\r')) {
                self.buffer.pop();
            }
            // Spreadsheets often start UTF-8 files with a byte order mark.
            let start = if self.line == 1 && self.buffer.starts_with(b"\xEF\xBB\xBF") {
                3
            } else {
                0
            };
            let content = self.buffer[start..]
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .map(|blanks| &self.buffer[start + blanks..]);
            match content {
                None => continue,
                Some(content) if comment.is_some_and(|c| content.starts_with(c)) => continue,
                Some(_) => break start,
            }
        };
        match std::str::from_utf8(&self.buffer[start..]) {
            Ok(text) => Ok(Some((self.line, text))),
            Err(_) => Err(SampleError::NotUtf8 {
                file: self.file.to_owned(),
                line: self.line,
            }),
        }
    }
}

/// The content lines of a CSV text rewritten by [`canonical_line`] and
/// handed to the csv crate one line per `read`, so the line of every record
/// is known, and a problem found here (text that is not UTF-8, a broken
/// quote) is reported as the error of its own line, after the lines before
/// it.
struct CanonicalLines<'a, R> {
    lines: CsvLines<'a, R>,
    separator: u8,
    out: Vec<u8>,
    at: usize,
    /// Line numbers of the lines handed over and not yet taken back as
    /// records (one record per line: canonical lines are never empty and
    /// their quotes are closed).
    fed: VecDeque<usize>,
    quoted: Vec<bool>,
    failure: Option<SampleError>,
}

impl<R: BufRead> CanonicalLines<'_, R> {
    /// Queues one content line; the quoting of its fields is in `quoted`.
    fn feed(&mut self, line: usize, text: &str) -> Result<(), SampleError> {
        canonical_line(text, self.separator, &mut self.out, &mut self.quoted).map_err(
            |problem| SampleError::BadQuoting {
                file: self.lines.file.to_owned(),
                line,
                problem,
            },
        )?;
        self.out.push(b'\n');
        self.fed.push_back(line);
        Ok(())
    }

    fn refill(&mut self) -> Result<bool, SampleError> {
        self.out.clear();
        self.at = 0;
        let file = self.lines.file;
        let Some((line, text)) = self.lines.next_content()? else {
            return Ok(false);
        };
        canonical_line(text, self.separator, &mut self.out, &mut self.quoted).map_err(
            |problem| SampleError::BadQuoting {
                file: file.to_owned(),
                line,
                problem,
            },
        )?;
        self.out.push(b'\n');
        self.fed.push_back(line);
        Ok(true)
    }
}

impl<R: BufRead> Read for CanonicalLines<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.out.len() {
            match self.refill() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => {
                    // Kept for the caller: the csv crate only passes an
                    // io::Error through.
                    self.failure = Some(e);
                    return Err(io::Error::other("the CSV line could not be read"));
                }
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The text of a record's fields, for messages.
fn record_text(record: &csv::ByteRecord, separator: char) -> String {
    let mut text = String::new();
    for (j, field) in record.iter().enumerate() {
        if j > 0 {
            text.push(separator);
        }
        text.push_str(&String::from_utf8_lossy(field));
    }
    text
}

/// Reads the next record; returns its 1-based line number.
fn next_record<R: BufRead>(
    reader: &mut csv::Reader<CanonicalLines<'_, R>>,
    record: &mut csv::ByteRecord,
    separator: char,
    has_header: bool,
) -> Result<Option<usize>, SampleError> {
    let file = reader.get_ref().lines.file.to_owned();
    match reader.read_byte_record(record) {
        Ok(true) => Ok(Some(reader.get_mut().fed.pop_front().unwrap_or(0))),
        Ok(false) => Ok(None),
        Err(e) => {
            let lines = reader.get_mut();
            if let Some(failure) = lines.failure.take() {
                return Err(failure);
            }
            match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => {
                    let line = lines.fed.pop_front().unwrap_or(0);
                    let expected = usize::try_from(*expected_len).unwrap_or(usize::MAX);
                    let text = record_text(record, separator);
                    Err(SampleError::FieldCount {
                        file,
                        line,
                        expected,
                        found: usize::try_from(*len).unwrap_or(usize::MAX),
                        hint: field_count_hint(&text, separator, has_header, expected),
                    })
                }
                _ => Err(SampleError::Io {
                    action: "read",
                    file,
                    source: io::Error::other(e.to_string()),
                }),
            }
        }
    }
}

fn read_csv_named<R: BufRead>(
    reader: R,
    options: CsvOptions,
    file: &str,
) -> Result<Sample, SampleError> {
    options.check()?;
    let mut lines = CsvLines {
        reader,
        file,
        comment: options.comment,
        buffer: Vec::new(),
        line: 0,
    };
    let Some((first_line, first_text)) = lines.next_content()? else {
        return Err(SampleError::EmptyFile {
            file: file.to_owned(),
        });
    };
    let first_text = first_text.to_owned();
    // An explicit separator wins; otherwise the first line tells, and a
    // single column needs none.
    let separator = options
        .separator
        .or_else(|| detect_separator(&first_text))
        .unwrap_or(',');
    let mut canonical = CanonicalLines {
        lines,
        // `check` accepted only ASCII separators.
        separator: u8::try_from(separator).unwrap_or(b','),
        out: Vec::new(),
        at: 0,
        fed: VecDeque::new(),
        quoted: Vec::new(),
        failure: None,
    };
    canonical.feed(first_line, &first_text)?;
    let first_quoted = std::mem::take(&mut canonical.quoted);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .delimiter(canonical.separator)
        .quoting(true)
        .double_quote(true)
        // Only '\n' ends a line: a stray '\r' inside one stays in its field.
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(canonical);
    let mut record = csv::ByteRecord::new();
    // The header decision needs the first line, and the error of a ragged
    // line names what its count came from: assume a header until known.
    if next_record(&mut reader, &mut record, separator, true)?.is_none() {
        return Err(SampleError::EmptyFile {
            file: file.to_owned(),
        });
    }
    let first_fields: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    // A number with a decimal comma counts as a number: a first line of
    // them is data to refuse with a hint, not a header.
    let numeric = first_fields
        .iter()
        .zip(&first_quoted)
        .filter(|(f, &quoted)| !quoted && (parse_number(f).is_some() || is_decimal_comma_number(f)))
        .count();
    let is_header = match options.header {
        HeaderMode::Present => true,
        HeaderMode::Absent => false,
        // Like OpenTURNS, but a line mixing numbers and words is taken as a
        // damaged data line rather than silently as names.
        HeaderMode::Auto => first_quoted.iter().any(|&q| q) || numeric == 0,
    };
    let names: Vec<String> = if is_header {
        first_fields
            .iter()
            .enumerate()
            .map(|(j, f)| {
                if f.trim().is_empty() {
                    format!("X{j}")
                } else {
                    f.clone()
                }
            })
            .collect()
    } else {
        Sample::default_names(first_fields.len())
    };
    let mixed_first_line = !is_header && numeric > 0 && options.header == HeaderMode::Auto;
    let mut sample = Sample::new(names);
    let mut row = Vec::with_capacity(sample.dimension());
    let mut pending_first = (!is_header).then_some(first_line);
    loop {
        let line = match pending_first.take() {
            Some(line) => line,
            None => match next_record(&mut reader, &mut record, separator, is_header)? {
                Some(line) => line,
                None => break,
            },
        };
        row.clear();
        for (j, field) in record.iter().enumerate() {
            let text = String::from_utf8_lossy(field);
            match parse_number(&text) {
                Some(value) => row.push(value),
                None => {
                    let found = text.into_owned();
                    let hint = bad_number_hint(&found, mixed_first_line && line == first_line);
                    return Err(SampleError::BadNumber {
                        file: file.to_owned(),
                        line,
                        column: sample.names[j].clone(),
                        found,
                        hint,
                    });
                }
            }
        }
        sample.data.extend_from_slice(&row);
        sample.len += 1;
    }
    Ok(sample)
}

fn separator_name(separator: char) -> String {
    match separator {
        ' ' => "spaces".to_owned(),
        '\t' => "tabs".to_owned(),
        c => format!("'{c}'"),
    }
}

/// What to do about decimal commas, shared by the messages that meet them.
const DECIMAL_COMMA_HINT: &str = "numbers must use a dot as decimal separator: \
     export the file with '.' as the decimal separator (OpenTURNS' exportToCSVFile writes dots; \
     in a spreadsheet, set the decimal separator to '.' before saving as CSV)";

/// Whether `text` is a number written with a decimal comma (`1,5`, `-2,5e3`).
fn is_decimal_comma_number(text: &str) -> bool {
    text.matches(',').count() == 1 && parse_number(&without_decimal_commas(text)).is_some()
}

/// `text` with every comma between two digits turned into a dot.
fn without_decimal_commas(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let between_digits = c == ','
            && i > 0
            && bytes[i - 1].is_ascii_digit()
            && bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
        out.push(if between_digits { '.' } else { c });
    }
    out
}

fn field_count_hint(text: &str, separator: char, has_header: bool, expected: usize) -> String {
    let own_separator_absent = separator != ' ' && !text.contains(separator);
    for candidate in [';', ',', '\t', ' '] {
        if candidate != separator
            && (own_separator_absent || separator == ' ')
            && text.trim().matches(candidate).count() + 1 == expected
        {
            return format!(
                "the line looks separated by {}: read it with CsvOptions::default().with_separator({candidate:?})",
                separator_name(candidate)
            );
        }
    }
    if separator == ',' && text.contains(',') {
        let dotted = without_decimal_commas(text);
        if dotted != text && dotted.matches(',').count() + 1 == expected {
            return format!("the line looks written with decimal commas; {DECIMAL_COMMA_HINT}");
        }
    }
    let reference = if has_header {
        "the header"
    } else {
        "the first line of numbers"
    };
    format!(
        "every line needs one value per column of {reference}, separated by {}",
        separator_name(separator)
    )
}

fn bad_number_hint(found: &str, mixed_first_line: bool) -> String {
    if found.is_empty() {
        return "the cell is empty: write a number, or nan for a missing value".to_owned();
    }
    if is_decimal_comma_number(found) {
        return DECIMAL_COMMA_HINT.to_owned();
    }
    if mixed_first_line {
        return "if this first line is a header, quote its names (\"Load\",\"Length\") \
                or read with HeaderMode::Present"
            .to_owned();
    }
    "write a number such as 1.5, -2e-3, nan or inf".to_owned()
}

// ---------------------------------------------------------------------------
// Binary dump
// ---------------------------------------------------------------------------

/// First bytes of a sample dump. The high first byte and the final newline
/// catch files mangled by text-mode transfers.
const DUMP_MAGIC: &[u8; 8] = b"\x89OTWSMP\n";
/// Version of the dump layout written after the magic (u32 little endian).
const DUMP_VERSION: u32 = 1;
/// Name used in messages for a dump read from a reader rather than a file.
const DUMP_INPUT: &str = "dump input";
/// Name used in messages for a dump written to a writer rather than a file.
const DUMP_OUTPUT: &str = "dump output";

/// What is serialized, both in dumps and through serde.
#[derive(Serialize)]
struct SampleRef<'a> {
    names: &'a [String],
    dimension: u64,
    len: u64,
    data: &'a [f64],
}

/// Deserialized form. Names are borrowed when the format allows it: with
/// bincode, an owned `String` would be allocated at its encoded length
/// before checking that the bytes exist, and a corrupt length would then
/// exhaust memory; a borrowed `str` is only a view of bytes already read.
#[derive(Deserialize)]
struct SampleFields<'a> {
    #[serde(borrow)]
    names: Vec<NameField<'a>>,
    dimension: u64,
    len: u64,
    // Serde's sequence visitor caps the pre-allocation, so a corrupt
    // length cannot allocate more than the values actually present.
    data: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(transparent)]
struct NameField<'a>(#[serde(borrow)] Cow<'a, str>);

impl SampleFields<'_> {
    fn into_sample(self) -> Result<Sample, String> {
        let dimension =
            usize::try_from(self.dimension).map_err(|_| "dimension too large".to_owned())?;
        let len = usize::try_from(self.len).map_err(|_| "size too large".to_owned())?;
        if self.names.len() != dimension {
            return Err(format!(
                "{} column names for a dimension of {dimension}",
                self.names.len()
            ));
        }
        if len.checked_mul(dimension) != Some(self.data.len()) {
            return Err(format!(
                "{} values for {len} rows of {dimension} columns",
                self.data.len()
            ));
        }
        Ok(Sample {
            names: self.names.into_iter().map(|n| n.0.into_owned()).collect(),
            len,
            data: self.data,
        })
    }
}

impl Sample {
    fn as_serialized(&self) -> SampleRef<'_> {
        SampleRef {
            names: &self.names,
            dimension: self.dimension() as u64,
            len: self.len as u64,
            data: &self.data,
        }
    }
}

/// Serialized as `{names, dimension, len, data}` with `data` row-major.
impl Serialize for Sample {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_serialized().serialize(serializer)
    }
}

/// Checks that names, dimension, size and data agree.
impl<'de> Deserialize<'de> for Sample {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        SampleFields::deserialize(deserializer)?
            .into_sample()
            .map_err(serde::de::Error::custom)
    }
}

impl Sample {
    /// Writes the sample to a compressed binary file, atomically: magic
    /// bytes, a format version, then gzip of a bincode encoding of the
    /// names, dimension, size and values (bit-exact, NaN payloads included).
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let path = std::env::temp_dir().join(format!("doc-dump-{}.otws", std::process::id()));
    /// let s = Sample::from_arrays(&[[1.0, f64::NAN], [3.0, -0.0]]);
    /// s.dump(&path)?;
    /// let back = Sample::load(&path)?;
    /// assert_eq!(back.names(), s.names());
    /// assert!(back.as_flat().iter().zip(s.as_flat()).all(|(a, b)| a.to_bits() == b.to_bits()));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dump(&self, path: impl AsRef<Path>) -> Result<(), SampleError> {
        write_atomically(path.as_ref(), |out| self.dump_unchecked(out))
    }

    /// Writes the dump format to any writer (not atomic).
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let mut bytes = Vec::new();
    /// Sample::from_arrays(&[[1.0]]).dump_to(&mut bytes)?;
    /// assert_eq!(Sample::load_from(&bytes[..])?, Sample::from_arrays(&[[1.0]]));
    /// # Ok::<(), otwrap_runtime::sample::SampleError>(())
    /// ```
    pub fn dump_to(&self, writer: impl Write) -> Result<(), SampleError> {
        let mut out = BufWriter::new(writer);
        self.dump_unchecked(&mut out)
            .and_then(|()| out.flush())
            .map_err(|source| SampleError::Io {
                action: "write",
                file: DUMP_OUTPUT.to_owned(),
                source,
            })
    }

    fn dump_unchecked(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(DUMP_MAGIC)?;
        out.write_all(&DUMP_VERSION.to_le_bytes())?;
        // Fast compression: simulation outputs compress little better at
        // higher levels, which cost several times the time.
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        // bincode writes value by value; feed the compressor in blocks.
        let mut buffered = BufWriter::with_capacity(64 * 1024, gz);
        bincode::serde::encode_into_std_write(
            self.as_serialized(),
            &mut buffered,
            bincode::config::standard(),
        )
        .map_err(|e| match e {
            bincode::error::EncodeError::Io { inner, .. } => inner,
            other => io::Error::other(other.to_string()),
        })?;
        buffered
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .finish()?;
        Ok(())
    }

    /// Reads a file written by [`Sample::dump`], checking its magic bytes,
    /// version and integrity; a truncated or damaged file is an error, never
    /// a panic.
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// let path = std::env::temp_dir().join(format!("doc-load-{}.otws", std::process::id()));
    /// std::fs::write(&path, b"not a dump")?;
    /// assert!(Sample::load(&path).is_err());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SampleError> {
        let path = path.as_ref();
        let file_name = path.display().to_string();
        let file = File::open(path).map_err(|source| SampleError::Io {
            action: "open",
            file: file_name.clone(),
            source,
        })?;
        load_named(file, &file_name)
    }

    /// Reads the dump format from any reader; messages call it "dump input".
    ///
    /// ```
    /// use otwrap_runtime::sample::Sample;
    ///
    /// assert!(Sample::load_from(&b""[..]).is_err());
    /// ```
    pub fn load_from(reader: impl Read) -> Result<Self, SampleError> {
        load_named(reader, DUMP_INPUT)
    }
}

fn load_named(reader: impl Read, file: &str) -> Result<Sample, SampleError> {
    let corrupt = |detail: String| SampleError::CorruptDump {
        file: file.to_owned(),
        detail,
    };
    let io_error = |source: io::Error| SampleError::Io {
        action: "read",
        file: file.to_owned(),
        source,
    };
    let mut reader = BufReader::new(reader);

    let mut header = [0u8; 12];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    let magic_seen = filled.min(DUMP_MAGIC.len());
    if header[..magic_seen] != DUMP_MAGIC[..magic_seen] {
        return Err(SampleError::NotADump {
            file: file.to_owned(),
        });
    }
    if filled < header.len() {
        return Err(if filled == 0 {
            corrupt("the file is empty".to_owned())
        } else {
            corrupt(format!("it ends inside its {}-byte header", header.len()))
        });
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&header[8..12]);
    let version = u32::from_le_bytes(version);
    if version != DUMP_VERSION {
        return Err(SampleError::UnsupportedVersion {
            file: file.to_owned(),
            found: version,
            supported: DUMP_VERSION,
        });
    }

    // The buffer grows with the bytes actually decompressed, never with a
    // length read from the file.
    let mut payload = Vec::new();
    let mut gz = flate2::bufread::GzDecoder::new(reader);
    if let Err(e) = gz.read_to_end(&mut payload) {
        return Err(match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput => corrupt(format!("compressed data: {e}")),
            _ => io_error(e),
        });
    }
    let mut rest = gz.into_inner();
    if !rest.fill_buf().map_err(io_error)?.is_empty() {
        return Err(corrupt("bytes follow the compressed data".to_owned()));
    }

    let (decoded, used): (SampleFields<'_>, usize) =
        bincode::serde::borrow_decode_from_slice(&payload, bincode::config::standard())
            .map_err(|e| corrupt(format!("content: {e}")))?;
    if used != payload.len() {
        return Err(corrupt(format!(
            "{} bytes follow the encoded sample",
            payload.len() - used
        )));
    }
    decoded.into_sample().map_err(corrupt)
}

// ---------------------------------------------------------------------------
// Atomic file writing
// ---------------------------------------------------------------------------

/// Writes `path` through a temporary file in the same directory (so the
/// final rename stays on one file system) and renames it into place.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
) -> Result<(), SampleError> {
    let file_name = path.display().to_string();
    let io_error = |action: &'static str| {
        let file_name = file_name.clone();
        move |source: io::Error| SampleError::Io {
            action,
            file: file_name,
            source,
        }
    };
    let Some(base) = path.file_name() else {
        return Err(io_error("write")(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path does not name a file",
        )));
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };

    let (temp_path, temp_file) =
        create_temp_beside(&dir, base).map_err(io_error("create a temporary file for"))?;
    let written = write_and_sync(&temp_file, write);
    // Closed before the rename or removal, which some systems require.
    drop(temp_file);
    let result = written
        .map_err(io_error("write"))
        .and_then(|()| fs::rename(&temp_path, path).map_err(io_error("replace")));
    match result {
        Ok(()) => {
            sync_dir(&dir);
            Ok(())
        }
        Err(e) => {
            // Best effort: the original error matters more than this one.
            let _ = fs::remove_file(&temp_path);
            Err(e)
        }
    }
}

fn write_and_sync(
    file: &File,
    write: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
) -> io::Result<()> {
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    out.flush()?;
    drop(out);
    file.sync_all()
}

fn create_temp_beside(dir: &Path, base: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut last_error = None;
    for attempt in 0..1000u32 {
        let mut name = std::ffi::OsString::from(".");
        name.push(base);
        name.push(format!(".{pid}.{attempt}.tmp"));
        let candidate = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(file) => return Ok((candidate, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

/// Makes the rename itself durable; failure only weakens durability.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

// ---------------------------------------------------------------------------
// Display
// ---------------------------------------------------------------------------

/// Rows from this count on are elided, like OpenTURNS'
/// `Sample-PrintEllipsisThreshold`.
const ELLIPSIS_THRESHOLD: usize = 1000;
/// Rows (and columns) kept at each end when eliding (`Sample-PrintEllipsisSize`).
const ELLIPSIS_SIZE: usize = 3;

/// Prints like OpenTURNS: a header line of names, then `index : [ values ]`
/// with values aligned on the decimal point and 6 significant digits.
/// Samples of 1000 rows or more show their first and last 3 rows around
/// `...` (and likewise their columns past 6). `{:.N}` sets the significant
/// digits; `{:#}` prints every row and column.
///
/// ```
/// use otwrap_runtime::sample::Sample;
///
/// let s = Sample::from_arrays(&[[0.608202, -1.26617], [-2.18139, 0.350042]]);
/// assert_eq!(
///     s.to_string(),
///     "    [ X0        X1        ]\n\
///      0 : [  0.608202 -1.26617  ]\n\
///      1 : [ -2.18139   0.350042 ]"
/// );
/// ```
impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let precision = f.precision().unwrap_or(6).max(1);
        let ellipsis = !f.alternate() && self.len >= ELLIPSIS_THRESHOLD;
        let shown = |count: usize| -> Vec<Option<usize>> {
            if ellipsis && count > 2 * ELLIPSIS_SIZE {
                (0..ELLIPSIS_SIZE)
                    .map(Some)
                    .chain(std::iter::once(None))
                    .chain((count - ELLIPSIS_SIZE..count).map(Some))
                    .collect()
            } else {
                (0..count).map(Some).collect()
            }
        };
        let rows = shown(self.len);
        let columns = shown(self.dimension());

        let cells: Vec<Vec<String>> = rows
            .iter()
            .flatten()
            .map(|&i| {
                columns
                    .iter()
                    .flatten()
                    .map(|&j| format_general(self[(i, j)], precision))
                    .collect()
            })
            .collect();
        let split = |s: &str| match s.find('.') {
            Some(dot) => (dot, s.len() - dot),
            None => (s.len(), 0),
        };
        let (mut left, mut right) = (0, 0);
        for cell in cells.iter().flatten() {
            let (l, r) = split(cell);
            left = left.max(l);
            right = right.max(r);
        }
        let mut title = columns
            .iter()
            .flatten()
            .map(|&j| self.names[j].chars().count())
            .max()
            .unwrap_or(0);
        if title > left + right {
            right = title - left;
        } else {
            title = left + right;
        }
        let index_width = self.len.saturating_sub(1).to_string().len();

        write!(f, "{:index_width$}   [ ", "")?;
        for (k, column) in columns.iter().enumerate() {
            if k > 0 {
                f.write_str(" ")?;
            }
            match column {
                Some(j) => write!(f, "{:<title$}", self.names[*j])?,
                None => f.write_str("...")?,
            }
        }
        f.write_str(" ]")?;

        let mut cells = cells.iter();
        for row in &rows {
            let Some(i) = row else {
                f.write_str("\n...")?;
                continue;
            };
            let Some(values) = cells.next() else {
                break;
            };
            write!(f, "\n{i:>index_width$} : [ ")?;
            let mut values = values.iter();
            for (k, column) in columns.iter().enumerate() {
                if k > 0 {
                    f.write_str(" ")?;
                }
                // Elided columns have no cell.
                let cell = column.and_then(|_| values.next());
                match cell {
                    Some(cell) => {
                        let (l, r) = split(cell);
                        write!(
                            f,
                            "{:pad_left$}{cell}{:pad_right$}",
                            "",
                            "",
                            pad_left = left - l,
                            pad_right = right - r
                        )?;
                    }
                    None => f.write_str("...")?,
                }
            }
            f.write_str(" ]")?;
        }
        Ok(())
    }
}

/// C's `%.{precision}g`: fixed or exponent notation, trailing zeros removed.
fn format_general(value: f64, precision: usize) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let scientific = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    if exponent < -4 || exponent >= precision as i64 {
        let mantissa = trim_fraction(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    } else {
        let decimals = (precision as i64 - 1 - exponent).max(0) as usize;
        trim_fraction(&format!("{value:.decimals$}")).to_owned()
    }
}

fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn read_str(text: &str) -> Result<Sample, SampleError> {
        Sample::read_csv_from(text.as_bytes(), CsvOptions::default())
    }

    fn read_str_with(text: &str, options: CsvOptions) -> Result<Sample, SampleError> {
        Sample::read_csv_from(text.as_bytes(), options)
    }

    fn error_of(text: &str) -> String {
        match read_str(text) {
            Ok(s) => panic!("expected an error, read {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn same_bits(a: &Sample, b: &Sample) -> bool {
        a.names == b.names
            && a.len == b.len
            && a.data.len() == b.data.len()
            && a.data
                .iter()
                .zip(&b.data)
                .all(|(x, y)| x.to_bits() == y.to_bits())
    }

    fn tricky_values() -> Vec<f64> {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            0.1 + 0.2,
            1.0 / 3.0,
            1e16,
            1e-7,
            123456789012345680.0,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            // Largest negative subnormal.
            f64::from_bits(0x800F_FFFF_FFFF_FFFF),
            1e300,
            1e-300,
            f64::EPSILON,
            std::f64::consts::PI,
        ];
        // Pseudo-random bit patterns cover every exponent range.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        while values.len() < 400 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = f64::from_bits(state);
            if x.is_finite() {
                values.push(x);
            }
        }
        values
    }

    // ----- building and accessing -------------------------------------------

    #[test]
    fn push_row_column_and_iteration() {
        let mut s = Sample::with_capacity(names(&["a", "b", "c"]), 2);
        s.push(&[1.0, 2.0, 3.0]).unwrap();
        s.push(&[4.0, 5.0, 6.0]).unwrap();
        assert_eq!((s.len(), s.dimension(), s.is_empty()), (2, 3, false));
        assert_eq!(s.row(1), &[4.0, 5.0, 6.0]);
        assert_eq!(&s[0], &[1.0, 2.0, 3.0]);
        assert_eq!(s[(1, 2)], 6.0);
        assert_eq!(s.column(1), vec![2.0, 5.0]);
        assert_eq!(s.column_by_name("c").unwrap(), vec![3.0, 6.0]);
        assert_eq!(s.column_index("b"), Some(1));
        assert_eq!(s.get(2), None);
        assert_eq!(s.as_flat(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let rows = s.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(s.rows().next_back(), Some(&[4.0, 5.0, 6.0][..]));
        assert_eq!((&s).into_iter().count(), 2);
        s[(0, 0)] = 10.0;
        s.row_mut(1)[0] = 40.0;
        assert_eq!(s.column(0), vec![10.0, 40.0]);
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.dimension(), 3);
    }

    #[test]
    fn dimension_zero_sample_keeps_its_size() {
        let mut s = Sample::default();
        s.push(&[]).unwrap();
        s.push(&[]).unwrap();
        assert_eq!((s.len(), s.dimension()), (2, 0));
        assert_eq!(s.rows().count(), 2);
        assert_eq!(s.row(1), &[] as &[f64]);
        assert_eq!(s.to_arrays::<0>().unwrap().len(), 2);
    }

    #[test]
    fn push_of_wrong_width_names_the_row_and_columns() {
        let mut s = Sample::new(names(&["Load", "Length"]));
        s.push(&[1.0, 2.0]).unwrap();
        let e = s.push(&[1.0]).unwrap_err();
        assert!(matches!(
            e,
            SampleError::RowWidth {
                row: 1,
                expected: 2,
                found: 1,
                ..
            }
        ));
        let message = e.to_string();
        assert!(message.contains("row 1 has 1 values"), "{message}");
        assert!(message.contains("\"Load\", \"Length\""), "{message}");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn from_rows_checks_every_row() {
        let e = Sample::from_rows(
            names(&["a", "b"]),
            vec![vec![1.0, 2.0], vec![1.0, 2.0, 3.0]],
        )
        .unwrap_err();
        assert!(matches!(
            e,
            SampleError::RowWidth {
                row: 1,
                expected: 2,
                found: 3,
                ..
            }
        ));
        let s = Sample::from_rows(names(&["a"]), vec![]).unwrap();
        assert_eq!((s.len(), s.dimension()), (0, 1));
    }

    #[test]
    fn from_flat_checks_length() {
        assert!(matches!(
            Sample::from_flat(names(&["a", "b"]), vec![1.0, 2.0, 3.0]),
            Err(SampleError::FlatLength {
                dimension: 2,
                found: 3
            })
        ));
        assert!(Sample::from_flat(vec![], vec![1.0]).is_err());
        assert_eq!(Sample::from_flat(vec![], vec![]).unwrap().len(), 0);
        let (n, d) = Sample::from_flat(names(&["a"]), vec![1.0, 2.0])
            .unwrap()
            .into_parts();
        assert_eq!((n, d), (names(&["a"]), vec![1.0, 2.0]));
    }

    #[test]
    fn names_can_be_replaced_only_one_per_column() {
        let mut s = Sample::from_arrays(&[[1.0, 2.0]]);
        let e = s.set_names(names(&["a"])).unwrap_err();
        assert!(e
            .to_string()
            .contains("1 column names were given for a sample of dimension 2"));
        s.set_names(names(&["a", "b"])).unwrap();
        assert_eq!(s.names(), &["a", "b"]);
    }

    #[test]
    fn unknown_column_lists_the_columns() {
        let s = Sample::new(names(&["x", "y"]));
        let message = s.column_by_name("z").unwrap_err().to_string();
        assert_eq!(
            message,
            "no column is named \"z\"; the columns are \"x\", \"y\""
        );
    }

    #[test]
    fn extend_from_sample_checks_dimension() {
        let mut s = Sample::from_arrays(&[[1.0, 2.0]]);
        assert!(s
            .extend_from_sample(&Sample::from_arrays(&[[1.0]]))
            .is_err());
        s.extend_from_sample(&Sample::from_arrays(&[[3.0, 4.0]]))
            .unwrap();
        assert_eq!(s.len(), 2);
    }

    // ----- conversions --------------------------------------------------------

    #[test]
    fn arrays_round_trip_and_mismatch() {
        let rows = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let s = Sample::from_arrays(&rows);
        assert_eq!(s.names(), &["X0", "X1", "X2"]);
        assert_eq!(s.to_arrays::<3>().unwrap(), rows.to_vec());
        let e = s.to_arrays::<2>().unwrap_err();
        assert!(matches!(
            e,
            SampleError::DimensionMismatch {
                expected: 2,
                found: 3
            }
        ));
        assert!(e.to_string().contains("dimension 3 into rows of 2 values"));
        assert_eq!(Sample::from(rows.to_vec()), s);
        assert_eq!(Sample::from(&rows[..]), s);
        let collected: Sample = rows.iter().copied().collect();
        assert_eq!(collected, s);
        let empty = Sample::from_arrays::<4>(&[]);
        assert_eq!((empty.len(), empty.dimension()), (0, 4));
    }

    #[test]
    fn vecs_round_trip_and_ragged_rows() {
        let rows = vec![vec![1.0, 2.0], vec![3.0, 4.0]];
        let s = Sample::from_vecs(rows.clone()).unwrap();
        assert_eq!(s.names(), &["X0", "X1"]);
        assert_eq!(s.to_vecs(), rows);
        assert_eq!(Sample::try_from(rows).unwrap(), s);
        let e = Sample::from_vecs(vec![vec![1.0, 2.0], vec![3.0]]).unwrap_err();
        assert!(matches!(
            e,
            SampleError::RowWidth {
                row: 1,
                expected: 2,
                found: 1,
                ..
            }
        ));
        let empty = Sample::from_vecs(vec![]).unwrap();
        assert_eq!((empty.len(), empty.dimension()), (0, 0));
    }

    // ----- CSV writing and round trips ---------------------------------------

    fn csv_text(s: &Sample, options: CsvOptions) -> String {
        let mut out = Vec::new();
        s.write_csv_to(&mut out, options).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_round_trip_is_bit_exact() {
        let values = tricky_values();
        let rows: Vec<Vec<f64>> = values.chunks_exact(4).map(<[f64]>::to_vec).collect();
        let s = Sample::from_rows(names(&["Load", "Young modulus", "Length", "Inertia"]), rows)
            .unwrap();
        for separator in [',', ';', '\t', ' ', '|'] {
            let options = CsvOptions::default().with_separator(separator);
            let text = csv_text(&s, options);
            let back = read_str_with(&text, options).unwrap();
            assert!(same_bits(&s, &back), "separator {separator:?}");
        }
    }

    #[test]
    fn csv_round_trip_of_special_values() {
        let s = Sample::from_rows(
            names(&["a", "b", "c"]),
            vec![
                vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY],
                vec![-0.0, 5e-324, 1e308],
            ],
        )
        .unwrap();
        let text = csv_text(&s, CsvOptions::default());
        assert_eq!(text, "\"a\",\"b\",\"c\"\nnan,inf,-inf\n-0,5e-324,1e308\n");
        let back = read_str(&text).unwrap();
        assert!(back[(0, 0)].is_nan());
        assert_eq!(back[(0, 1)], f64::INFINITY);
        assert_eq!(back[(0, 2)], f64::NEG_INFINITY);
        assert_eq!(back[(1, 0)].to_bits(), (-0.0f64).to_bits());
        assert_eq!(back[(1, 1)], 5e-324);
    }

    #[test]
    fn csv_writes_like_openturns() {
        let s = Sample::from_rows(
            names(&["Load", "Young modulus", "Length", "Inertia"]),
            vec![vec![30000.0, 2.9e7, 260.0, 400.0]],
        )
        .unwrap();
        assert_eq!(
            csv_text(&s, CsvOptions::default()),
            "\"Load\",\"Young modulus\",\"Length\",\"Inertia\"\n30000,29000000,260,400\n"
        );
        let no_header = CsvOptions::default().with_header(HeaderMode::Absent);
        assert_eq!(csv_text(&s, no_header), "30000,29000000,260,400\n");
    }

    #[test]
    fn csv_names_with_quotes_separators_and_newlines() {
        let s = Sample::from_rows(
            names(&["say \"hi\"", "a,b", "two\nlines"]),
            vec![vec![1.0, 2.0, 3.0]],
        )
        .unwrap();
        let text = csv_text(&s, CsvOptions::default());
        assert_eq!(
            text.lines().next(),
            Some("\"say \"\"hi\"\"\",\"a,b\",\"two lines\"")
        );
        let back = read_str(&text).unwrap();
        assert_eq!(back.names(), &["say \"hi\"", "a,b", "two lines"]);
        let spaced = CsvOptions::default().with_separator(' ');
        let back = read_str_with(&csv_text(&s, spaced), spaced).unwrap();
        assert_eq!(back.names(), &["say \"hi\"", "a,b", "two lines"]);
    }

    #[test]
    fn csv_file_round_trip_is_atomic_and_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doe.csv");
        fs::write(&path, "old content").unwrap();
        let s = Sample::from_arrays(&[[1.0, 2.0], [3.0, 4.5]]);
        s.write_csv(&path).unwrap();
        assert_eq!(Sample::read_csv(&path).unwrap(), s);
        let semicolon = CsvOptions::default().with_separator(';');
        s.write_csv_with(&path, semicolon).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "\"X0\";\"X1\"\n1;2\n3;4.5\n"
        );
        assert_eq!(Sample::read_csv_with(&path, semicolon).unwrap(), s);
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary file may remain");
    }

    #[test]
    fn csv_write_into_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("doe.csv");
        let e = Sample::from_arrays(&[[1.0]]).write_csv(&path).unwrap_err();
        let message = e.to_string();
        assert!(
            message.starts_with("cannot create a temporary file for "),
            "{message}"
        );
        assert!(message.contains("doe.csv"), "{message}");
    }

    #[test]
    fn csv_write_to_a_path_without_file_name_fails() {
        let e = Sample::from_arrays(&[[1.0]]).write_csv("/").unwrap_err();
        assert!(matches!(e, SampleError::Io { .. }));
    }

    // ----- CSV reading -------------------------------------------------------

    #[test]
    fn reads_openturns_comma_file() {
        let s = read_str("\"X0\",\"X1\"\n1.5,2\n-3e-2,4.25\n").unwrap();
        assert_eq!(s.names(), &["X0", "X1"]);
        assert_eq!(s.to_vecs(), vec![vec![1.5, 2.0], vec![-0.03, 4.25]]);
    }

    #[test]
    fn reads_openturns_default_export() {
        // exportToCSVFile's defaults: ';' and scientific with 16 digits.
        let text = "\"Load\";\"Young modulus\"\n\
                    3.0000000000000000e+04;2.9000000000000000e+07\n\
                    3.1000000000000000e+04;nan\n";
        let s = read_str_with(text, CsvOptions::default().with_separator(';')).unwrap();
        assert_eq!(s.names(), &["Load", "Young modulus"]);
        assert_eq!(s.row(0), &[3.0e4, 2.9e7]);
        assert!(s[(1, 1)].is_nan());
    }

    #[test]
    fn reads_crlf_bom_blank_and_comment_lines() {
        let text = "\u{feff}# written by hand\r\n\"a\",\"b\"\r\n\r\n1,2\r\n  # a comment\r\n3 , 4 \r\n\r\n\r\n";
        let s = read_str(text).unwrap();
        assert_eq!(s.names(), &["a", "b"]);
        assert_eq!(s.to_vecs(), vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
    }

    #[test]
    fn reads_every_spelling_of_special_values() {
        // A quoted field makes the first line a header, as in OpenTURNS.
        let header = (0..11)
            .map(|j| format!("\"c{j}\""))
            .collect::<Vec<_>>()
            .join(",");
        let s = read_str(&format!(
            "{header}\nnan,NaN,NAN,-nan,inf,Inf,-Inf,infinity,+inf,\"nan\",-INF\n"
        ))
        .unwrap();
        let row = s.row(0);
        assert!(row[..4].iter().all(|x| x.is_nan()));
        let inf = f64::INFINITY;
        assert_eq!(row[4..9], [inf, inf, -inf, inf, inf]);
        assert!(row[9].is_nan());
        assert_eq!(row[10], f64::NEG_INFINITY);
    }

    #[test]
    fn missing_header_gives_default_names() {
        let s = read_str("1,2,3\n4,5,6\n").unwrap();
        assert_eq!(s.names(), &["X0", "X1", "X2"]);
        assert_eq!(s.len(), 2);
        let absent = CsvOptions::default().with_header(HeaderMode::Absent);
        let e = read_str_with("\"a\",\"b\"\n", absent).unwrap_err();
        assert!(matches!(e, SampleError::BadNumber { line: 1, .. }));
    }

    #[test]
    fn unquoted_and_forced_headers() {
        let s = read_str("Load, Length\n1,2\n").unwrap();
        assert_eq!(s.names(), &["Load", "Length"]);
        let present = CsvOptions::default().with_header(HeaderMode::Present);
        let s = read_str_with("1,2\n3,4\n", present).unwrap();
        assert_eq!(s.names(), &["1", "2"]);
        assert_eq!(s.len(), 1);
        let s = read_str("\"a\",,\" c \"\n1,2,3\n").unwrap();
        assert_eq!(s.names(), &["a", "X1", " c "]);
    }

    #[test]
    fn header_only_gives_an_empty_sample() {
        let s = read_str("\"a\",\"b\"\n\n").unwrap();
        assert_eq!((s.len(), s.names()), (0, &names(&["a", "b"])[..]));
    }

    #[test]
    fn whitespace_separator_takes_runs_of_blanks() {
        let spaced = CsvOptions::default().with_separator(' ');
        let s = read_str_with("  \"Young modulus\"   \"L\"\n  1.5 \t 2  \n3 4\n", spaced).unwrap();
        assert_eq!(s.names(), &["Young modulus", "L"]);
        assert_eq!(s.to_vecs(), vec![vec![1.5, 2.0], vec![3.0, 4.0]]);
    }

    #[test]
    fn tab_separator_keeps_spaces_inside_names() {
        let tabs = CsvOptions::default().with_separator('\t');
        let s = read_str_with("Young modulus\tLength\n1\t 2\n", tabs).unwrap();
        assert_eq!(s.names(), &["Young modulus", "Length"]);
        assert_eq!(s.row(0), &[1.0, 2.0]);
    }

    #[test]
    fn comments_can_be_disabled() {
        let options = CsvOptions::default().with_comment(None);
        let e = read_str_with("1,2\n# no\n", options).unwrap_err();
        assert!(matches!(e, SampleError::FieldCount { line: 2, .. }));
    }

    #[test]
    fn detects_semicolons_of_openturns_exports() {
        // exportToCSVFile's default, read with the default options.
        let text = "\"Load\";\"Young modulus\"\n\
                    3.0000000000000000e+04;2.9000000000000000e+07\n\
                    3.1000000000000000e+04;nan\n";
        let s = read_str(text).unwrap();
        assert_eq!(s.names(), &["Load", "Young modulus"]);
        assert_eq!(s.row(0), &[3.0e4, 2.9e7]);
        assert!(s[(1, 1)].is_nan());
        // Without a header, from the first line of numbers; a ';' inside a
        // quoted name does not count.
        let s = read_str("1.5;-2\n3;4e-3\n").unwrap();
        assert_eq!(s.names(), &["X0", "X1"]);
        assert_eq!(s.to_vecs(), vec![vec![1.5, -2.0], vec![3.0, 4e-3]]);
        let s = read_str("\"a;b\",\"c\"\n1,2\n").unwrap();
        assert_eq!(s.names(), &["a;b", "c"]);
    }

    #[test]
    fn detects_tabs_and_runs_of_blanks() {
        let s = read_str("\"Young modulus\"\t\"L\"\n1.5\t 2\n3\t4\n").unwrap();
        assert_eq!(s.names(), &["Young modulus", "L"]);
        assert_eq!(s.to_vecs(), vec![vec![1.5, 2.0], vec![3.0, 4.0]]);
        let s = read_str("Young_modulus   L\n  1.5    2\n3 4\n").unwrap();
        assert_eq!(s.names(), &["Young_modulus", "L"]);
        assert_eq!(s.to_vecs(), vec![vec![1.5, 2.0], vec![3.0, 4.0]]);
        let s = read_str("1.5  2  3\n4 5 6\n").unwrap();
        assert_eq!(s.to_vecs(), vec![vec![1.5, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
    }

    #[test]
    fn one_column_needs_no_separator() {
        let s = read_str("\"Deviation\"\n0.5\n-1e-3\nnan\n").unwrap();
        assert_eq!(s.names(), &["Deviation"]);
        assert_eq!(s.column(0)[..2], [0.5, -1e-3]);
        assert_eq!(s.len(), 3);
        let s = read_str("0.5\n2\n").unwrap();
        assert_eq!(s.names(), &["X0"]);
        assert_eq!(s.column(0), vec![0.5, 2.0]);
    }

    #[test]
    fn an_explicit_separator_wins_over_detection() {
        // Detected, this line would be two columns split at ';'.
        let commas = CsvOptions::default().with_separator(',');
        let s = read_str_with("\"a\",\"b\"\n1;2,3\n", commas).unwrap_err();
        assert!(
            matches!(&s, SampleError::BadNumber { line: 2, found, .. } if found == "1;2"),
            "{s}"
        );
        let s = read_str_with("\"a\"\n1 2\n", commas).unwrap_err();
        assert!(
            matches!(&s, SampleError::BadNumber { line: 2, found, .. } if found == "1 2"),
            "{s}"
        );
    }

    #[test]
    fn decimal_commas_are_refused_with_what_to_do() {
        for text in [
            "\"a\";\"b\"\n1,5;2,5\n",
            "1,5;2,5\n",
            "\"a\",\"b\"\n\"1,5\",\"2,5\"\n",
            "1,5 2,5\n",
            "\"a\"\t\"b\"\n1,5\t2\n",
        ] {
            let e = read_str(text).unwrap_err();
            assert!(
                matches!(&e, SampleError::BadNumber { found, .. } if found == "1,5"),
                "{text:?}: {e}"
            );
            let message = e.to_string();
            assert!(
                message.contains("cannot read \"1,5\" as a number; numbers must use a dot as decimal separator: export the file with '.' as the decimal separator"),
                "{message}"
            );
        }
        // One column of decimal commas under a header: the line splits in two.
        let message = error_of("\"y\"\n1.5\n2,5\n");
        assert!(
            message.starts_with("CSV input line 3: expected 1 fields, found 2; the line looks written with decimal commas"),
            "{message}"
        );
    }

    #[test]
    fn semicolon_files_round_trip_through_detection() {
        let s = Sample::from_rows(
            names(&["Load", "Young modulus", "a,b"]),
            tricky_values()
                .chunks_exact(3)
                .map(<[f64]>::to_vec)
                .collect(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doe.csv");
        s.write_csv_with(&path, CsvOptions::default().with_separator(';'))
            .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("\"Load\";\"Young modulus\";\"a,b\"\n"),
            "{text}"
        );
        let back = Sample::read_csv(&path).unwrap();
        assert!(same_bits(&s, &back));
    }

    #[test]
    fn line_numbers_count_blank_and_comment_lines() {
        let message = error_of("# c\n\"a\";\"b\"\n\n  # d\n1;2\n\n3;x\n");
        assert!(
            message.starts_with("CSV input line 7, column \"b\": cannot read \"x\""),
            "{message}"
        );
        let message = error_of("\"a\";\"b\"\n\n1;2\n   \n3;4;5\n");
        assert!(
            message.starts_with("CSV input line 5: expected 2 fields, found 3"),
            "{message}"
        );
    }

    // ----- from a batch -------------------------------------------------------

    mod models {
        use crate::{EvalContext, Failed, Model, Options};

        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct Response {
            pub deviation: f64,
            pub stress: [f64; 2],
        }

        macro_rules! model {
            ($name:ident, $input:ty, $output:ty, $params:expr) => {
                pub struct $name;
                impl Model for $name {
                    type Input = $input;
                    type Output = $output;
                    const ID: &'static str = concat!("sample::tests::", stringify!($name));
                    const NAME: &'static str = stringify!($name);
                    const PARAMETER_NAMES: &'static [&'static str] = $params;
                    fn attribute_options() -> Options {
                        Options::default()
                    }
                    fn evaluate(_: &$input, _: &EvalContext) -> Result<$output, Failed> {
                        Err(crate::PointFailure::Model {
                            message: "not evaluated in these tests".into(),
                        }
                        .into())
                    }
                }
            };
        }
        model!(Beam, (f64, [f64; 2]), Response, &["load", "x"]);
        model!(Scalar, f64, f64, &["load"]);
        model!(Pair, [f64; 2], (f64, f64), &[]);
        model!(Vector, f64, Vec<f64>, &[]);
        model!(Text, f64, String, &["load"]);
    }

    fn failed(index: usize) -> crate::PointError {
        crate::PointError::new(
            index,
            String::new(),
            crate::PointFailure::Model {
                message: "solver diverged".into(),
            },
            crate::Location::default(),
        )
    }

    fn batch_of<T>(results: Vec<Result<T, crate::PointError>>) -> crate::Batch<T> {
        crate::Batch::from_parts(results, crate::Summary::default())
    }

    #[test]
    fn a_batch_becomes_inputs_then_outputs_with_nan_where_a_point_failed() {
        use models::{Beam, Response};
        let inputs = vec![(1.0, [2.0, 3.0]), (4.0, [5.0, 6.0]), (7.0, [8.0, 9.0])];
        let batch = batch_of(vec![
            Ok(Response {
                deviation: 0.5,
                stress: [10.0, 11.0],
            }),
            Err(failed(1)),
            Ok(Response {
                deviation: 0.7,
                stress: [12.0, 13.0],
            }),
        ]);
        let s = batch.to_sample::<Beam>(&inputs).unwrap();
        assert_eq!(
            s.names(),
            &["load", "x0", "x1", "deviation", "stress0", "stress1"]
        );
        assert_eq!(s.row(0), &[1.0, 2.0, 3.0, 0.5, 10.0, 11.0]);
        assert_eq!(s.row(1)[..3], [4.0, 5.0, 6.0]);
        assert!(s.row(1)[3..].iter().all(|v| v.is_nan()));
        assert_eq!(s.row(2), &[7.0, 8.0, 9.0, 0.7, 12.0, 13.0]);
        // Through a ';' file and back, NaN included.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.csv");
        s.write_csv_with(&path, CsvOptions::default().with_separator(';'))
            .unwrap();
        assert!(same_bits(&Sample::read_csv(&path).unwrap(), &s));
    }

    #[test]
    fn a_batch_of_numbers_names_y_and_y_i() {
        let s = batch_of(vec![Ok(2.0), Err(failed(1))])
            .to_sample::<models::Scalar>(&[1.0, 3.0])
            .unwrap();
        assert_eq!(s.names(), &["load", "y"]);
        assert_eq!(s.row(0), &[1.0, 2.0]);
        assert!(s.row(1)[1].is_nan());
        let s = batch_of(vec![Ok((1.0, 2.0))])
            .to_sample::<models::Pair>(&[[5.0, 6.0]])
            .unwrap();
        assert_eq!(s.names(), &["x0", "x1", "y0", "y1"]);
        assert_eq!(s.row(0), &[5.0, 6.0, 1.0, 2.0]);
    }

    #[test]
    fn a_batch_where_every_point_failed_takes_its_columns_from_the_type() {
        let s = batch_of::<models::Response>(vec![Err(failed(0))])
            .to_sample::<models::Beam>(&[(1.0, [2.0, 3.0])])
            .unwrap();
        assert_eq!(s.dimension(), 6);
        assert_eq!(s.names()[3], "deviation");
        assert!(s.row(0)[3..].iter().all(|v| v.is_nan()));
        let e = batch_of::<Vec<f64>>(vec![Err(failed(0))])
            .to_sample::<models::Vector>(&[1.0])
            .unwrap_err();
        assert!(
            matches!(&e, SampleError::UnknownOutputColumns { model, .. } if model == "Vector"),
            "{e}"
        );
        assert!(e.to_string().contains("no fixed length"), "{e}");
        // Vectors of one length are columns; of another, an error naming the point.
        let e = batch_of(vec![Ok(vec![1.0, 2.0]), Ok(vec![3.0])])
            .to_sample::<models::Vector>(&[1.0, 2.0])
            .unwrap_err();
        assert!(
            matches!(
                e,
                SampleError::RaggedPoint {
                    part: "output",
                    point: 1,
                    expected: 2,
                    found: 1,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_batch_of_text_is_a_typed_error() {
        let e = batch_of(vec![Err(failed(0)), Ok("ok".to_string())])
            .to_sample::<models::Text>(&[1.0, 2.0])
            .unwrap_err();
        assert!(
            matches!(
                &e,
                SampleError::NotNumbers {
                    part: "output",
                    point: 1,
                    ..
                }
            ),
            "{e}"
        );
        let message = e.to_string();
        assert!(
            message.starts_with("cannot turn the outputs of Text into sample columns (point 1): a string cannot be written as numbers"),
            "{message}"
        );
        let e = batch_of(vec![Ok(1.0)])
            .to_sample::<models::Scalar>(&[1.0, 2.0])
            .unwrap_err();
        assert!(
            matches!(
                e,
                SampleError::BatchLength {
                    inputs: 2,
                    points: 1
                }
            ),
            "{e}"
        );
    }

    // ----- CSV errors --------------------------------------------------------

    #[test]
    fn bad_cell_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doe.csv");
        let mut text = String::from("\"Load\",\"Young modulus\",\"Length\",\"Inertia\"\n");
        for _ in 0..15 {
            text.push_str("3e4,2.9e7,260,400\n");
        }
        text.push_str("3e4,2.9e7,25o,400\n");
        fs::write(&path, text).unwrap();
        let e = Sample::read_csv(&path).unwrap_err();
        assert!(
            matches!(&e, SampleError::BadNumber { line: 17, column, found, .. }
            if column == "Length" && found == "25o")
        );
        let expected = format!(
            "{} line 17, column \"Length\": cannot read \"25o\" as a number",
            path.display()
        );
        assert!(e.to_string().starts_with(&expected), "{e}");
    }

    #[test]
    fn empty_cell_is_reported() {
        let message = error_of("\"a\",\"b\"\n1,\n");
        assert!(
            message.contains("CSV input line 2, column \"b\": cannot read \"\" as a number"),
            "{message}"
        );
        assert!(message.contains("the cell is empty"), "{message}");
    }

    #[test]
    fn decimal_comma_is_explained() {
        let e = read_str_with(
            "\"a\";\"b\"\n1,5;2\n",
            CsvOptions::default().with_separator(';'),
        )
        .unwrap_err();
        assert!(e.to_string().contains("dot as decimal separator"), "{e}");
    }

    #[test]
    fn mixed_first_line_suggests_quoting_the_header() {
        let message = error_of("Load,2\n1,2\n");
        assert!(
            message.contains("line 1, column \"X0\": cannot read \"Load\""),
            "{message}"
        );
        assert!(message.contains("quote its names"), "{message}");
    }

    #[test]
    fn wrong_number_of_fields_names_the_line() {
        let e = read_str("\"a\",\"b\"\n1,2\n\n3,4,5\n").unwrap_err();
        assert!(matches!(
            e,
            SampleError::FieldCount {
                line: 4,
                expected: 2,
                found: 3,
                ..
            }
        ));
        let message = e.to_string();
        assert!(
            message.starts_with("CSV input line 4: expected 2 fields, found 3;"),
            "{message}"
        );
        assert!(message.contains("the header"), "{message}");
        let message = error_of("1,2\n3\n");
        assert!(
            message.starts_with("CSV input line 2: expected 2 fields, found 1;"),
            "{message}"
        );
        assert!(message.contains("first line of numbers"), "{message}");
    }

    #[test]
    fn wrong_separator_is_suggested() {
        let message = error_of("\"a\",\"b\"\n1;2\n");
        assert!(
            message.contains("line 2: expected 2 fields, found 1"),
            "{message}"
        );
        assert!(message.contains("with_separator(';')"), "{message}");
    }

    #[test]
    fn empty_inputs_are_reported() {
        for text in ["", "\n\n  \r\n", "# only a comment\n"] {
            let e = read_str(text).unwrap_err();
            assert!(matches!(e, SampleError::EmptyFile { .. }), "{text:?}");
            assert!(e.to_string().starts_with("CSV input is empty"), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.csv");
        fs::write(&path, "").unwrap();
        let message = Sample::read_csv(&path).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{} is empty", path.display())),
            "{message}"
        );
    }

    #[test]
    fn quoting_errors_name_the_line() {
        let message = error_of("\"a\",\"b\"\n1,2\n\"3,4\n");
        assert!(
            message.starts_with("CSV input line 3: a quoted field has no closing quote"),
            "{message}"
        );
        let message = error_of("\"a\"x,\"b\"\n");
        assert!(
            message.starts_with("CSV input line 1: text follows the closing quote"),
            "{message}"
        );
        let spaced = CsvOptions::default().with_separator(' ');
        let e = read_str_with("\"a\"b\n", spaced).unwrap_err();
        assert!(matches!(e, SampleError::BadQuoting { line: 1, .. }));
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let e = Sample::read_csv_from(&b"\"a\"\n1\n\xff\n"[..], CsvOptions::default()).unwrap_err();
        assert!(matches!(e, SampleError::NotUtf8 { line: 3, .. }));
        assert!(e.to_string().contains("line 3 is not valid UTF-8"));
    }

    #[test]
    fn separators_that_clash_with_numbers_are_refused() {
        for separator in ['.', '-', '+', 'e', '1', '"', '\n'] {
            let options = CsvOptions::default().with_separator(separator);
            assert!(matches!(
                read_str_with("1\n", options),
                Err(SampleError::InvalidSeparator { .. })
            ));
            let mut out = Vec::new();
            assert!(Sample::from_arrays(&[[1.0]])
                .write_csv_to(&mut out, options)
                .is_err());
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.csv");
        let message = Sample::read_csv(&path).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("cannot open {}:", path.display())),
            "{message}"
        );
        let message = Sample::load(&path).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("cannot open {}:", path.display())),
            "{message}"
        );
    }

    // ----- dump / load -------------------------------------------------------

    fn dump_bytes(s: &Sample) -> Vec<u8> {
        let mut out = Vec::new();
        s.dump_to(&mut out).unwrap();
        out
    }

    #[test]
    fn dump_round_trip_is_bit_exact() {
        let values = tricky_values();
        let mut s = Sample::from_flat(
            names(&["Load", "Young modulus", "é"]),
            values[..399].to_vec(),
        )
        .unwrap();
        s[(0, 0)] = f64::from_bits(0x7ff8_0000_dead_beef);
        s[(0, 1)] = f64::INFINITY;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sample.otws");
        s.dump(&path).unwrap();
        assert!(same_bits(&Sample::load(&path).unwrap(), &s));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        for small in [Sample::default(), Sample::new(names(&["a"])), {
            let mut z = Sample::default();
            z.push(&[]).unwrap();
            z
        }] {
            assert_eq!(Sample::load_from(&dump_bytes(&small)[..]).unwrap(), small);
        }
    }

    #[test]
    fn dump_starts_with_magic_and_version() {
        let bytes = dump_bytes(&Sample::from_arrays(&[[1.0]]));
        assert_eq!(&bytes[..8], DUMP_MAGIC);
        assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
        assert_eq!(&bytes[12..14], &[0x1f, 0x8b], "gzip follows the header");
    }

    #[test]
    fn garbage_is_not_a_dump() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doe.csv");
        fs::write(&path, "\"X0\"\n1\n").unwrap();
        let e = Sample::load(&path).unwrap_err();
        assert!(matches!(e, SampleError::NotADump { .. }));
        assert!(e
            .to_string()
            .starts_with(&format!("{} is not a sample dump", path.display())));
        let e = Sample::load_from(&b""[..]).unwrap_err();
        assert!(
            e.to_string()
                .contains("truncated or corrupt (the file is empty)"),
            "{e}"
        );
    }

    #[test]
    fn other_versions_are_refused() {
        let mut bytes = dump_bytes(&Sample::from_arrays(&[[1.0]]));
        bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
        let e = Sample::load_from(&bytes[..]).unwrap_err();
        assert!(matches!(
            e,
            SampleError::UnsupportedVersion {
                found: 7,
                supported: 1,
                ..
            }
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let s = Sample::from_rows(
            names(&["a", "b"]),
            (0..50).map(|i| vec![i as f64, 0.5]).collect(),
        )
        .unwrap();
        let bytes = dump_bytes(&s);
        for cut in 0..bytes.len() {
            let result = Sample::load_from(&bytes[..cut]);
            assert!(result.is_err(), "cut at {cut} of {}", bytes.len());
        }
        let e = Sample::load_from(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(matches!(e, SampleError::CorruptDump { .. }), "{e}");
    }

    #[test]
    fn flipped_bytes_never_panic() {
        let s = Sample::from_arrays(&[[1.0, 2.0], [3.0, 4.0]]);
        let bytes = dump_bytes(&s);
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                // Some gzip header bytes (mtime, OS) are not checked: then the
                // content must still be intact.
                if let Ok(back) = Sample::load_from(&damaged[..]) {
                    assert_eq!(back, s, "byte {i} flipped by {flip:#x}");
                }
            }
        }
    }

    #[test]
    fn trailing_bytes_are_reported() {
        let mut bytes = dump_bytes(&Sample::from_arrays(&[[1.0]]));
        bytes.extend_from_slice(b"junk");
        let e = Sample::load_from(&bytes[..]).unwrap_err();
        assert!(
            e.to_string().contains("bytes follow the compressed data"),
            "{e}"
        );
    }

    fn dump_of_payload(payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::from(&DUMP_MAGIC[..]);
        bytes.extend_from_slice(&DUMP_VERSION.to_le_bytes());
        let mut gz = flate2::write::GzEncoder::new(bytes, flate2::Compression::fast());
        gz.write_all(payload).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn huge_encoded_lengths_do_not_allocate() {
        // bincode varint: 253 then a u64 little endian.
        let huge = |n: u64| {
            let mut v = vec![253u8];
            v.extend_from_slice(&n.to_le_bytes());
            v
        };
        // One name whose length claims 2^62 bytes.
        let mut payload = vec![1u8];
        payload.extend(huge(1 << 62));
        payload.extend_from_slice(b"abc");
        let e = Sample::load_from(&dump_of_payload(&payload)[..]).unwrap_err();
        assert!(matches!(e, SampleError::CorruptDump { .. }), "{e}");
        // No names, then a data length claiming 2^61 values.
        let mut payload = vec![0u8, 0, 0];
        payload.extend(huge(1 << 61));
        payload.extend_from_slice(&1.0f64.to_le_bytes());
        let e = Sample::load_from(&dump_of_payload(&payload)[..]).unwrap_err();
        assert!(matches!(e, SampleError::CorruptDump { .. }), "{e}");
        // Counts that disagree with each other.
        let mut payload = vec![0u8, 1, 1, 1];
        payload.extend_from_slice(&1.0f64.to_le_bytes());
        let e = Sample::load_from(&dump_of_payload(&payload)[..]).unwrap_err();
        assert!(
            e.to_string()
                .contains("0 column names for a dimension of 1"),
            "{e}"
        );
        let e = Sample::load_from(&dump_of_payload(b"")[..]).unwrap_err();
        assert!(matches!(e, SampleError::CorruptDump { .. }), "{e}");
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let s = Sample::from_arrays(&[[1.0, 2.0]]);
        let bytes = bincode::serde::encode_to_vec(&s, bincode::config::standard()).unwrap();
        let (back, _): (Sample, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(back, s);
        let bad = SampleRef {
            names: &names(&["a"]),
            dimension: 1,
            len: 2,
            data: &[1.0],
        };
        let bytes = bincode::serde::encode_to_vec(&bad, bincode::config::standard()).unwrap();
        let result: Result<(Sample, usize), _> =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard());
        assert!(result.is_err());
    }

    // ----- display -----------------------------------------------------------

    #[test]
    fn display_aligns_like_openturns() {
        let s = Sample::from_rows(
            names(&["Load", "Young modulus"]),
            vec![vec![30000.0, 1e-7], vec![-1.5, f64::NAN]],
        )
        .unwrap();
        assert_eq!(
            s.to_string(),
            "    [ Load          Young modulus ]\n\
             0 : [ 30000         1e-07         ]\n\
             1 : [    -1.5         nan         ]"
        );
        assert_eq!(Sample::new(names(&["a"])).to_string(), "    [ a ]");
        assert_eq!(
            format!("{:.3}", Sample::from_arrays(&[[std::f64::consts::PI]])),
            "    [ X0   ]\n0 : [ 3.14 ]"
        );
    }

    #[test]
    fn display_elides_long_samples() {
        let s: Sample = (0..1000).map(|i| [i as f64; 8]).collect();
        let text = s.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 3 + 1 + 3);
        assert_eq!(lines[4], "...");
        assert!(lines[0].contains("X2  ... X5"), "{}", lines[0]);
        assert!(
            lines[7].starts_with("999 : [ 999 999 999 ... 999 999 999 ]"),
            "{}",
            lines[7]
        );
        assert!(lines[1].starts_with("  0 : [ "), "{}", lines[1]);
        assert_eq!(format!("{s:#}").lines().count(), 1001);
        let short: Sample = (0..999).map(|i| [i as f64]).collect();
        assert_eq!(short.to_string().lines().count(), 1000);
    }

    #[test]
    fn general_format_matches_c() {
        let cases = [
            (1e300, "1e+300"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123456789.0, "1.23457e+08"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (-2.5, "-2.5"),
            (9.9999999, "10"),
            (0.608202, "0.608202"),
            (-0.0, "-0"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_general(value, 6), expected, "{value}");
        }
        assert_eq!(format_general(1.0 / 3.0, 16), "0.3333333333333333");
    }
}
