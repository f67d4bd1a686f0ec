//! `beam`: the cantilever beam solver that otwrap's main example wraps, a
//! stand-in for an external simulation code.
//!
//! ```text
//! beam -x INPUT.xml
//! ```
//!
//! Reads the load `F`, Young modulus `E`, length `L` and inertia `I` from the
//! attributes of the `<inputs>` element of INPUT.xml (root `<beam>`), and
//! writes `_beam_outputs_.xml` in the current directory with the
//! description block, the inputs and `<outputs deviation="..."/>`, where
//! deviation = F·L³ / (3·E·I), printed like C's `%e`.
//!
//! Exit statuses: 0 success; 2 F < 0; 3 bad command line (`-x` missing);
//! 4 input unreadable or malformed; 5 output not writable; 6 licence file
//! missing while `BEAM_REQUIRE_LICENCE=1`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::ExitCode;

const OUTPUT_FILE: &str = "_beam_outputs_.xml";
const LICENCE_FILE: &str = "licence.txt";
const LICENCE_VARIABLE: &str = "BEAM_REQUIRE_LICENCE";
const USAGE: &str = "usage: beam -x INPUT.xml";

/// Why the solver stops; each kind has its own exit status.
enum Failure {
    NegativeLoad,
    Usage(String),
    Input(String),
    Output(String),
    Licence(String),
}

impl Failure {
    fn exit_status(&self) -> u8 {
        match self {
            Failure::NegativeLoad => 2,
            Failure::Usage(_) => 3,
            Failure::Input(_) => 4,
            Failure::Output(_) => 5,
            Failure::Licence(_) => 6,
        }
    }

    fn message(&self) -> &str {
        match self {
            // The message of the original solver, kept verbatim.
            Failure::NegativeLoad => "F est strictement negatif",
            Failure::Usage(message)
            | Failure::Input(message)
            | Failure::Output(message)
            | Failure::Licence(message) => message,
        }
    }
}

struct Inputs {
    f: f64,
    e: f64,
    l: f64,
    i: f64,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("beam: {}", failure.message());
            ExitCode::from(failure.exit_status())
        }
    }
}

fn run() -> Result<(), Failure> {
    let Some(input_path) = parse_command_line(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    check_licence()?;
    let text = fs::read_to_string(&input_path).map_err(|error| {
        Failure::Input(format!("cannot read input file `{input_path}`: {error}"))
    })?;
    let (inputs, description) = parse_input(&text)
        .map_err(|problem| Failure::Input(format!("input file `{input_path}`: {problem}")))?;
    if inputs.f < 0.0 {
        return Err(Failure::NegativeLoad);
    }
    let deviation = inputs.f * inputs.l.powi(3) / (3.0 * inputs.e * inputs.i);
    fs::write(OUTPUT_FILE, render_output(&inputs, description, deviation)).map_err(|error| {
        Failure::Output(format!(
            "cannot write `{OUTPUT_FILE}` in the current directory: {error}"
        ))
    })
}

/// The input file name, or `None` for `-h`.
fn parse_command_line(args: impl Iterator<Item = String>) -> Result<Option<String>, Failure> {
    let mut args = args.peekable();
    let mut input = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "-x" => {
                input = args.next_if(|value| !value.is_empty());
                if input.is_none() {
                    break;
                }
            }
            _ if arg.starts_with("-x") => input = Some(arg[2..].to_owned()),
            _ => {
                return Err(Failure::Usage(format!(
                    "unexpected argument `{arg}`; {USAGE}"
                )))
            }
        }
    }
    match input {
        Some(input) => Ok(Some(input)),
        None => Err(Failure::Usage(String::from("fileName is not set"))),
    }
}

fn check_licence() -> Result<(), Failure> {
    if std::env::var_os(LICENCE_VARIABLE).is_some_and(|value| value == "1")
        && !Path::new(LICENCE_FILE).is_file()
    {
        return Err(Failure::Licence(format!(
            "licence file `{LICENCE_FILE}` not found in the current directory \
             ({LICENCE_VARIABLE}=1); put one there or unset {LICENCE_VARIABLE}"
        )));
    }
    Ok(())
}

/// The inputs and the raw `<description>` element, if any.
fn parse_input(text: &str) -> Result<(Inputs, Option<&str>), String> {
    if root_element(text) != Some("beam") {
        return Err(String::from(
            "not a beam input file: the root element is not <beam>",
        ));
    }
    let attributes =
        element_attributes(text, "inputs")?.ok_or_else(|| String::from("no <inputs> element"))?;
    let value = |name: &str| -> Result<f64, String> {
        let raw = attributes
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
            .ok_or_else(|| format!("attribute {name} missing from <inputs>"))?;
        raw.trim()
            .parse()
            .map_err(|_| format!("attribute {name}=\"{raw}\" of <inputs> is not a number"))
    };
    let inputs = Inputs {
        f: value("F")?,
        e: value("E")?,
        l: value("L")?,
        i: value("I")?,
    };
    Ok((inputs, description_block(text)))
}

/// Name of the first element, after the XML declaration, comments and
/// doctype.
fn root_element(text: &str) -> Option<&str> {
    let mut rest = text.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("<?") {
            rest = after.split_once("?>")?.1.trim_start();
        } else if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.split_once("-->")?.1.trim_start();
        } else if let Some(after) = rest.strip_prefix("<!") {
            rest = after.split_once('>')?.1.trim_start();
        } else {
            let after = rest.strip_prefix('<')?;
            let end = after
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(after.len());
            return Some(&after[..end]);
        }
    }
}

/// Start offset of the first `<name` tag (followed by a blank, `/` or `>`).
fn find_tag(text: &str, name: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find('<') {
        let start = from + found;
        let after = &text[start + 1..];
        if after.strip_prefix(name).is_some_and(|rest| {
            rest.starts_with(|c: char| c.is_whitespace() || c == '/' || c == '>')
        }) {
            return Some(start);
        }
        from = start + 1;
    }
    None
}

/// The attributes of the first `<name ...>` tag, `None` if there is none.
fn element_attributes<'t>(
    text: &'t str,
    name: &str,
) -> Result<Option<Vec<(&'t str, &'t str)>>, String> {
    let Some(start) = find_tag(text, name) else {
        return Ok(None);
    };
    let malformed = || format!("malformed <{name}> element");
    let mut rest = &text[start + 1 + name.len()..];
    let mut attributes = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.starts_with('>') || rest.starts_with("/>") {
            return Ok(Some(attributes));
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == '>' || c == '/')
            .ok_or_else(malformed)?;
        let (key, after_key) = rest.split_at(name_end);
        let after_equal = after_key
            .trim_start()
            .strip_prefix('=')
            .ok_or_else(malformed)?
            .trim_start();
        let quote = after_equal
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(malformed)?;
        let (value, after_value) = after_equal[1..].split_once(quote).ok_or_else(malformed)?;
        if key.is_empty() {
            return Err(malformed());
        }
        attributes.push((key, value));
        rest = after_value;
    }
}

/// The `<description>...</description>` element as written in the input.
fn description_block(text: &str) -> Option<&str> {
    let start = find_tag(text, "description")?;
    let rest = &text[start..];
    let tag_end = rest.find('>')?;
    if rest[..tag_end].ends_with('/') {
        return Some(&rest[..=tag_end]);
    }
    let close = "</description>";
    let end = rest.find(close)? + close.len();
    Some(&rest[..end])
}

fn render_output(inputs: &Inputs, description: Option<&str>, deviation: f64) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<beam>\n");
    if let Some(description) = description {
        let _ = writeln!(out, "  {description}");
    }
    let _ = writeln!(
        out,
        "  <inputs F=\"{}\" E=\"{}\" L=\"{}\" I=\"{}\"/>",
        c_e(inputs.f),
        c_e(inputs.e),
        c_e(inputs.l),
        c_e(inputs.i)
    );
    let _ = writeln!(out, "  <outputs deviation=\"{}\"/>", c_e(deviation));
    out.push_str("</beam>\n");
    out
}

/// C's `printf("%e")` as glibc prints it: `1.234568e+01`, `inf`, `-nan`.
/// Rust rounds the exact binary value like glibc; only the exponent is
/// spelled differently (`e1` instead of `e+01`).
fn c_e(value: f64) -> String {
    if !value.is_finite() {
        let sign = if value.is_sign_negative() { "-" } else { "" };
        let name = if value.is_nan() { "nan" } else { "inf" };
        return format!("{sign}{name}");
    }
    let rust = format!("{value:.6e}");
    match rust.split_once('e') {
        Some((mantissa, exponent)) => {
            let exponent: i32 = exponent.parse().unwrap_or(0);
            let sign = if exponent < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
        }
        None => rust,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_e_matches_glibc() {
        assert_eq!(c_e(3e4), "3.000000e+04");
        assert_eq!(c_e(1.5e-7), "1.500000e-07");
        assert_eq!(c_e(-2.5), "-2.500000e+00");
        assert_eq!(c_e(0.0), "0.000000e+00");
        assert_eq!(c_e(1e300), "1.000000e+300");
        assert_eq!(c_e(f64::INFINITY), "inf");
        assert_eq!(c_e(f64::NAN), "nan");
        assert_eq!(c_e(-f64::NAN), "-nan");
    }

    #[test]
    fn root_element_skips_the_prolog() {
        assert_eq!(
            root_element("<?xml version=\"1.0\"?>\n<!-- c --><!DOCTYPE beam>\n<beam>"),
            Some("beam")
        );
        assert_eq!(root_element("<beam/>"), Some("beam"));
        assert_eq!(root_element("<beams>"), Some("beams"));
        assert_eq!(root_element("hello"), None);
        assert_eq!(root_element("<?xml"), None);
    }

    #[test]
    fn attributes_in_any_order_and_spacing() {
        let text = "<beam><inputs\n  I = '4' L=\"3\"\tE=\"2\" F=\"1\" /></beam>";
        let attributes = element_attributes(text, "inputs").unwrap().unwrap();
        assert_eq!(
            attributes,
            vec![("I", "4"), ("L", "3"), ("E", "2"), ("F", "1")]
        );
        assert!(element_attributes("<inputs F=1/>", "inputs").is_err());
        assert!(element_attributes("<inputs F=\"1/>", "inputs").is_err());
        assert!(element_attributes("<inputsX/>", "inputs")
            .unwrap()
            .is_none());
    }

    #[test]
    fn description_is_taken_verbatim() {
        assert_eq!(
            description_block("<beam><description>a\n b</description></beam>"),
            Some("<description>a\n b</description>")
        );
        assert_eq!(
            description_block("<beam><description/></beam>"),
            Some("<description/>")
        );
        assert_eq!(description_block("<beam/>"), None);
    }
}
