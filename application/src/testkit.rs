//! Test support for other teams' adapters: contract suites every port implementation passes.
