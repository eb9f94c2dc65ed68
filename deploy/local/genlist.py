#!/usr/bin/env python3
"""Writes a synthetic member list: one email per line, deterministic from --seed.

Used by the demo and the benchmarks. With --hashes FILE it also writes the MD5 of each
normalized email (the hashing contract) so a caller can query the matcher.
"""
import argparse
import hashlib
import random

DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "shop.example.io"]


def email(rng: random.Random, i: int) -> str:
    first = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 10)))
    return f"{first}.{i}@{rng.choice(DOMAINS)}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=int, default=0, help="first index (lists can overlap)")
    p.add_argument("--out", required=True)
    p.add_argument("--hashes", help="also write the hashes here, one per line")
    p.add_argument("--upper", action="store_true", help="mix upper case and whitespace in (normalization)")
    args = p.parse_args()
    rng = random.Random(args.seed)
    hashes = open(args.hashes, "w") if args.hashes else None
    with open(args.out, "w") as out:
        out.write("email\n")
        for i in range(args.start, args.start + args.count):
            e = email(rng, i)
            line = e
            if args.upper and i % 3 == 0:
                line = f"  {e.upper()} "
            out.write(line + "\n")
            if hashes:
                hashes.write(hashlib.md5(e.lower().encode()).hexdigest() + "\n")
    if hashes:
        hashes.close()


if __name__ == "__main__":
    main()
