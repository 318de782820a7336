"""Build the CLIP tokenizer files (vocab.json, merges.txt) from open_clip's BPE file, or check ours.

    python tools/build_clip_tokenizer.py BPE_GZ --check resources/model-configs/sd15/tokenizer
    python tools/build_clip_tokenizer.py BPE_GZ --out FOLDER

BPE_GZ is ``open_clip/bpe_simple_vocab_16e6.txt.gz`` from the open_clip_torch wheel (MIT licence):
``pip download --no-deps open_clip_torch`` and unzip it. The vocabulary is built the way CLIP's
SimpleTokenizer builds it: the 256 byte characters, the same with ``</w>``, one entry per merge,
then ``<|startoftext|>`` and ``<|endoftext|>``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path


def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def build(bpe_gz: Path) -> tuple[dict[str, int], list[str]]:
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = lines[1: 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bpe_gz", type=Path)
    ap.add_argument("--check", type=Path, help="a tokenizer folder to compare with")
    ap.add_argument("--out", type=Path, help="write vocab.json and merges.txt here")
    args = ap.parse_args()
    vocab, merges = build(args.bpe_gz)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (args.out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    if args.check:
        theirs_vocab = json.loads((args.check / "vocab.json").read_text())
        lines = (args.check / "merges.txt").read_text().split("\n")
        theirs_merges = [l for l in lines[1:] if l] if lines[0].startswith("#version") else [l for l in lines if l]
        same = theirs_vocab == vocab and theirs_merges == merges
        print(f"{args.check}: {'identical' if same else 'DIFFERENT'} ({len(vocab)} tokens, {len(merges)} merges)")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
