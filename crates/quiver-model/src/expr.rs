//! The estimate expressions of tool patterns (`time_estimate_ms: "1000 + 5 * N"`,
//! `cost_estimate: "ceil(N / 100)"`, `requires_background_if: "N > 50"`): one parser for
//! import, publish and selection, a printer, and an evaluator that is safe by
//! construction.
//!
//! A small hand-written recursive-descent parser; no crate, because the language is tiny,
//! we want our own error positions and the list of names an expression uses, and the
//! expression crates we looked at evaluate a larger language (strings, assignments,
//! user functions) than authors should be able to publish.
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
//! Functions: `log` (natural, or `log(x, base)`), `log10`, `sqrt`, `abs`, `ceil`, `floor`,
//! `round` (1 argument), `min`, `max` (1 or more) and `if(condition, then, else)`. A
//! comparison is 1 when it holds and 0 when not. Safety: at most [`MAX_LEN`] characters
//! and [`MAX_DEPTH`] levels of nesting (the parser's recursion is bounded); no loops, no
//! calls out; division by zero, a result that is not a finite number and a function
//! outside its domain are errors, never a panic or an infinity.

use std::fmt;

/// The longest expression accepted, in characters.
pub const MAX_LEN: usize = 1_000;
/// The deepest nesting accepted (parentheses, calls, unary signs, powers).
pub const MAX_DEPTH: usize = 64;

/// The functions an expression may call, with their (minimum, maximum) arguments.
pub const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("log", 1, 2),
    ("log10", 1, 1),
    ("sqrt", 1, 1),
    ("abs", 1, 1),
    ("ceil", 1, 1),
    ("floor", 1, 1),
    ("round", 1, 1),
    ("min", 1, usize::MAX),
    ("max", 1, usize::MAX),
    ("if", 3, 3),
];

/// The names of [`FUNCTIONS`], for messages.
pub fn function_names() -> String {
    FUNCTIONS
        .iter()
        .map(|(f, _, _)| *f)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Context variables a tool pattern's expressions may use besides the pattern's own
/// inputs: the four the ops tool template names (`N`, `pages`, `duration_ms`,
/// `packet_count`), and the workload measures and latencies the ops catalog uses across
/// several tools.
pub const CONTEXT_VARIABLES: &[&str] = &[
    "N",
    "pages",
    "duration_ms",
    "packet_count",
    "num_files",
    "num_entries",
    "num_directories",
    "num_processes",
    "num_filesystems",
    "file_size_kb",
    "network_latency",
    "dns_latency",
    "response_time",
];

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `//`: the floor of the quotient.
    FloorDiv,
    Rem,
    /// `**` or `^`.
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::FloorDiv => "//",
            BinOp::Rem => "%",
            BinOp::Pow => "**",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
        }
    }

    fn of(symbol: &str) -> Option<BinOp> {
        Some(match symbol {
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "//" => BinOp::FloorDiv,
            "%" => BinOp::Rem,
            "**" | "^" => BinOp::Pow,
            "<" => BinOp::Lt,
            "<=" => BinOp::Le,
            ">" => BinOp::Gt,
            ">=" => BinOp::Ge,
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            _ => return None,
        })
    }
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Var(String),
    Neg(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

/// Printed fully parenthesized, so that parsing the text gives the same tree back.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Num(n) => write!(f, "{n}"),
            Expr::Var(v) => f.write_str(v),
            Expr::Neg(e) => write!(f, "-({e})"),
            Expr::Bin(op, a, b) => write!(f, "({a}) {} ({b})", op.symbol()),
            Expr::Call(name, args) => {
                write!(f, "{name}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
        }
    }
}

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

/// Why an expression has no value for these variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    UnknownVariable(String),
    UnknownFunction(String),
    DivisionByZero,
    /// A result that is not a finite number (an overflow), or a function outside its
    /// domain (`sqrt` of a negative number, `log` of 0).
    NotFinite(String),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::UnknownVariable(v) => write!(f, "no value for `{v}`"),
            EvalError::UnknownFunction(n) => write!(f, "no function `{n}`"),
            EvalError::DivisionByZero => f.write_str("division by zero"),
            EvalError::NotFinite(what) => write!(f, "{what} is not a finite number"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
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
            Tok::Num(_) => "a number".into(),
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

fn tokenize(chars: &[char]) -> Result<Vec<(usize, Tok)>, SyntaxError> {
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
            let text: String = chars[start..i].iter().collect();
            let value = text
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| SyntaxError {
                    position: start,
                    message: format!("`{text}` is too large a number"),
                })?;
            out.push((start, Tok::Num(value)));
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
    depth: usize,
    checked: Checked,
}

type Parsed = Result<Expr, SyntaxError>;

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

    /// One level deeper; an error past [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SyntaxError {
                position: self.pos(),
                message: format!("nested more than {MAX_DEPTH} levels deep"),
            });
        }
        Ok(())
    }

    fn op_in(&self, ops: &[&str]) -> Option<&'static str> {
        match self.peek() {
            Tok::Op(o) if ops.contains(o) => Some(o),
            _ => None,
        }
    }

    fn condition(&mut self) -> Parsed {
        let a = self.sum()?;
        if let Some(op) = self.op_in(&["<", "<=", ">", ">=", "==", "!="]) {
            self.bump();
            let b = self.sum()?;
            return Ok(bin(op, a, b));
        }
        Ok(a)
    }

    fn sum(&mut self) -> Parsed {
        let mut a = self.product()?;
        while let Some(op) = self.op_in(&["+", "-"]) {
            self.bump();
            let b = self.product()?;
            a = bin(op, a, b);
        }
        Ok(a)
    }

    fn product(&mut self) -> Parsed {
        let mut a = self.unary()?;
        while let Some(op) = self.op_in(&["*", "/", "//", "%"]) {
            self.bump();
            let b = self.unary()?;
            a = bin(op, a, b);
        }
        Ok(a)
    }

    fn unary(&mut self) -> Parsed {
        if let Some(op) = self.op_in(&["-", "+"]) {
            self.bump();
            self.enter()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(if op == "-" { Expr::Neg(Box::new(e)) } else { e });
        }
        self.power()
    }

    fn power(&mut self) -> Parsed {
        let a = self.atom()?;
        if let Some(op) = self.op_in(&["**", "^"]) {
            self.bump();
            self.enter()?;
            let b = self.unary()?;
            self.depth -= 1;
            return Ok(bin(op, a, b));
        }
        Ok(a)
    }

    fn atom(&mut self) -> Parsed {
        let start = self.pos();
        match self.peek().clone() {
            Tok::Num(n) => {
                self.bump();
                Ok(Expr::Num(n))
            }
            Tok::LParen => {
                self.bump();
                self.enter()?;
                let e = self.condition()?;
                self.depth -= 1;
                if *self.peek() != Tok::RParen {
                    return Err(self.error("`)`"));
                }
                self.bump();
                Ok(e)
            }
            Tok::Name(name) => {
                self.bump();
                if *self.peek() != Tok::LParen {
                    if !self.checked.variables.contains(&name) {
                        self.checked.variables.push(name.clone());
                    }
                    return Ok(Expr::Var(name));
                }
                self.bump();
                self.enter()?;
                let mut args = Vec::new();
                if *self.peek() != Tok::RParen {
                    loop {
                        args.push(self.condition()?);
                        match self.peek() {
                            Tok::Comma => {
                                self.bump();
                            }
                            Tok::RParen => break,
                            _ => return Err(self.error("`,` or `)`")),
                        }
                    }
                }
                self.depth -= 1;
                self.bump();
                self.call(&name, args.len(), start)?;
                Ok(Expr::Call(name, args))
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

fn bin(op: &str, a: Expr, b: Expr) -> Expr {
    let op = BinOp::of(op).expect("the tokenizer's operators are all binary operators");
    Expr::Bin(op, Box::new(a), Box::new(b))
}

/// Parse `src`: the tree and what it uses, or where and why it is not well formed.
pub fn parse(src: &str) -> Result<(Expr, Checked), SyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    if chars.len() > MAX_LEN {
        return Err(SyntaxError {
            position: MAX_LEN,
            message: format!("longer than {MAX_LEN} characters"),
        });
    }
    let toks = tokenize(&chars)?;
    let mut p = Parser {
        toks,
        at: 0,
        depth: 0,
        checked: Checked::default(),
    };
    if *p.peek() == Tok::End {
        return Err(SyntaxError {
            position: 0,
            message: "the expression is empty".into(),
        });
    }
    let e = p.condition()?;
    if *p.peek() != Tok::End {
        return Err(p.error("an operator or the end of the expression"));
    }
    Ok((e, p.checked))
}

/// Parse `src` and return the names it uses, or where and why it is not well formed.
pub fn check(src: &str) -> Result<Checked, SyntaxError> {
    parse(src).map(|(_, c)| c)
}

fn finite(v: f64, what: &str) -> Result<f64, EvalError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(EvalError::NotFinite(what.to_string()))
    }
}

fn truth(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

impl Expr {
    /// The value for the variables `vars` gives. Never panics; every error is an
    /// [`EvalError`]. (A tree from [`parse`] is bounded by [`MAX_LEN`] and
    /// [`MAX_DEPTH`], so the recursion is too.)
    pub fn eval(&self, vars: &dyn Fn(&str) -> Option<f64>) -> Result<f64, EvalError> {
        match self {
            Expr::Num(n) => finite(*n, "a number"),
            Expr::Var(v) => {
                let x = vars(v).ok_or_else(|| EvalError::UnknownVariable(v.clone()))?;
                finite(x, &format!("`{v}`"))
            }
            Expr::Neg(e) => Ok(-e.eval(vars)?),
            Expr::Bin(op, a, b) => {
                let (x, y) = (a.eval(vars)?, b.eval(vars)?);
                let v = match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div | BinOp::FloorDiv | BinOp::Rem if y == 0.0 => {
                        return Err(EvalError::DivisionByZero)
                    }
                    BinOp::Div => x / y,
                    BinOp::FloorDiv => (x / y).floor(),
                    BinOp::Rem => x % y,
                    BinOp::Pow => x.powf(y),
                    BinOp::Lt => truth(x < y),
                    BinOp::Le => truth(x <= y),
                    BinOp::Gt => truth(x > y),
                    BinOp::Ge => truth(x >= y),
                    BinOp::Eq => truth(x == y),
                    BinOp::Ne => truth(x != y),
                };
                finite(v, &format!("the result of `{}`", op.symbol()))
            }
            Expr::Call(name, args) => {
                if name == "if" {
                    // Only the branch taken is evaluated.
                    let [c, t, e] = args.as_slice() else {
                        return Err(EvalError::UnknownFunction(name.clone()));
                    };
                    return if c.eval(vars)? != 0.0 {
                        t.eval(vars)
                    } else {
                        e.eval(vars)
                    };
                }
                let xs = args
                    .iter()
                    .map(|a| a.eval(vars))
                    .collect::<Result<Vec<f64>, _>>()?;
                let one = || xs.first().copied().unwrap_or(f64::NAN);
                let v = match (name.as_str(), xs.len()) {
                    ("log", 1) => one().ln(),
                    ("log", 2) => one().log(xs[1]),
                    ("log10", 1) => one().log10(),
                    ("sqrt", 1) => one().sqrt(),
                    ("abs", 1) => one().abs(),
                    ("ceil", 1) => one().ceil(),
                    ("floor", 1) => one().floor(),
                    ("round", 1) => one().round(),
                    ("min", n) if n > 0 => xs.iter().copied().fold(f64::INFINITY, f64::min),
                    ("max", n) if n > 0 => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    _ => return Err(EvalError::UnknownFunction(name.clone())),
                };
                finite(v, &format!("`{name}(…)`"))
            }
        }
    }
}

/// Parse and evaluate `src` with `vars`.
pub fn eval_str(src: &str, vars: &dyn Fn(&str) -> Option<f64>) -> Result<f64, String> {
    let (e, _) = parse(src).map_err(|e| e.to_string())?;
    e.eval(vars).map_err(|e| e.to_string())
}

/// The pattern fields that hold expressions (`policy.requires_background_if` besides).
pub const EXPRESSION_FIELDS: &[&str] = &["time_estimate_ms", "cost_estimate"];

/// The names a pattern declares as its inputs (`required_inputs`, `optional_inputs`,
/// `api_parameters`).
pub fn input_names(pattern: &serde_json::Value) -> std::collections::BTreeSet<&str> {
    ["required_inputs", "optional_inputs", "api_parameters"]
        .iter()
        .filter_map(|k| pattern.get(*k))
        .filter_map(serde_json::Value::as_array)
        .flatten()
        .filter_map(|i| i.get("name").and_then(serde_json::Value::as_str))
        .collect()
}

/// Check every estimate expression of a tool manifest as a publish must: each pattern's
/// (`capabilities.{capability}.patterns.{pattern}`) `time_estimate_ms`, `cost_estimate`
/// and `policy.requires_background_if` is a number or a well-formed expression that calls
/// only known functions and uses only the pattern's inputs and the
/// [`CONTEXT_VARIABLES`]. The error names the field (`manifest.capabilities.….time_estimate_ms`),
/// the pattern and the position.
pub fn check_tool_manifest(manifest: &serde_json::Value) -> crate::Result<()> {
    use serde_json::Value;
    let Some(caps) = manifest.get("capabilities").and_then(Value::as_object) else {
        return Ok(());
    };
    for (cap, c) in caps {
        let Some(pats) = c.get("patterns").and_then(Value::as_object) else {
            continue;
        };
        for (pat, p) in pats {
            let inputs = input_names(p);
            let mut fields: Vec<(String, &Value)> = EXPRESSION_FIELDS
                .iter()
                .filter_map(|f| p.get(*f).map(|v| (f.to_string(), v)))
                .collect();
            if let Some(v) = p
                .get("policy")
                .and_then(|x| x.get("requires_background_if"))
            {
                fields.push(("policy.requires_background_if".into(), v));
            }
            for (field, v) in fields {
                let path = format!("manifest.capabilities.{cap}.patterns.{pat}.{field}");
                let src = match v {
                    Value::Number(_) | Value::Null => continue,
                    Value::String(s) => s.as_str(),
                    _ => {
                        return Err(crate::Error::invalid(
                            path,
                            format!(
                                "pattern `{pat}`: must be a number or an expression in a string"
                            ),
                        ))
                    }
                };
                let checked = check(src).map_err(|e| {
                    crate::Error::invalid(
                        &path,
                        format!("pattern `{pat}`: `{src}` is not a valid expression: {e}"),
                    )
                })?;
                if let Some(f) = checked.unknown_functions.first() {
                    return Err(crate::Error::invalid(
                        path,
                        format!(
                            "pattern `{pat}`: `{src}` calls `{f}`, which is not a function ({})",
                            function_names()
                        ),
                    ));
                }
                if let Some(var) = checked.variables.iter().find(|v| {
                    !inputs.contains(v.as_str()) && !CONTEXT_VARIABLES.contains(&v.as_str())
                }) {
                    return Err(crate::Error::invalid(
                        path,
                        format!(
                            "pattern `{pat}`: `{src}` uses `{var}`, which is neither an input of the \
                             pattern (required_inputs, optional_inputs, api_parameters) nor a \
                             context variable ({})",
                            CONTEXT_VARIABLES.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(src: &str) -> Vec<String> {
        check(src).expect(src).variables
    }

    fn value(src: &str, n: f64) -> Result<f64, String> {
        eval_str(src, &|v| (v == "N").then_some(n))
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
        assert!(check("if(N > 1, 2)").is_err());
        assert!(check("1e999").unwrap_err().message.contains("too large"));
    }

    #[test]
    fn bounds_length_and_depth() {
        let long = format!("1{}", " + 1".repeat(MAX_LEN));
        assert!(check(&long).unwrap_err().message.contains("longer than"));
        let deep = format!(
            "{}1{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(check(&deep).unwrap_err().message.contains("nested"));
        let ok = format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(check(&ok).is_ok());
        assert!(check(&"-".repeat(MAX_DEPTH + 1)).is_err());
        assert!(check(&format!("{}1", "2 ** ".repeat(MAX_DEPTH + 1))).is_err());
    }

    #[test]
    fn lists_unknown_functions() {
        let c = check("frob(N) + frob(2) + ceil(N) + round(N)").unwrap();
        assert_eq!(c.unknown_functions, ["frob"]);
        assert_eq!(c.variables, ["N"]);
    }

    #[test]
    fn evaluates() {
        assert_eq!(value("1000 + 5 * N", 100.0), Ok(1500.0));
        assert_eq!(value("ceil(N / 100)", 250.0), Ok(3.0));
        assert_eq!(value("-2 ** 2", 0.0), Ok(-4.0), "unary minus binds looser");
        assert_eq!(value("2 ** 3 ** 2", 0.0), Ok(512.0), "right-associative");
        assert_eq!(value("7 // 2 + 7 % 2", 0.0), Ok(4.0));
        assert_eq!(value("if(N > 50, 1, 0) + (N == 60)", 60.0), Ok(2.0));
        assert_eq!(
            value("if(N > 50, 1, 1 / 0)", 60.0),
            Ok(1.0),
            "lazy branches"
        );
        assert_eq!(value("round(2.5) + min(3, N) + max(N)", 1.0), Ok(5.0));
        assert_eq!(
            value("log(8, 2) + log10(100) + sqrt(16) + abs(-1)", 0.0),
            Ok(10.0)
        );
        assert_eq!(value("N / 0", 1.0), Err("division by zero".into()));
        assert_eq!(value("N % 0", 1.0), Err("division by zero".into()));
        assert!(value("10 ** 400", 0.0)
            .unwrap_err()
            .contains("not a finite"));
        assert!(value("sqrt(0 - 1)", 0.0)
            .unwrap_err()
            .contains("not a finite"));
        assert!(value("log(0)", 0.0).unwrap_err().contains("not a finite"));
        assert_eq!(value("x + 1", 0.0), Err("no value for `x`".into()));
        assert_eq!(value("frob(1)", 0.0), Err("no function `frob`".into()));
    }

    #[test]
    fn tool_manifests_are_checked_as_a_publish_must() {
        use serde_json::json;
        let m = |time: serde_json::Value| {
            json!({"capabilities": {"packet_capture": {"patterns": {"capture": {
                "time_estimate_ms": time, "cost_estimate": "ceil(packet_count / 1000)",
                "required_inputs": [{"name": "iface", "type": "string"}],
                "optional_inputs": [{"name": "snaplen"}],
                "policy": {"requires_background_if": "packet_count > 10000"}
            }}}}})
        };
        assert!(check_tool_manifest(&m(json!("800 + 0.3 * packet_count + snaplen"))).is_ok());
        assert!(check_tool_manifest(&m(json!(1500))).is_ok());
        assert!(check_tool_manifest(&json!({"summary": "no capabilities"})).is_ok());
        let e = check_tool_manifest(&m(json!("1200 + * N )"))).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("manifest.capabilities.packet_capture.patterns.capture.time_estimate_ms")
        );
        assert!(
            e.message.contains("pattern `capture`") && e.message.contains("at character 8"),
            "{e:?}"
        );
        let e = check_tool_manifest(&m(json!("100 * packets"))).unwrap_err();
        assert!(e.message.contains("uses `packets`"), "{e:?}");
        let e = check_tool_manifest(&m(json!("frob(N)"))).unwrap_err();
        assert!(e.message.contains("calls `frob`"), "{e:?}");
        let e = check_tool_manifest(&m(json!(["1"]))).unwrap_err();
        assert!(e.message.contains("must be a number"), "{e:?}");
    }

    #[test]
    fn prints_what_parses_back() {
        for src in [
            "1000 + 5 * N",
            "-x ** 2 ^ y // 3 % 2",
            "if(N > 50, ceil(N / 3), 2.5e-3)",
        ] {
            let (e, _) = parse(src).unwrap();
            let (again, _) = parse(&e.to_string()).unwrap();
            assert_eq!(e, again, "{src} printed as {e}");
        }
    }
}
