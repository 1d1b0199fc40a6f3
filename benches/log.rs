//! The log benchmark: see docs/benchmarks.md.

fn main() {}
