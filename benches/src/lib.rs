//! Benchmarks of kcl-core live in `benches/`; this library holds the inputs they share.
