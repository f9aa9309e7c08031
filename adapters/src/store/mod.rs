//! Token stores: the file store (the default) and the in-memory store.
