//! `run_server`: an accept loop with bounded concurrency.

use std::time::Duration;

use super::{Addr, Listener, Stream};
use crate::error::{Error, Result};
use crate::switch::Switch;
use crate::sync::Semaphore;

/// Options for [`run_server`].
pub struct ServerOptions<'a> {
    /// Connections handled at once; `accept` waits while this many are
    /// open. Default 1024.
    pub max_connections: usize,
    /// Called with every error that does not stop the server: failed
    /// accepts (such as running out of fds) and failed handlers. Default:
    /// trace the error.
    pub on_error: Box<dyn Fn(&Error) + 'a>,
}

impl Default for ServerOptions<'_> {
    fn default() -> Self {
        ServerOptions {
            max_connections: 1024,
            on_error: Box::new(|e| crate::traceln!("error handling connection: {e}")),
        }
    }
}

impl std::fmt::Debug for ServerOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Accepts connections on `listener` forever, handling each in its own
/// fiber with `handler` (the stream is closed when the handler returns).
///
/// At most `max_connections` are handled at once. An accept that fails —
/// out of file descriptors, a connection reset before it was accepted — is
/// reported to `on_error` and retried after a short pause instead of
/// stopping the server; so is a handler's error. Only cancellation ends it:
/// run it in a daemon fiber, or race it with a shutdown signal.
///
/// ```
/// use weft::{flow::{Sink, Source}, net, Switch};
///
/// weft::run(|env| {
///     let netw = env.net();
///     let listener = netw.listen(&"127.0.0.1:0".parse()?)?;
///     let addr = listener.local_addr()?;
///     Switch::run(|sw| {
///         sw.fork_daemon(|| {
///             net::run_server(&listener, net::ServerOptions::default(), |conn, _peer| {
///                 conn.write_all(b"Hello from server")
///             })
///         });
///         let client = netw.connect(&addr)?;
///         assert_eq!(client.read_all()?, "Hello from server");
///         Ok(())
///     })
/// })
/// .unwrap();
/// ```
pub fn run_server<H>(listener: &Listener, opts: ServerOptions<'_>, handler: H) -> Result<()>
where
    H: Fn(Stream, Addr) -> Result<()>,
{
    if opts.max_connections == 0 {
        return Err(Error::msg(
            crate::ErrorKind::InvalidInput,
            "max_connections must be at least 1",
        ));
    }
    let slots = Semaphore::new(opts.max_connections);
    let (slots, handler, on_error) = (&slots, &handler, &opts.on_error);
    Switch::run(|sw| loop {
        slots.acquire()?;
        let (conn, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.is_cancelled() => {
                slots.release();
                return Err(e);
            }
            Err(e) => {
                slots.release();
                on_error(&e.context("accepting a connection"));
                // Often transient (EMFILE until a handler closes its
                // stream): pause rather than spin.
                crate::time::sleep_ns(Duration::from_millis(10))?;
                continue;
            }
        };
        sw.fork(move || {
            let r = handler(conn, peer.clone());
            slots.release();
            match r {
                Err(e) if !e.is_cancelled() => on_error(&e.context(format!("handling {peer}"))),
                _ => {}
            }
            Ok(())
        });
    })
}
