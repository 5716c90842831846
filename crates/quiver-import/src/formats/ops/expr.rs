//! The estimate expressions of ops tool profiles (`time_estimate_ms: "1000 + 5 * N"`,
//! `cost_estimate: "ceil(N / 100)"`, `requires_background_if: "N > 50"`), parsed and
//! checked but not evaluated (evaluating them is a later piece of work).
//!
//! A small hand-written recursive-descent parser; no crate, because the language is tiny
//! and we want our own error positions and the list of names an expression uses.
//!
//! ```text
//! condition := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
//! sum       := product (("+" | "-") product)*
//! product   := unary (("*" | "/" | "//" | "%") unary)*
//! unary     := ("-" | "+") unary | power
//! power     := atom (("**" | "^") unary)?          (right-associative)
//! atom      := number | name | name "(" condition ("," condition)* ")" | "(" condition ")"
//! number    := digits ["." digits] [("e" | "E") ["+" | "-"] digits]  |  "." digits
//! name      := (letter | "_") (letter | digit | "_")*
//! ```
//!
//! The functions are the ones the source system documents (in its tool template and in
//! its optimization profiles): `log` (1 or 2 arguments), `log10`, `sqrt`, `abs`, `ceil`,
//! `floor` (1 argument) and `min`, `max` (1 or more). A call of a known function with the
//! wrong number of arguments is an error; a call of an unknown function is reported in
//! [`Checked::unknown_functions`] for the caller to warn about.

use std::fmt;

/// The functions an expression may call, with their (minimum, maximum) arguments.
const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("log", 1, 2),
    ("log10", 1, 1),
    ("sqrt", 1, 1),
    ("abs", 1, 1),
    ("ceil", 1, 1),
    ("floor", 1, 1),
    ("min", 1, usize::MAX),
    ("max", 1, usize::MAX),
];

/// What a well-formed expression uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Variable names, in order of first use, each once.
    pub variables: Vec<String>,
    /// Called functions that are not among the known ones, each once.
    pub unknown_functions: Vec<String>,
}

/// Why an expression is not well formed, and where (0-based character position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at character {}", self.message, self.position + 1)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num,
    Name(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num => "a number".into(),
            Tok::Name(n) => format!("`{n}`"),
            Tok::Op(o) => format!("`{o}`"),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::End => "the end of the expression".into(),
        }
    }
}

/// Operators, longest first so `**` wins over `*`.
const OPS: &[&str] = &[
    "**", "//", "<=", ">=", "==", "!=", "+", "-", "*", "/", "%", "^", "<", ">",
];

fn tokenize(src: &str) -> Result<Vec<(usize, Tok)>, SyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i < chars.len() && chars[i] == '.' {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                } else {
                    return Err(SyntaxError {
                        position: i,
                        message: "a number's exponent has no digits".into(),
                    });
                }
            }
            if i < chars.len() && (chars[i].is_alphabetic() || chars[i] == '_') {
                return Err(SyntaxError {
                    position: i,
                    message: "a number runs into a name (write `2 * N`, not `2N`)".into(),
                });
            }
            out.push((start, Tok::Num));
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((start, Tok::Name(chars[start..i].iter().collect())));
            continue;
        }
        match c {
            '(' => out.push((start, Tok::LParen)),
            ')' => out.push((start, Tok::RParen)),
            ',' => out.push((start, Tok::Comma)),
            _ => {
                let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
                let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                    return Err(SyntaxError {
                        position: i,
                        message: format!("unexpected character `{c}`"),
                    });
                };
                out.push((start, Tok::Op(op)));
                i += op.chars().count();
                continue;
            }
        }
        i += 1;
    }
    out.push((chars.len(), Tok::End));
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    at: usize,
    checked: Checked,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].1
    }

    fn pos(&self) -> usize {
        self.toks[self.at.min(self.toks.len() - 1)].0
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.at < self.toks.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn error(&self, expected: &str) -> SyntaxError {
        SyntaxError {
            position: self.pos(),
            message: format!("expected {expected}, found {}", self.peek().describe()),
        }
    }

    fn is_op(&self, ops: &[&str]) -> bool {
        matches!(self.peek(), Tok::Op(o) if ops.contains(o))
    }

    fn condition(&mut self) -> Result<(), SyntaxError> {
        self.sum()?;
        if self.is_op(&["<", "<=", ">", ">=", "==", "!="]) {
            self.bump();
            self.sum()?;
        }
        Ok(())
    }

    fn sum(&mut self) -> Result<(), SyntaxError> {
        self.product()?;
        while self.is_op(&["+", "-"]) {
            self.bump();
            self.product()?;
        }
        Ok(())
    }

    fn product(&mut self) -> Result<(), SyntaxError> {
        self.unary()?;
        while self.is_op(&["*", "/", "//", "%"]) {
            self.bump();
            self.unary()?;
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<(), SyntaxError> {
        if self.is_op(&["-", "+"]) {
            self.bump();
            return self.unary();
        }
        self.power()
    }

    fn power(&mut self) -> Result<(), SyntaxError> {
        self.atom()?;
        if self.is_op(&["**", "^"]) {
            self.bump();
            self.unary()?;
        }
        Ok(())
    }

    fn atom(&mut self) -> Result<(), SyntaxError> {
        let start = self.pos();
        match self.peek().clone() {
            Tok::Num => {
                self.bump();
                Ok(())
            }
            Tok::LParen => {
                self.bump();
                self.condition()?;
                if *self.peek() != Tok::RParen {
                    return Err(self.error("`)`"));
                }
                self.bump();
                Ok(())
            }
            Tok::Name(name) => {
                self.bump();
                if *self.peek() == Tok::LParen {
                    self.bump();
                    let mut args = 0usize;
                    if *self.peek() != Tok::RParen {
                        loop {
                            self.condition()?;
                            args += 1;
                            match self.peek() {
                                Tok::Comma => {
                                    self.bump();
                                }
                                Tok::RParen => break,
                                _ => return Err(self.error("`,` or `)`")),
                            }
                        }
                    }
                    self.bump();
                    self.call(&name, args, start)
                } else {
                    if !self.checked.variables.contains(&name) {
                        self.checked.variables.push(name);
                    }
                    Ok(())
                }
            }
            _ => Err(self.error("a number, a name or `(`")),
        }
    }

    fn call(&mut self, name: &str, args: usize, start: usize) -> Result<(), SyntaxError> {
        match FUNCTIONS.iter().find(|(f, _, _)| *f == name) {
            Some(&(_, min, max)) if args < min || args > max => {
                let wanted = match (min, max) {
                    (a, b) if a == b => format!("{a}"),
                    (a, usize::MAX) => format!("at least {a}"),
                    (a, b) => format!("{a} or {b}"),
                };
                Err(SyntaxError {
                    position: start,
                    message: format!("`{name}` takes {wanted} argument(s), not {args}"),
                })
            }
            Some(_) => Ok(()),
            None => {
                if !self.checked.unknown_functions.iter().any(|f| f == name) {
                    self.checked.unknown_functions.push(name.to_string());
                }
                Ok(())
            }
        }
    }
}

/// Parse `src` and return the names it uses, or where and why it is not well formed.
pub fn check(src: &str) -> Result<Checked, SyntaxError> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        at: 0,
        checked: Checked::default(),
    };
    if *p.peek() == Tok::End {
        return Err(SyntaxError {
            position: 0,
            message: "the expression is empty".into(),
        });
    }
    p.condition()?;
    if *p.peek() != Tok::End {
        return Err(p.error("an operator or the end of the expression"));
    }
    Ok(p.checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(src: &str) -> Vec<String> {
        check(src).expect(src).variables
    }

    #[test]
    fn accepts_the_source_systems_forms() {
        assert_eq!(vars("500"), Vec::<String>::new());
        assert_eq!(vars("1000 + 5 * N"), ["N"]);
        assert_eq!(vars("count * delay * 1000"), ["count", "delay"]);
        assert_eq!(vars("ceil(packet_count / 1000)"), ["packet_count"]);
        assert_eq!(
            vars("3000 + 400 * log(max(N, 1)) + p95_latency * 1.2"),
            ["N", "p95_latency"]
        );
        assert_eq!(vars("-x ** 2 ^ y // 3 % 2"), ["x", "y"]);
        assert_eq!(vars("N > 50"), ["N"]);
        assert_eq!(vars("(.5e3 + 1.5E-2) * (N)"), ["N"]);
    }

    #[test]
    fn reports_syntax_errors_with_positions() {
        let e = check("1000 + * N").unwrap_err();
        assert_eq!(e.position, 7);
        assert!(e.message.contains("expected a number"), "{e}");
        assert_eq!(check("<EXPRESSION>").unwrap_err().position, 0);
        assert_eq!(check("(1 + 2").unwrap_err().position, 6);
        assert_eq!(check("1 2").unwrap_err().position, 2);
        assert_eq!(check("2N").unwrap_err().position, 1);
        assert_eq!(check("   ").unwrap_err().message, "the expression is empty");
        assert_eq!(check("1 $ 2").unwrap_err().position, 2);
        let e = check("ceil(N, 2)").unwrap_err();
        assert!(e.message.contains("takes 1 argument"), "{e}");
        assert!(check("min()").is_err());
    }

    #[test]
    fn lists_unknown_functions() {
        let c = check("round(N) + round(2) + ceil(N)").unwrap();
        assert_eq!(c.unknown_functions, ["round"]);
        assert_eq!(c.variables, ["N"]);
    }
}
