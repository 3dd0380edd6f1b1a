//! `make bench` part: the cost of reading `model` from OpenAI bodies of 1 KB,
//! 64 KB and 1 MB, against parsing the same body into a full JSON tree (what a
//! filter that materialises the document would pay), in the same run.

use std::hint::black_box;
use std::time::Instant;

use agentroute::openai::model_from_body;

fn body(size: usize) -> Vec<u8> {
    // Like a chat request with a long prompt: the model comes last, as many
    // clients serialise it, so the whole body is scanned.
    let head = r#"{"messages":[{"role":"user","content":""#;
    let tail = r#""}],"stream":false,"model":"gpt-demo"}"#;
    let filler = size.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(filler)).into_bytes()
}

/// Median nanoseconds per call over `rounds` timed batches.
fn time(rounds: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    println!("| body | read `model` (agentroute) | full JSON tree | ratio | throughput |");
    println!("|---:|---:|---:|---:|---:|");
    for (label, size, iters) in [
        ("1 KB", 1024, 20_000),
        ("64 KB", 65_536, 400),
        ("1 MB", 1_048_576, 25),
    ] {
        let b = body(size);
        assert_eq!(model_from_body(&b).as_deref(), Ok("gpt-demo"));
        let ours = time(9, iters, || {
            black_box(model_from_body(black_box(&b)).ok());
        });
        let full = time(9, iters, || {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(&b)).ok());
        });
        let gbps = size as f64 / ours;
        println!(
            "| {label} | {:.1} µs | {:.1} µs | {:.2}× faster | {gbps:.2} GB/s |",
            ours / 1000.0,
            full / 1000.0,
            full / ours
        );
    }
}
