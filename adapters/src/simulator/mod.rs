//! The provider simulator: strict fakes of every provider on loopback, for tests and `--sandbox`.
