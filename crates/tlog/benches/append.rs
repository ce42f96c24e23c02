//! Benchmarks of the integrator's hot path: `TreeBuilder::append` of 256-leaf batches, and the
//! inclusion proofs for a whole batch through a `Prover`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rekor_tlog::{Hash, LeafIndex, Prover, TileMap, TreeBuilder, leaf_hash};

const BATCH: usize = 256;

fn batch(seed: u32) -> Vec<Hash> {
    (0..256u32)
        .map(|i| leaf_hash(&[seed.to_be_bytes(), i.to_be_bytes()].concat()))
        .collect()
}

/// A builder that already holds a million leaves, so appends run at a realistic depth.
fn grown_builder() -> TreeBuilder {
    let mut builder = TreeBuilder::new();
    let leaves = batch(0);
    for _ in 0..(1 << 20) / BATCH {
        builder.append(&leaves);
    }
    builder
}

fn append(c: &mut Criterion) {
    let leaves = batch(1);
    let mut group = c.benchmark_group("tree_builder");
    group.throughput(Throughput::Elements(256));

    let mut aligned = grown_builder();
    group.bench_function("append_256_aligned", |b| {
        b.iter(|| black_box(aligned.append(black_box(&leaves))));
    });

    // Batches that straddle tile boundaries: two level-0 tiles change per batch.
    let mut straddling = grown_builder();
    straddling.append(&leaves[..100]);
    group.bench_function("append_256_straddling", |b| {
        b.iter(|| black_box(straddling.append(black_box(&leaves))));
    });

    let mut with_root = grown_builder();
    group.bench_function("append_256_and_root", |b| {
        b.iter(|| {
            with_root.append(black_box(&leaves));
            black_box(with_root.root())
        });
    });
    group.finish();
}

fn prove_batch(c: &mut Criterion) {
    let leaves = batch(2);
    let mut group = c.benchmark_group("prover");
    group.throughput(Throughput::Elements(256));
    let mut builder = grown_builder();
    builder.append(&leaves[..100]);
    group.bench_function("append_256_prove_all", |b| {
        b.iter(|| {
            let start = builder.size().get();
            let changed = builder.append(black_box(&leaves));
            let tiles: TileMap = builder.edge_tiles().into_iter().chain(changed).collect();
            let mut prover = Prover::new(builder.size(), &tiles);
            let mut total = 0;
            for index in start..builder.size().get() {
                let proof = prover.inclusion_proof(LeafIndex::new(index));
                total += proof.map_or(0, |p| p.len());
            }
            black_box(total)
        });
    });
    group.finish();
}

criterion_group!(benches, append, prove_batch);
criterion_main!(benches);
