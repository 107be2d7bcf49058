//! Criterion benchmarks of buffered parsing (`weft::buf_read`): lines out of
//! a flow that hands data over in socket-sized chunks, and a small HTTP
//! request head. Throughput is in bytes of input.
//!
//! Run: `cargo bench --bench buf_read`.

use std::cell::Cell;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weft::buf_read::BufReader;
use weft::flow::Source;

/// An in-memory source that returns at most `chunk` bytes per read, as a
/// socket returns packets rather than everything at once.
struct Chunked<'a> {
    data: &'a [u8],
    pos: Cell<usize>,
    chunk: usize,
}

impl Source for Chunked<'_> {
    fn read(&self, buf: &mut [u8]) -> weft::Result<usize> {
        let pos = self.pos.get();
        let n = buf.len().min(self.chunk).min(self.data.len() - pos);
        buf[..n].copy_from_slice(&self.data[pos..pos + n]);
        self.pos.set(pos + n);
        Ok(n)
    }
}

/// About 1 MiB of log-like lines of varying length.
fn sample_lines() -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < 1 << 20 {
        let pad = "x".repeat((i % 61) as usize);
        out.extend_from_slice(
            format!("2026-11-22T01:00:{:02} INFO request {i} {pad}\n", i % 60).as_bytes(),
        );
        i += 1;
    }
    out
}

fn lines(c: &mut Criterion) {
    let data = sample_lines();
    let count = data.iter().filter(|&&b| b == b'\n').count();
    let mut g = c.benchmark_group("buf_read_lines");
    g.throughput(Throughput::Bytes(data.len() as u64));
    for chunk in [1460usize, 64 * 1024] {
        g.bench_with_input(
            BenchmarkId::new("line_string", chunk),
            &chunk,
            |b, &chunk| {
                b.iter(|| {
                    weft::mock::run(|_env| {
                        let src = Chunked {
                            data: &data,
                            pos: Cell::new(0),
                            chunk,
                        };
                        let mut r = BufReader::new(src, 64 * 1024);
                        let mut n = 0;
                        while !r.at_end_of_input()? {
                            std::hint::black_box(r.line()?);
                            n += 1;
                        }
                        assert_eq!(n, count);
                        Ok(())
                    })
                    .unwrap()
                })
            },
        );
    }
    // Counting lines without allocating: skip to each newline.
    g.bench_function("skip_to_newline_1460", |b| {
        b.iter(|| {
            weft::mock::run(|_env| {
                let src = Chunked {
                    data: &data,
                    pos: Cell::new(0),
                    chunk: 1460,
                };
                let mut r = BufReader::new(src, 64 * 1024);
                let mut n = 0;
                while !r.at_end_of_input()? {
                    r.skip_while(|b| b != b'\n')?;
                    r.char('\n')?;
                    n += 1;
                }
                assert_eq!(n, count);
                Ok(())
            })
            .unwrap()
        })
    });
    g.finish();
}

fn http_head(c: &mut Criterion) {
    let head: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: example.invalid\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
    let data: Vec<u8> = head.repeat(4096);
    let mut g = c.benchmark_group("buf_read_http_head");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("request_line_and_headers", |b| {
        b.iter(|| {
            weft::mock::run(|_env| {
                let src = Chunked {
                    data: &data,
                    pos: Cell::new(0),
                    chunk: 1460,
                };
                let mut r = BufReader::new(src, 16 * 1024);
                let mut requests = 0;
                while !r.at_end_of_input()? {
                    let method = r.take_while1(|b| b != b' ')?;
                    r.char(' ')?;
                    let target = r.take_while1(|b| b != b' ')?;
                    r.char(' ')?;
                    r.string("HTTP/1.1")?;
                    r.string("\r\n")?;
                    let mut headers = 0;
                    loop {
                        let line = r.line()?;
                        if line.is_empty() {
                            break;
                        }
                        headers += 1;
                    }
                    std::hint::black_box((method, target, headers));
                    requests += 1;
                }
                assert_eq!(requests, 4096);
                Ok(())
            })
            .unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = lines, http_head
}
criterion_main!(benches);
