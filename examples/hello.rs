//! The smallest weft program: run `main` on the default backend and write
//! to standard output through the `Env`.
//!
//! ```text
//! cargo run --example hello
//! WEFT_BACKEND=posix cargo run --example hello
//! ```

use weft::flow::Sink;

fn main() -> weft::Result<()> {
    // `weft::run` picks a backend (io_uring where the kernel allows it,
    // else POSIX; `WEFT_BACKEND` overrides) and hands `main` the `Env`:
    // every capability to reach the outside world.
    weft::run(|env| {
        // Standard output is a capability too: a flow (`Sink`).
        let out = env.stdout();
        out.write_all(format!("Hello, world! (on {})\n", env.backend_id()).as_bytes())
    })
}
