//! Micro-benchmarks of the work on every message's path: encoding a message
//! for an `a[...]` frame (JSON plus the SockJS escape pass) and parsing a
//! client's payload.
//!
//! Run: `cargo bench --bench codec --features fuzzing` (the feature exposes
//! the internal functions; it adds nothing else).

use actix_sockjs::fuzzing::{encode_message, parse_messages};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

/// Messages of the kinds a chat or a game sends.
fn messages() -> Vec<(&'static str, String)> {
    vec![
        ("ascii 32 B", "hello, world: 0123456789abcdefgh".to_owned()),
        ("ascii 1 KiB", "x".repeat(1024)),
        ("json 1 KiB", r#"{"user":"ann","text":"hi \"there\"","n":[1,2,3]}"#.repeat(21)),
        ("escapes 1 KiB", "line\n\t\u{2028}\u{0}é😀<".repeat(64)),
    ]
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, msg) in messages() {
        group.throughput(Throughput::Bytes(msg.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &msg, |b, msg| {
            b.iter(|| encode_message(black_box(msg)));
        });
    }
    group.finish();
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let mut payloads: Vec<(&str, String)> = messages()
        .into_iter()
        .map(|(name, msg)| (name, serde_json::to_string(&[msg]).expect("json")))
        .collect();
    payloads.push((
        "10 x ascii 32 B",
        serde_json::to_string(&vec!["hello, world: 0123456789abcdefgh"; 10]).expect("json"),
    ));
    payloads.push(("surrogate escapes", r#"["\ud83d\ude00 \ud83d\ude00 \ud83d\ude00"]"#.to_owned()));
    for (name, body) in payloads {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| parse_messages(black_box(body.as_bytes()), false));
        });
    }
    group.finish();
}

criterion_group!(benches, encode, parse);
criterion_main!(benches);
