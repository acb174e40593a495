//! kcl-smol: the thin smol runtime for kcl-aws (no tokio runtime anywhere).
//!
//! **Not built yet.** This crate is an empty library so that the workspace layout of
//! `DESIGN.md` exists; it exports nothing and does nothing. The work is tracked by the
//! issue "Real AWS: the async driver, tokio and smol runtimes".
