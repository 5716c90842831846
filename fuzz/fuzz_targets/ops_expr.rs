//! The expression language (`quiver_model::expr`, which the ops importer, publish and
//! selection share): any text is a tree or a syntax error; a tree evaluates to a number
//! or an error, and prints as text that parses back to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_import::formats::ops::expr;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((tree, _)) = expr::parse(text) {
            for x in [0.0, -1.0, 3.5, 1e300] {
                let _ = tree.eval(&|_| Some(x));
            }
            let printed = tree.to_string();
            if printed.chars().count() <= expr::MAX_LEN {
                if let Ok((again, _)) = expr::parse(&printed) {
                    assert_eq!(again, tree, "{printed}");
                }
            }
        }
    }
});
