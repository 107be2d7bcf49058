//! A client for a tiny line protocol, and how to test it on the mock
//! backend without any network.
//!
//! The protocol: the client sends `GET <key>\n`; the server answers
//! `VALUE <value>\n`, `NOT_FOUND\n` or `ERROR <message>\n`, and closes.
//!
//! `main` runs the client against a real in-process server. The tests at
//! the bottom run it against the mock backend's scripted network, where
//! every read and write is traced and compared; `tests/example_mock_client.rs`
//! runs the whole demo (server and clients) on the mock's in-memory network.
//!
//! ```text
//! cargo run --example mock_tested_client
//! cargo test --example mock_tested_client   # the tests below
//! cargo test --test example_mock_client     # the same, and the demo on every backend
//! ```

use weft::buf_read::BufReader;
use weft::flow::{Shutdown, ShutdownKind, Sink};
use weft::net::{self, Addr, Net, ServerOptions};
use weft::{fiber, traceln, Env, Error, ErrorKind, Result, ResultExt, Switch};

/// Longest reply line the client accepts: a hostile server cannot make it
/// buffer more than this.
const MAX_REPLY: usize = 64 * 1024;

/// Looks `key` up on the server at `addr`. Only a `Net` is needed: this
/// function can reach the network and nothing else.
pub fn get(netw: &Net, addr: &Addr, key: &str) -> Result<Option<String>> {
    if key.is_empty() || key.contains(|c: char| c.is_whitespace()) {
        return Err(Error::msg(
            ErrorKind::InvalidInput,
            format!("key must be non-empty and without whitespace: {key:?}"),
        ));
    }
    let ctx = || format!("getting {key:?} from {addr}");
    let conn = netw.connect(addr).with_context(ctx)?;
    conn.write_all(format!("GET {key}\n").as_bytes())
        .with_context(ctx)?;
    conn.shutdown(ShutdownKind::Write).with_context(ctx)?;
    let reply = BufReader::new(&conn, MAX_REPLY).line().with_context(ctx)?;
    parse_reply(&reply).with_context(ctx)
}

/// Interprets one reply line.
fn parse_reply(line: &str) -> Result<Option<String>> {
    if let Some(value) = line.strip_prefix("VALUE ") {
        Ok(Some(value.to_string()))
    } else if line == "NOT_FOUND" {
        Ok(None)
    } else if let Some(msg) = line.strip_prefix("ERROR ") {
        Err(Error::msg(ErrorKind::Io, format!("server error: {msg}")))
    } else {
        Err(Error::msg(
            ErrorKind::Parse,
            format!("unexpected reply {line:?}"),
        ))
    }
}

/// The server side, for the demo: answers one request from a fixed table.
fn serve(conn: net::Stream) -> Result<()> {
    let request = BufReader::new(&conn, 1024).line()?;
    let reply = match request.strip_prefix("GET ") {
        Some("greeting") => "VALUE hello".to_string(),
        Some("answer") => "VALUE 42".to_string(),
        Some(_) => "NOT_FOUND".to_string(),
        None => format!("ERROR bad request {request:?}"),
    };
    conn.write_all(format!("{reply}\n").as_bytes())
}

/// Starts a server and looks up three keys concurrently; returns what it
/// found. Output goes through `traceln!`, which the mock backend captures
/// for tests.
pub fn demo(env: &Env) -> Result<Vec<Option<String>>> {
    let netw = env.net();
    let listener = netw.listen(&"127.0.0.1:0".parse()?)?;
    let addr = listener.local_addr()?;
    Switch::run(|sw| {
        sw.fork_daemon(|| net::run_server(&listener, ServerOptions::default(), |c, _| serve(c)));
        let keys = ["greeting", "answer", "missing"];
        let values = fiber::map(3, keys, |key| get(&netw, &addr, key))?;
        for (key, value) in keys.iter().zip(&values) {
            traceln!("{key} = {value:?}");
        }
        Ok(values)
    })
}

fn main() -> Result<()> {
    weft::run(demo).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft::mock::{self, Action, Flow};
    use weft::NetError;

    /// Runs `get` on a scripted network whose one connection answers with
    /// `reply` (split into the given reads), and returns the result and the
    /// trace.
    fn get_with_reply(reads: &[&str]) -> (Result<Option<String>>, Vec<String>) {
        let reads: Vec<Action<Vec<u8>>> = reads.iter().map(|r| Action::ret(*r)).collect();
        mock::run_traced(move |_env| {
            let mocknet = mock::Net::new("net");
            let conn = Flow::new("conn");
            conn.on_read(reads);
            mocknet.on_connect([Action::Return(conn.into())]);
            get(&mocknet.net(), &"10.0.0.1:4000".parse()?, "answer")
        })
    }

    #[test]
    fn sends_one_request_and_reads_the_value() {
        let (r, trace) = get_with_reply(&["VALUE 42\n"]);
        assert_eq!(r.unwrap(), Some("42".to_string()));
        assert_eq!(
            trace,
            [
                "net: connect to tcp:10.0.0.1:4000",
                r#"conn: wrote "GET answer\n""#,
                "conn: shutdown write",
                r#"conn: read "VALUE 42\n""#,
                "conn: closed",
            ]
        );
    }

    #[test]
    fn a_reply_split_across_reads_is_reassembled() {
        let (r, _) = get_with_reply(&["VAL", "UE 4", "2\n"]);
        assert_eq!(r.unwrap(), Some("42".to_string()));
    }

    #[test]
    fn not_found_is_none() {
        let (r, _) = get_with_reply(&["NOT_FOUND\n"]);
        assert_eq!(r.unwrap(), None);
    }

    #[test]
    fn a_server_error_is_an_error_naming_the_request() {
        let (r, _) = get_with_reply(&["ERROR disk on fire\n"]);
        let err = r.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"io error, server error: disk on fire, getting "answer" from tcp:10.0.0.1:4000"#
        );
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let (r, _) = get_with_reply(&["HTTP/1.1 400 Bad Request\r\n"]);
        let err = r.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Parse, "{err}");
        assert!(err.to_string().contains("unexpected reply"), "{err}");
    }

    #[test]
    fn a_silent_server_is_end_of_file() {
        let (r, _) = get_with_reply(&[]);
        assert_eq!(r.unwrap_err().kind(), &ErrorKind::EndOfFile);
    }

    #[test]
    fn a_refused_connection_says_where() {
        let (r, trace) = mock::run_traced(|_env| {
            let mocknet = mock::Net::new("net");
            mocknet.on_connect([Action::Error(Error::new(ErrorKind::Net(
                NetError::ConnectionRefused,
            )))]);
            get(&mocknet.net(), &"10.0.0.1:4000".parse()?, "answer")
        });
        let err = r.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Net(NetError::ConnectionRefused));
        let contexts: Vec<&str> = err.contexts().collect();
        assert_eq!(
            contexts,
            [
                "connecting to tcp:10.0.0.1:4000",
                r#"getting "answer" from tcp:10.0.0.1:4000"#
            ]
        );
        assert_eq!(trace, ["net: connect to tcp:10.0.0.1:4000"]);
    }

    #[test]
    fn bad_keys_are_refused_before_connecting() {
        for key in ["", "two words", "new\nline"] {
            let (r, trace) = mock::run_traced(|_env| {
                let mocknet = mock::Net::new("net");
                get(&mocknet.net(), &"10.0.0.1:4000".parse()?, key)
            });
            assert_eq!(r.unwrap_err().kind(), &ErrorKind::InvalidInput, "{key:?}");
            assert!(trace.is_empty(), "{trace:?}");
        }
    }
}
