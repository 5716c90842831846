//! Line prompts on the terminal: a question with its default, an answer read from
//! standard input, checked as it is typed in and asked again with the reason when it
//! does not pass. Questions and errors go to standard error, so standard output stays
//! the command's own (`--json`).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context as _};

/// Whether questions can be asked: standard input is a terminal.
pub(crate) fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Ask `label` until `check` accepts the answer (an empty answer takes `default`, when
/// there is one); `check` gives the value to keep, or why the answer is refused.
pub(crate) fn ask(
    label: &str,
    default: Option<&str>,
    check: &dyn Fn(&str) -> Result<String, String>,
) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let mut err = std::io::stderr();
    loop {
        match default {
            Some(d) if !d.is_empty() => write!(err, "{label} [{d}]: "),
            _ => write!(err, "{label}: "),
        }
        .and_then(|()| err.flush())
        .context("writing the question")?;
        let mut line = String::new();
        let n = stdin
            .lock()
            .read_line(&mut line)
            .context("reading the answer")?;
        if n == 0 {
            bail!("standard input ended while asking for {label}");
        }
        let answer = line.trim();
        let answer = if answer.is_empty() {
            default.unwrap_or("")
        } else {
            answer
        };
        match check(answer) {
            Ok(v) => return Ok(v),
            Err(why) => {
                let _ = writeln!(err, "  ✗ {why}");
            }
        }
    }
}
