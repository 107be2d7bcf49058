//! `serde_json` reading from and writing to a TCP connection, unchanged:
//! weft's streams are `std::io::Read` and `std::io::Write`, and a read that
//! would block suspends only the calling fiber.
//!
//! The client sends a query as one JSON object; the server answers with a
//! stream of JSON objects, one per line, pausing between them. The client
//! parses each as it arrives with `serde_json::StreamDeserializer`.
//!
//! ```text
//! cargo run --example json_over_tcp
//! ```

use std::io::{BufReader, BufWriter, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weft::net::{self, Addr, ServerOptions};
use weft::time::MonoClock;
use weft::{Error, ErrorKind, Result, Switch};

#[derive(Debug, Serialize, Deserialize)]
struct Query {
    sensor: String,
    count: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    seq: u32,
    celsius: f64,
}

/// serde_json's errors as weft errors. An IO error inside (a reset
/// connection, a cancellation) comes back as the weft error it was.
fn json_error(e: serde_json::Error) -> Error {
    if e.is_io() {
        Error::from(std::io::Error::from(e))
    } else {
        Error::with_source(ErrorKind::Parse, e).context("parsing JSON")
    }
}

/// The server: reads one query, streams the readings.
fn serve(conn: net::Stream, clock: MonoClock) -> Result<()> {
    // `next()` parses one value and stops, without waiting for the end of
    // the stream (the client keeps its side open).
    let query: Query = serde_json::Deserializer::from_reader(BufReader::new(&conn))
        .into_iter()
        .next()
        .ok_or_else(|| Error::msg(ErrorKind::EndOfFile, "no query"))?
        .map_err(json_error)?;
    println!("server: query {query:?}");
    let mut out = BufWriter::new(&conn);
    for seq in 1..=query.count {
        clock.sleep(Duration::from_millis(20))?; // a new measurement
        let reading = Reading {
            sensor: query.sensor.clone(),
            seq,
            celsius: 20.0 + f64::from(seq) / 4.0,
        };
        serde_json::to_writer(&mut out, &reading).map_err(json_error)?;
        out.write_all(b"\n")?;
        out.flush()?; // send each reading as soon as it exists
    }
    Ok(())
}

/// The client: sends a query and prints readings as they come.
fn client(netw: &net::Net, addr: &Addr) -> Result<f64> {
    let conn = netw.connect(addr)?;
    let query = Query {
        sensor: "greenhouse".to_string(),
        count: 5,
    };
    serde_json::to_writer(&conn, &query).map_err(json_error)?;
    let mut total = 0.0;
    let mut n = 0;
    // Ends cleanly when the server closes the connection.
    for reading in
        serde_json::Deserializer::from_reader(BufReader::new(&conn)).into_iter::<Reading>()
    {
        let reading = reading.map_err(json_error)?;
        println!("client: {reading:?}");
        total += reading.celsius;
        n += 1;
    }
    Ok(total / f64::from(n.max(1)))
}

fn main() -> Result<()> {
    weft::run(|env| {
        let clock = env.mono_clock();
        let netw = env.net();
        let listener = netw.listen(&"127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        Switch::run(|sw| {
            sw.fork_daemon(|| {
                net::run_server(&listener, ServerOptions::default(), |c, _| serve(c, clock))
            });
            let mean = client(&netw, &addr)?;
            println!("client: mean {mean:.2} °C");
            Ok(())
        })
    })
}
