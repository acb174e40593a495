//! kcl-sim: the turmoil simulator of a fleet of kcl-core workers.
//!
//! **Not built yet.** This crate is an empty library so that the workspace layout of
//! `DESIGN.md` exists; it exports nothing and does nothing. Until it exists, the
//! multi-worker harness of kcl-core (`kcl_core::testkit`, example `fleet`) is the
//! main job. The work is tracked by the issue "The simulator: thousands of workers
//! through failures (kcl-sim)".
