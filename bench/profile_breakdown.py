#!/usr/bin/env python3
"""Where a pinned server's CPU per entry goes, from `perf script` output (bench/run.sh profile).

Each sample's call stack is put in the first category whose pattern matches one of its frames
(the order below matters: a signature check inside the handler counts as the signature check).
A category's share of the samples, times the process's CPU per entry measured from /proc over
the same load, is its CPU per entry. It is also given in signature checks: the category's samples
over the samples inside ECDSA_verify, which is robust to a noisy machine, since both are measured
in the same run of the same process.

usage: profile_breakdown.py OURS.script OURS_US_PER_ENTRY CEILING.script CEILING_US_PER_ENTRY
"""

import re
import sys
from collections import Counter

# (category, pattern over one frame's symbol). Generic parameters often name other crates
# (`Dispatcher<..., axum::Router>`), so crate patterns are anchored at the symbol's start.
CATEGORIES = [
    ("signature check (ECDSA verify)", r"ECDSA_verify"),
    ("public key parsing", r"VerificationKey::from|from_verifier_key"),
    ("entry validation, other", r"^<?rekor_entries::"),
    ("request decoding (body, protojson)", r"from_json|create_entry_request_from_json|read_body"),
    ("log pipeline (batching, tree, proofs, dedup cache)", r"^<?rekor_log::"),
    ("storage (journal, objects, checkpoint, fsyncs)", r"^<?rekor_storage::"),
    ("answer building and JSON encoding", r"transparency_log_entry|entry_json|^<?serde_json|^<?base64"),
    ("handler, other", r"AppState::create_entry|http::create_entry"),
    ("request guard and routing (axum, tower)", r"^<?rekor_server::http::(guard|HttpApi|HttpService)|^<?(axum|tower|tower_http)::"),
    ("HTTP/1 connections (hyper, sockets)", r"^<?(hyper|hyper_util)::|spawn_connection|rekor_bench_ceiling"),
    ("tokio runtime", r"^<?tokio::"),
    ("other", r"."),
]
COMPILED = [(name, re.compile(pattern)) for name, pattern in CATEGORIES]
ADDRESS = re.compile(r"^[0-9a-f]+ ")


def stacks(path):
    """Yields each sample's frames (symbols only), innermost first."""
    frames = []
    with open(path, encoding="utf-8", errors="replace") as script:
        for line in script:
            if line.startswith("\t"):
                frames.append(ADDRESS.sub("", line.strip()))
                continue
            if frames:
                yield frames
            frames = []
    if frames:
        yield frames


def categorize(path):
    counts = Counter()
    for frames in stacks(path):
        for name, pattern in COMPILED:
            if any(pattern.search(frame) for frame in frames):
                counts[name] += 1
                break
    return counts


def main(argv):
    if len(argv) != 5:
        sys.exit(__doc__)
    ours, ours_us = categorize(argv[1]), float(argv[2])
    ceiling, ceiling_us = categorize(argv[3]), float(argv[4])
    ours_total, ceiling_total = sum(ours.values()), sum(ceiling.values())
    if not ours_total or not ceiling_total:
        sys.exit("profile_breakdown: no samples (is perf allowed to read the processes?)")
    verify = CATEGORIES[0][0]
    print(f"samples: ours {ours_total}, ceiling {ceiling_total}")
    print(
        f"{'category':52s} {'ours us':>8s} {'ceiling us':>10s} {'ours - ceiling':>14s} {'ours, verifies':>14s}"
    )
    for name, _ in CATEGORIES:
        mine = ours[name] / ours_total * ours_us
        theirs = ceiling[name] / ceiling_total * ceiling_us
        in_verifies = ours[name] / ours[verify] if ours[verify] else float("nan")
        print(f"{name:52s} {mine:8.1f} {theirs:10.1f} {mine - theirs:14.1f} {in_verifies:14.3f}")
    ours_verifies = ours_total / ours[verify] if ours[verify] else float("nan")
    ceiling_verifies = ceiling_total / ceiling[verify] if ceiling[verify] else float("nan")
    print(
        f"{'total':52s} {ours_us:8.1f} {ceiling_us:10.1f} {ours_us - ceiling_us:14.1f} {ours_verifies:14.3f}"
    )
    print(
        f"profile total_in_verifies ours={ours_verifies:.3f} ceiling={ceiling_verifies:.3f} "
        f"ratio_bound={ceiling_verifies / ours_verifies:.2f}"
    )


if __name__ == "__main__":
    main(sys.argv)
