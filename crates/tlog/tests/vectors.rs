//! RFC 6962 reference vectors (tests/testdata/rfc6962_vectors.txt) and proof-verification
//! rejections.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly on bad fixtures"
)]

use rekor_tlog::{
    Hash, LeafIndex, MemoryTree, ProofError, Prover, TileMap, TreeBuilder, TreeSize, empty_root,
    leaf_hash, verify_consistency, verify_inclusion,
};

#[derive(Default)]
struct Vectors {
    entries: Vec<Vec<u8>>,
    roots: Vec<(u64, Hash)>,
    inclusion: Vec<(u64, u64, Vec<Hash>)>,
    consistency: Vec<(u64, u64, Vec<Hash>)>,
    u16le_roots: Vec<(u64, Hash)>,
}

fn hex_bytes(text: &str) -> Vec<u8> {
    if text == "-" {
        return Vec::new();
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hashes(text: &str) -> Vec<Hash> {
    if text == "-" {
        return Vec::new();
    }
    text.split(',')
        .map(|h| Hash::from_hex(h).unwrap())
        .collect()
}

fn load() -> Vectors {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/testdata/rfc6962_vectors.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut v = Vectors::default();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let fields: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| fields[i].parse::<u64>().unwrap();
        match fields[0] {
            "leaf" => v.entries.push(hex_bytes(fields[1])),
            "root" => v.roots.push((num(1), Hash::from_hex(fields[2]).unwrap())),
            "inclusion" => v.inclusion.push((num(1), num(2), hashes(fields[3]))),
            "consistency" => v.consistency.push((num(1), num(2), hashes(fields[3]))),
            "u16le_root" => v
                .u16le_roots
                .push((num(1), Hash::from_hex(fields[2]).unwrap())),
            other => panic!("unknown vector kind {other}"),
        }
    }
    assert_eq!(v.entries.len(), 8);
    assert_eq!(v.roots.len(), 9);
    v
}

/// Builds the tree of the 8 reference entries three ways: tiles, memory, and per-size roots.
fn reference_tree(v: &Vectors) -> (TileMap, MemoryTree, Vec<Hash>) {
    let leaves: Vec<Hash> = v.entries.iter().map(|e| leaf_hash(e)).collect();
    let mut builder = TreeBuilder::new();
    let mut tiles = TileMap::new();
    let mut roots = vec![builder.root()];
    for leaf in &leaves {
        tiles.extend(builder.append(std::slice::from_ref(leaf)));
        roots.push(builder.root());
    }
    (tiles, leaves.into_iter().collect(), roots)
}

#[test]
fn reference_roots() {
    let v = load();
    let (tiles, memory, builder_roots) = reference_tree(&v);
    for (size, want) in &v.roots {
        let s = TreeSize::new(*size);
        let index = usize::try_from(*size).unwrap();
        assert_eq!(builder_roots[index], *want, "builder root {size}");
        assert_eq!(memory.root(s).unwrap(), *want, "memory root {size}");
        assert_eq!(
            Prover::new(s, &tiles).root().unwrap(),
            *want,
            "tile root {size}"
        );
    }
    assert_eq!(v.roots[0].1, empty_root());
}

#[test]
fn reference_inclusion_proofs() {
    let v = load();
    let (tiles, memory, roots) = reference_tree(&v);
    for (index, size, want) in &v.inclusion {
        let (i, s) = (LeafIndex::new(*index), TreeSize::new(*size));
        assert_eq!(&Prover::new(s, &tiles).inclusion_proof(i).unwrap(), want);
        assert_eq!(&memory.inclusion_proof(i, s).unwrap(), want);
        let leaf = leaf_hash(&v.entries[usize::try_from(*index).unwrap()]);
        let root = roots[usize::try_from(*size).unwrap()];
        verify_inclusion(&leaf, i, s, want, &root).unwrap();
    }
}

#[test]
fn reference_consistency_proofs() {
    let v = load();
    let (tiles, memory, roots) = reference_tree(&v);
    for (old, new, want) in &v.consistency {
        let (o, n) = (TreeSize::new(*old), TreeSize::new(*new));
        assert_eq!(&Prover::new(n, &tiles).consistency_proof(o).unwrap(), want);
        assert_eq!(&memory.consistency_proof(o, n).unwrap(), want);
        let old_root = roots[usize::try_from(*old).unwrap()];
        let new_root = roots[usize::try_from(*new).unwrap()];
        verify_consistency(o, n, &old_root, &new_root, want).unwrap();
    }
}

#[test]
fn golden_roots_of_larger_trees() {
    let v = load();
    let max = v.u16le_roots.iter().map(|(s, _)| *s).max().unwrap();
    let mut builder = TreeBuilder::new();
    let mut tiles = TileMap::new();
    let mut next = 0u64;
    for (size, want) in &v.u16le_roots {
        let leaves: Vec<Hash> = (next..*size)
            .map(|i| leaf_hash(&[i.to_le_bytes()[0], i.to_le_bytes()[1]]))
            .collect();
        tiles.extend(builder.append(&leaves));
        next = *size;
        assert_eq!(builder.root(), *want, "size {size}");
    }
    // The tiles of the largest tree also give every smaller root.
    for (size, want) in &v.u16le_roots {
        assert_eq!(
            rekor_tlog::tree_root(TreeSize::new(*size), &tiles).unwrap(),
            *want
        );
    }
    assert_eq!(builder.size().get(), max);
}

/// Every way to tamper with a valid inclusion proof must be rejected.
#[test]
fn inclusion_verification_rejections() {
    let v = load();
    let (_, _, roots) = reference_tree(&v);
    let some_hash = leaf_hash(b"some other hash");
    for (index, size, proof) in &v.inclusion {
        let leaf = leaf_hash(&v.entries[usize::try_from(*index).unwrap()]);
        let root = roots[usize::try_from(*size).unwrap()];
        let ok = |i: u64, s: u64, leaf: &Hash, proof: &[Hash], root: &Hash| {
            verify_inclusion(leaf, LeafIndex::new(i), TreeSize::new(s), proof, root)
        };
        ok(*index, *size, &leaf, proof, &root).unwrap();

        let mut bad: Vec<(String, Result<(), ProofError>)> = vec![
            (
                "wrong root".into(),
                ok(*index, *size, &leaf, proof, &some_hash),
            ),
            (
                "empty root".into(),
                ok(*index, *size, &leaf, proof, &empty_root()),
            ),
            (
                "wrong leaf".into(),
                ok(*index, *size, &some_hash, proof, &root),
            ),
            (
                "index + 1".into(),
                ok(index + 1, *size, &leaf, proof, &root),
            ),
            (
                "index ^ 2".into(),
                ok(index ^ 2, *size, &leaf, proof, &root),
            ),
            ("size * 2".into(), ok(*index, size * 2, &leaf, proof, &root)),
            ("size / 2".into(), ok(*index, size / 2, &leaf, proof, &root)),
            ("size 0".into(), ok(*index, 0, &leaf, proof, &root)),
            ("index = size".into(), ok(*size, *size, &leaf, proof, &root)),
            (
                "extended".into(),
                ok(
                    *index,
                    *size,
                    &leaf,
                    &[proof.clone(), vec![root]].concat(),
                    &root,
                ),
            ),
            (
                "prepended".into(),
                ok(
                    *index,
                    *size,
                    &leaf,
                    &[vec![root], proof.clone()].concat(),
                    &root,
                ),
            ),
        ];
        if *index > 0 {
            bad.push((
                "index - 1".into(),
                ok(index - 1, *size, &leaf, proof, &root),
            ));
        }
        if !proof.is_empty() {
            bad.push((
                "truncated".into(),
                ok(*index, *size, &leaf, &proof[..proof.len() - 1], &root),
            ));
        }
        for i in 0..proof.len() {
            let mut flipped = proof.clone();
            flipped[i].0[0] ^= 8;
            bad.push((
                format!("bit flip {i}"),
                ok(*index, *size, &leaf, &flipped, &root),
            ));
        }
        for (what, result) in bad {
            assert!(result.is_err(), "{what} accepted for ({index}, {size})");
        }
    }
}

#[test]
fn inclusion_rejection_kinds() {
    let v = load();
    let (_, _, roots) = reference_tree(&v);
    let (index, size, proof) = &v.inclusion[6]; // (5, 8)
    assert_eq!((*index, *size), (5, 8));
    let leaf = leaf_hash(&v.entries[5]);
    let root = roots[8];
    let check = |proof: &[Hash], i: u64, s: u64| {
        verify_inclusion(&leaf, LeafIndex::new(i), TreeSize::new(s), proof, &root)
    };
    assert!(matches!(
        check(proof, 5, 0),
        Err(ProofError::IndexOutOfRange { index: 5, size: 0 })
    ));
    assert!(matches!(
        check(proof, 8, 8),
        Err(ProofError::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        check(&proof[..2], 5, 8),
        Err(ProofError::ProofTooShort { len: 2 })
    ));
    assert!(matches!(
        check(&[proof.clone(), vec![leaf]].concat(), 5, 8),
        Err(ProofError::ProofTooLong { len: 4 })
    ));
    assert!(matches!(
        verify_inclusion(&leaf, LeafIndex::new(5), TreeSize::new(8), proof, &leaf),
        Err(ProofError::RootMismatch { expected, computed }) if expected == leaf && computed == root
    ));
    // A one-leaf tree: the root is the leaf hash and the proof is empty.
    verify_inclusion(&leaf, LeafIndex::new(0), TreeSize::new(1), &[], &leaf).unwrap();
    assert!(verify_inclusion(&leaf, LeafIndex::new(0), TreeSize::new(1), &[leaf], &leaf).is_err());
}

#[test]
fn consistency_verification_rejections() {
    let v = load();
    let (_, _, roots) = reference_tree(&v);
    let some_hash = leaf_hash(b"some other hash");
    for (old, new, proof) in &v.consistency {
        let old_root = roots[usize::try_from(*old).unwrap()];
        let new_root = roots[usize::try_from(*new).unwrap()];
        let check = |o: u64, n: u64, or: &Hash, nr: &Hash, p: &[Hash]| {
            verify_consistency(TreeSize::new(o), TreeSize::new(n), or, nr, p)
        };
        check(*old, *new, &old_root, &new_root, proof).unwrap();
        let mut bad = vec![
            (
                "wrong old root",
                check(*old, *new, &some_hash, &new_root, proof),
            ),
            (
                "wrong new root",
                check(*old, *new, &old_root, &some_hash, proof),
            ),
            ("old + 1", check(old + 1, *new, &old_root, &new_root, proof)),
            ("new * 2", check(*old, new * 2, &old_root, &new_root, proof)),
            (
                "old > new",
                check(*new + 1, *new, &old_root, &new_root, proof),
            ),
            (
                "extended",
                check(
                    *old,
                    *new,
                    &old_root,
                    &new_root,
                    &[proof.clone(), vec![new_root]].concat(),
                ),
            ),
            (
                "prepended",
                check(
                    *old,
                    *new,
                    &old_root,
                    &new_root,
                    &[vec![old_root], proof.clone()].concat(),
                ),
            ),
        ];
        if old_root != new_root {
            bad.push((
                "swapped roots",
                check(*old, *new, &new_root, &old_root, proof),
            ));
        }
        if *old > 1 {
            bad.push(("old - 1", check(old - 1, *new, &old_root, &new_root, proof)));
        }
        if !proof.is_empty() {
            bad.push((
                "truncated",
                check(*old, *new, &old_root, &new_root, &proof[..proof.len() - 1]),
            ));
            bad.push(("emptied", check(*old, *new, &old_root, &new_root, &[])));
        }
        let mut flips = Vec::new();
        for i in 0..proof.len() {
            let mut flipped = proof.clone();
            flipped[i].0[31] ^= 1;
            flips.push(check(*old, *new, &old_root, &new_root, &flipped));
        }
        for (what, result) in bad {
            assert!(result.is_err(), "{what} accepted for ({old}, {new})");
        }
        assert!(
            flips.iter().all(Result::is_err),
            "bit flip accepted for ({old}, {new})"
        );
    }
}

#[test]
fn consistency_trivial_cases() {
    let v = load();
    let (_, _, roots) = reference_tree(&v);
    let check = |o: u64, n: u64, or: &Hash, nr: &Hash, p: &[Hash]| {
        verify_consistency(TreeSize::new(o), TreeSize::new(n), or, nr, p)
    };
    let empty = empty_root();
    // Equal sizes: roots must match and the proof must be empty.
    check(8, 8, &roots[8], &roots[8], &[]).unwrap();
    assert!(matches!(
        check(8, 8, &roots[8], &roots[7], &[]),
        Err(ProofError::OldRootMismatch { .. })
    ));
    assert!(matches!(
        check(8, 8, &roots[8], &roots[8], &[roots[1]]),
        Err(ProofError::UnexpectedProof { len: 1 })
    ));
    // The empty tree is a prefix of everything, with an empty proof and the empty root.
    check(0, 8, &empty, &roots[8], &[]).unwrap();
    check(0, 0, &empty, &empty, &[]).unwrap();
    assert!(matches!(
        check(0, 8, &roots[1], &roots[8], &[]),
        Err(ProofError::OldRootMismatch { .. })
    ));
    assert!(matches!(
        check(0, 0, &empty, &roots[1], &[]),
        Err(ProofError::RootMismatch { .. })
    ));
    assert!(matches!(
        check(0, 8, &empty, &roots[8], &[roots[8]]),
        Err(ProofError::UnexpectedProof { len: 1 })
    ));
    // RFC 9162 step 1: a non-trivial proof cannot be empty, even when old is a power of two.
    assert!(matches!(
        check(4, 8, &roots[4], &roots[8], &[]),
        Err(ProofError::EmptyProof)
    ));
    assert!(matches!(
        check(3, 8, &roots[3], &roots[8], &[]),
        Err(ProofError::EmptyProof)
    ));
    assert!(matches!(
        check(9, 8, &roots[8], &roots[8], &[]),
        Err(ProofError::SizeOrder { old: 9, new: 8 })
    ));
}
