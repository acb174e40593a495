//! kcl-aws: the runtime-agnostic async driver and the DynamoDB / Kinesis backends on the AWS SDK.
//!
//! **Not built yet.** This crate is an empty library so that the workspace layout of
//! `DESIGN.md` exists; it exports nothing and does nothing. The work is tracked by the
//! issue "Real AWS: the async driver, tokio and smol runtimes".
