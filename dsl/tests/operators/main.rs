//! The DSL operators through the test driver, one module per operator family.

mod stateless;
