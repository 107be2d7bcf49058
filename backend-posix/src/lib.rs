//! weft's POSIX backend (readiness-based, on `polling`/epoll).
//!
//! Not implemented yet: this crate is filled by the Env/POSIX work
//! (issue 3). It exists so the workspace has its final shape.
