//! Properties of the expression language (`quiver_model::expr`), on random well-formed
//! trees: printing then parsing gives the same tree back, evaluation never panics, and it
//! agrees with a reference evaluation written here independently of the library's.

use proptest::prelude::*;
use quiver_model::expr::{parse, BinOp, Expr};

const VARS: [&str; 3] = ["N", "x", "packet_count"];
const OPS: [BinOp; 13] = [
    BinOp::Add,
    BinOp::Sub,
    BinOp::Mul,
    BinOp::Div,
    BinOp::FloorDiv,
    BinOp::Rem,
    BinOp::Pow,
    BinOp::Lt,
    BinOp::Le,
    BinOp::Gt,
    BinOp::Ge,
    BinOp::Eq,
    BinOp::Ne,
];

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        // Numbers as authors write them: integers and a few decimals.
        (0u32..100_000, 0u32..4).prop_map(|(n, d)| Expr::Num(f64::from(n) / 10f64.powi(d as i32))),
        prop::sample::select(VARS.to_vec()).prop_map(|v| Expr::Var(v.to_string())),
    ];
    leaf.prop_recursive(5, 48, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Neg(Box::new(e))),
            (
                prop::sample::select(OPS.to_vec()),
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, a, b)| Expr::Bin(op, Box::new(a), Box::new(b))),
            (
                prop::sample::select(vec!["log10", "sqrt", "abs", "ceil", "floor", "round"]),
                inner.clone()
            )
                .prop_map(|(f, a)| Expr::Call(f.to_string(), vec![a])),
            (
                prop::sample::select(vec!["min", "max"]),
                prop::collection::vec(inner.clone(), 1..4)
            )
                .prop_map(|(f, args)| Expr::Call(f.to_string(), args)),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| Expr::Call("if".into(), vec![c, a, b])),
            (inner.clone(), prop::option::of(inner)).prop_map(|(a, b)| {
                Expr::Call("log".into(), std::iter::once(a).chain(b).collect())
            }),
        ]
    })
}

/// The reference: the language's rules, written out again. `None` where the library
/// must answer an error (a division by zero, a value that is not finite).
fn reference(e: &Expr, env: &[(&str, f64)]) -> Option<f64> {
    let ok = |v: f64| v.is_finite().then_some(v);
    let b = |c: bool| if c { 1.0 } else { 0.0 };
    match e {
        Expr::Num(n) => ok(*n),
        Expr::Var(v) => env.iter().find(|(k, _)| k == v).map(|(_, x)| *x),
        Expr::Neg(a) => Some(-reference(a, env)?),
        Expr::Bin(op, l, r) => {
            let (x, y) = (reference(l, env)?, reference(r, env)?);
            ok(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div | BinOp::FloorDiv | BinOp::Rem if y == 0.0 => return None,
                BinOp::Div => x / y,
                BinOp::FloorDiv => (x / y).floor(),
                BinOp::Rem => x % y,
                BinOp::Pow => x.powf(y),
                BinOp::Lt => b(x < y),
                BinOp::Le => b(x <= y),
                BinOp::Gt => b(x > y),
                BinOp::Ge => b(x >= y),
                BinOp::Eq => b(x == y),
                BinOp::Ne => b(x != y),
            })
        }
        Expr::Call(f, args) if f == "if" => {
            if reference(&args[0], env)? != 0.0 {
                reference(&args[1], env)
            } else {
                reference(&args[2], env)
            }
        }
        Expr::Call(f, args) => {
            let xs: Vec<f64> = args
                .iter()
                .map(|a| reference(a, env))
                .collect::<Option<_>>()?;
            ok(match (f.as_str(), xs.as_slice()) {
                ("log", [a]) => a.ln(),
                ("log", [a, base]) => a.log(*base),
                ("log10", [a]) => a.log10(),
                ("sqrt", [a]) => a.sqrt(),
                ("abs", [a]) => a.abs(),
                ("ceil", [a]) => a.ceil(),
                ("floor", [a]) => a.floor(),
                ("round", [a]) => a.round(),
                ("min", _) => xs.iter().copied().fold(f64::INFINITY, f64::min),
                ("max", _) => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                _ => return None,
            })
        }
    }
}

fn env_strategy() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![
            Just(0.0),
            Just(-1.0),
            -1e6f64..1e6,
            Just(1e300),
            Just(f64::MIN_POSITIVE)
        ],
        VARS.len(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn printing_then_parsing_gives_the_tree_back(e in expr()) {
        let text = e.to_string();
        prop_assume!(text.chars().count() <= quiver_model::expr::MAX_LEN);
        let (again, _) = parse(&text).map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
        prop_assert_eq!(again, e, "{}", text);
    }

    #[test]
    fn evaluation_never_panics_and_agrees_with_the_reference(e in expr(), values in env_strategy()) {
        let env: Vec<(&str, f64)> = VARS.iter().copied().zip(values).collect();
        let lookup = |v: &str| env.iter().find(|(k, _)| *k == v).map(|(_, x)| *x);
        let got = e.eval(&lookup).ok();
        let want = reference(&e, &env);
        match (got, want) {
            (Some(a), Some(b)) => prop_assert!(a == b || (a - b).abs() <= 1e-9 * a.abs().max(1.0), "{e}: {a} vs {b}"),
            (None, None) => {}
            (a, b) => prop_assert!(false, "{e}: library {a:?}, reference {b:?}"),
        }
    }

    #[test]
    fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,80}") {
        let _ = parse(&text);
    }
}
