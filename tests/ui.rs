//! Compile-time behaviour of the attributes: what compiles, and the exact
//! message of every wrong use (trybuild; refresh with TRYBUILD=overwrite).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
