//! The composition root of llxprt as a library: [`compose`] turns settings and a home directory
//! into the wired services. The binary, the benchmarks and the tests use it alike.

pub mod compose;
pub mod stores;
