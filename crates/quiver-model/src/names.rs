//! Name rules per kind, and the normalized key that makes names unique.
//!
//! Written by hand rather than with regular expressions: the checks run on every write,
//! including a million names during a bulk import, and each rule is a short scan whose
//! error message names the exact rule that failed.

use crate::{Error, Kind, Result};

pub const MAX_NAMESPACE_LEN: usize = 64;

fn common(field: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} bytes long (got {})", value.len()),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(
            field,
            format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(Error::invalid(field, "must not contain white space"));
    }
    if value.contains("..") || value.contains('\\') {
        return Err(Error::invalid(
            field,
            "must not contain '..' or '\\' (path traversal)",
        ));
    }
    Ok(())
}

/// Namespaces: 1-64 lowercase ASCII letters, digits, '-' and '_', starting with a letter or digit.
pub fn validate_namespace(ns: &str) -> Result<()> {
    common("namespace", ns, MAX_NAMESPACE_LEN)?;
    let ok_first = ns.as_bytes()[0].is_ascii_lowercase() || ns.as_bytes()[0].is_ascii_digit();
    let ok_rest = ns
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok_first || !ok_rest {
        return Err(Error::invalid(
            "namespace",
            "must be lowercase letters, digits, '-' or '_', starting with a letter or digit",
        ));
    }
    Ok(())
}

/// Check `name` against the rule of its kind (and, for packages, of its ecosystem).
pub fn validate_name(kind: Kind, namespace: &str, name: &str) -> Result<()> {
    match kind {
        Kind::Tool => {
            // Dotted identifiers: `text.csvParse`, `web.fetchText`, `nmap`.
            common("name", name, 128)?;
            for seg in name.split('.') {
                let mut bytes = seg.bytes();
                let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
                let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !first_ok || !rest_ok {
                    return Err(Error::invalid(
                        "name",
                        "tool names are dot-separated identifiers (each starts with a letter, \
                         then letters, digits, '_' or '-'), e.g. text.csvParse",
                    ));
                }
            }
            Ok(())
        }
        Kind::Module => {
            // mlld style `@namespace/name`: the namespace is the owner; the name is
            // lowercase letters, digits and single hyphens.
            common("name", name, 64)?;
            let ok = name.split('-').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
            if !ok {
                return Err(Error::invalid(
                    "name",
                    "module names are lowercase letters, digits and single hyphens, \
                     not starting or ending with a hyphen",
                ));
            }
            Ok(())
        }
        Kind::Recipe | Kind::Skill => {
            common("name", name, 128)?;
            let extra: &[u8] = if kind == Kind::Recipe {
                b"._+-"
            } else {
                b"._-"
            };
            let mut bytes = name.bytes();
            let first_ok = bytes
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            let rest_ok =
                bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b));
            if !first_ok || !rest_ok {
                let allowed = String::from_utf8_lossy(extra)
                    .chars()
                    .map(|c| format!("'{c}'"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Error::invalid(
                    "name",
                    format!(
                        "{kind} names are lowercase letters, digits and {allowed}, \
                         starting with a letter or digit"
                    ),
                ));
            }
            Ok(())
        }
        Kind::Package => validate_package_name(namespace, name),
    }
}

fn validate_package_name(ecosystem: &str, name: &str) -> Result<()> {
    match ecosystem {
        "pypi" => {
            // PEP 508: ASCII letters and digits, with '.', '_' and '-' inside.
            common("name", name, 200)?;
            let b = name.as_bytes();
            let ends_ok = b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric();
            let all_ok = b
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
            if !ends_ok || !all_ok {
                return Err(Error::invalid(
                    "name",
                    "PyPI names are ASCII letters, digits, '.', '_' and '-', \
                     starting and ending with a letter or digit (PEP 508)",
                ));
            }
            Ok(())
        }
        "npm" => {
            // npm: optional `@scope/`, then URL-safe characters; legacy names may hold
            // capitals. No leading '.' or '_'.
            common("name", name, 214)?;
            let (scope, bare) = match name.strip_prefix('@') {
                Some(rest) => match rest.split_once('/') {
                    Some((s, n)) => (Some(s), n),
                    None => return Err(Error::invalid("name", "a scoped npm name is @scope/name")),
                },
                None => (None, name),
            };
            let part_ok = |p: &str| {
                !p.is_empty()
                    && !p.starts_with('.')
                    && !p.starts_with('_')
                    && p.bytes().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
                    })
            };
            if !scope.is_none_or(part_ok) || !part_ok(bare) {
                return Err(Error::invalid(
                    "name",
                    "npm names are [@scope/]name of letters, digits, '-', '.', '_' and '~', \
                     not starting with '.' or '_'",
                ));
            }
            Ok(())
        }
        _ => {
            common("name", name, 214)?;
            let b = name.as_bytes();
            let ok = b[0].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'+'));
            if !ok {
                return Err(Error::invalid(
                    "name",
                    "package names are letters, digits, '.', '_', '-' and '+', \
                     starting with a letter or digit",
                ));
            }
            Ok(())
        }
    }
}

/// Where a name breaks its kind's naming convention, beyond the lexical rule of
/// [`validate_name`]: a tool's segments start with a lowercase letter (`text.csvParse`,
/// not `Text.CsvParse`); recipe, skill and module names neither end with a separator nor
/// repeat one. Packages follow their ecosystem's rule only. Empty when the name conforms.
///
/// Both the `naming` quality gate and [`validate_new_name`] (every created entry) use it.
pub fn convention_findings(kind: Kind, name: &str) -> Vec<String> {
    let mut findings = vec![];
    match kind {
        Kind::Tool => {
            // `domain.verbNoun`: segments start with a lowercase letter.
            if name
                .split('.')
                .any(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
            {
                findings.push(format!(
                    "tool name segments start with a lowercase letter (text.csvParse), not '{name}'"
                ));
            }
        }
        Kind::Recipe | Kind::Skill | Kind::Module => {
            if name.ends_with(['.', '-', '_', '+']) {
                findings.push(format!("'{name}' ends with a separator"));
            }
            if ["--", "__", "-_", "_-", ".-", "-."]
                .iter()
                .any(|p| name.contains(p))
            {
                findings.push(format!("'{name}' has repeated separators"));
            }
        }
        Kind::Package => {}
    }
    findings
}

/// The whole naming rule of a new entry: the lexical rule of its kind ([`validate_name`])
/// and its convention ([`convention_findings`]). An entry is created only with a name that
/// passes both, so that no entry exists whose every version must fail the `naming` gate.
pub fn validate_new_name(kind: Kind, namespace: &str, name: &str) -> Result<()> {
    validate_name(kind, namespace, name)?;
    let findings = convention_findings(kind, name);
    if findings.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid("name", findings.join("; ")))
    }
}

/// The key that makes a name unique inside (kind, namespace).
///
/// PyPI names compare after PEP 503 normalization (`Django_REST.framework` and
/// `django-rest-framework` are one project); every other kind compares names exactly,
/// since npm kept legacy names that differ only in case.
pub fn name_key(kind: Kind, namespace: &str, name: &str) -> String {
    if kind == Kind::Package && namespace == "pypi" {
        pep503(name)
    } else {
        name.to_string()
    }
}

/// PEP 503 normalization: lowercase, and each run of `-`, `_`, `.` becomes one `-`.
pub fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names() {
        assert!(validate_name(Kind::Tool, "tpmjs", "text.csvParse").is_ok());
        assert!(validate_name(Kind::Tool, "ops", "nmap").is_ok());
        let e = validate_name(Kind::Tool, "tpmjs", "text..csv").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        assert!(validate_name(Kind::Tool, "tpmjs", "1abc").is_err());
        assert!(validate_name(Kind::Tool, "tpmjs", "a.").is_err());
    }

    #[test]
    fn module_names() {
        assert!(validate_name(Kind::Module, "mlld", "env-vars2").is_ok());
        assert!(validate_name(Kind::Module, "mlld", "Env").is_err());
        assert!(validate_name(Kind::Module, "mlld", "-x").is_err());
        assert!(validate_name(Kind::Module, "mlld", "a--b").is_err());
    }

    #[test]
    fn new_names_follow_the_convention() {
        // Lexically valid, but against the convention: refused for a new entry.
        for (kind, name) in [
            (Kind::Tool, "BadName"),
            (Kind::Tool, "text.CsvParse"),
            (Kind::Recipe, "nginx-"),
            (Kind::Recipe, "a--b"),
            (Kind::Skill, "pdf_"),
            (Kind::Skill, "pdf.-tools"),
        ] {
            assert!(validate_name(kind, "ns", name).is_ok(), "{kind} {name}");
            let e = validate_new_name(kind, "ns", name).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("name"), "{kind} {name}");
            assert!(e.message.contains(name), "{kind} {name}: {}", e.message);
        }
        // The lexical rule still comes first.
        let e = validate_new_name(Kind::Tool, "ns", "1abc").unwrap_err();
        assert!(e.message.contains("dot-separated"), "{}", e.message);
        for (kind, ns, name) in [
            (Kind::Tool, "tpmjs", "text.csvParse"),
            (Kind::Tool, "ops", "nmap"),
            (Kind::Recipe, "r", "c++-build"),
            (Kind::Skill, "s", "pdf-tools"),
            (Kind::Module, "mlld", "env-vars2"),
            // Packages keep their ecosystem's rule: npm's legacy capitals pass.
            (Kind::Package, "npm", "Base64"),
            (Kind::Package, "pypi", "Django_REST.framework"),
        ] {
            assert!(validate_new_name(kind, ns, name).is_ok(), "{kind} {name}");
        }
    }

    #[test]
    fn package_names() {
        assert!(validate_name(Kind::Package, "npm", "@types/node").is_ok());
        assert!(validate_name(Kind::Package, "npm", "Base64").is_ok());
        assert!(validate_name(Kind::Package, "npm", "@types").is_err());
        assert!(validate_name(Kind::Package, "npm", "_private").is_err());
        assert!(validate_name(Kind::Package, "pypi", "scikit-learn").is_ok());
        assert!(validate_name(Kind::Package, "pypi", "-bad").is_err());
        assert!(validate_name(Kind::Package, "pypi", "../etc/passwd").is_err());
    }

    #[test]
    fn control_and_length() {
        let e = validate_name(Kind::Skill, "x", "a\u{7}b").unwrap_err();
        assert!(e.message.contains("control"), "{}", e.message);
        let long = "a".repeat(200);
        assert!(validate_name(Kind::Skill, "x", &long).is_err());
        assert!(validate_namespace("Upper").is_err());
        assert!(validate_namespace("ok-ns_1").is_ok());
        assert!(validate_namespace("").is_err());
    }

    #[test]
    fn pypi_key_normalizes() {
        assert_eq!(
            name_key(Kind::Package, "pypi", "Django_REST.framework"),
            "django-rest-framework"
        );
        assert_eq!(name_key(Kind::Package, "npm", "Base64"), "Base64");
    }
}
