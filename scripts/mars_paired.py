"""Paired per-example comparison of two MARS evaluations of the same split file.

    python3 scripts/mars_paired.py EVAL_A EVAL_B

EVAL_* are `mrmkg eval --out` folders (predictions.jsonl in the split file's order, metrics.json). Prints, for
Hits@1/3/10, how many examples each run gets and the other does not with an exact two-sided McNemar p-value, and
the MRR difference B - A with its paired standard error: on one dev set, two runs a standard error apart
can still differ reliably example by example, or not at all."""
import json, math, sys
def load(d):
    return [json.loads(l) for l in open(f"{d}/predictions.jsonl")]
if len(sys.argv) != 3:
    sys.exit("usage: python3 scripts/mars_paired.py EVAL_A EVAL_B")
a, b = load(sys.argv[1]), load(sys.argv[2])
if [x["id"] for x in a] != [x["id"] for x in b]:
    sys.exit(f"{sys.argv[1]} and {sys.argv[2]}: predictions.jsonl list different examples (not the same split file?)")
n = len(a)
for name, d in (("A", sys.argv[1]), ("B", sys.argv[2])):
    m = json.load(open(f"{d}/metrics.json")); print(name, d, {k: round(m[k], 4) for k in ("hits@1", "hits@3", "hits@10", "mrr")})
for k in (1, 3, 10):
    ra = [x["rank"] <= k for x in a]; rb = [x["rank"] <= k for x in b]
    only_a = sum(p and not q for p, q in zip(ra, rb)); only_b = sum(q and not p for p, q in zip(ra, rb))
    m = only_a + only_b
    # exact two-sided McNemar (binomial, p=0.5)
    tail = sum(math.comb(m, i) for i in range(0, min(only_a, only_b) + 1)) / 2 ** m if m else 1.0
    print(f"hits@{k}: A {sum(ra)} B {sum(rb)} both {sum(p and q for p, q in zip(ra, rb))} only A {only_a} only B {only_b} McNemar p={min(1, 2 * tail):.3f}")
d = [1 / y["rank"] - 1 / x["rank"] for x, y in zip(a, b)]
mu = sum(d) / n; sd = math.sqrt(sum((v - mu) ** 2 for v in d) / (n - 1))
print(f"MRR B - A = {mu:+.4f} +- {sd / math.sqrt(n):.4f} (paired SE)")
