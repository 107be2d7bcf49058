//! weft's io_uring backend.
//!
//! Not implemented yet: this crate is filled by the io_uring work
//! (issue 4). It exists so the workspace has its final shape.
