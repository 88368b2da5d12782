"""Do the dreams mix? Plain Gibbs chains against parallel tempering (models/tempering.py) on the
digits RBM of bench/rbm_quality.py (784 × 100, PCD-1, trained here with its recipe in ~20 s).

For each sampler: 500 chains, MMD² of their E[v | h] to the 297 held-out digits (Gaussian kernel,
median-heuristic bandwidth on the held-out set, biased V-statistic: `models.quality`), the digit
classes the chains show (label of the nearest training image), and how often a chain's class
changes between two looks 50 sweeps apart ("moves"). Rows:

* plain Gibbs from noise: `GibbsSampler`'s own start, draws of the visible biases;
* plain Gibbs from the data's base rate: the start alone, no tempering;
* plain Gibbs, both starts, for as long as the tempered run takes (equal wall time);
* parallel tempering (`make_sampler(..., base=base_from_data(train))`: 10 replicas, β from 1
  to 0.2, tempered toward the training set's base rate, chains started from its draws);
* parallel tempering toward the model's own visible biases (no data needed; it does not mix);
* plain Gibbs from training images (the figure that looks best and mixes least);
* all chains started at one training image (a 6): how far they spread (class entropy, nats;
  ln 10 = 2.30 for ten equal classes).

Read the MMD² with care: the chains' *equilibrium* is not the test set. For the digits RBM of
bench/rbm_quality.py as of 542a816 (batch 50, 250 epochs), two 30,000-sweep runs of 20 replicas
on a GPU, one from noise and one from training images, agree with each other (MMD² 0.0007) and
put its samples at MMD² ≈ 0.05 to the test digits: about 45 % 2s, 21 % 9s and no 3s. Chains that
stay near their start look better than that (from training images: 0.006 after 1,000 steps,
drifting to 0.022 after 300,000); chains that mix get there. `--reference N` runs such a
reference here (30,000 sweeps: 24 s on an H200, far too long for 2 CPU cores) and adds each
sampler's MMD² to it ("to ref").

On an H200 (`--device cuda --reference 30000`; the CLI's recipe, 218 epochs of batch 64), MMD²
to test / to the reference after 1,000 sweeps, and "moves":

    plain Gibbs from noise (visible biases)            0.094 / 0.104   0.11   228 of 500 chains 0s
    plain Gibbs from the data's base rate              0.016 / 0.046   0.12
    tempered, 10 replicas, the data's base rate        0.020 / 0.025   0.34   exchanges 0.22 … 0.03
    tempered toward the visible biases                 0.075 / 0.095   0.20
    plain, equal wall time (5,329 sweeps): noise       0.054 / 0.066;  base rate 0.017 / 0.040
    plain Gibbs from training images                   0.007 / 0.034   0.04
    all chains at one 6: plain / plain 5,329 / tempered: to ref 0.292 / 0.277 / 0.092,
    class entropy 0.11 / 0.32 / 1.75

On the 2-core CPU (one thread, a busy machine; the model trained here is another one): a
tempered sweep of 500 chains takes 25 ms, a plain one 2.5 ms. MMD² to test after 1,000 sweeps:
plain from noise 0.111 (268 of the 500 chains 7s; 0.088 after 10,228 sweeps, the tempered run's
wall time), from the base rate 0.017 (0.024), tempered 0.036 (moves 0.34 against 0.06 and 0.13),
tempered toward the visible biases 0.153; all chains at one 6: class entropy 0.04, 0.44 after
10,228 plain sweeps, 1.35 tempered.

    .venv/bin/python bench/mixing.py [--steps 1000] [--seed 0] [--chains 500] [--reference 0]
    .venv/bin/python bench/mixing.py --pcd 0,1,2,3     # PCD against PCD + tempering (below)

`--pcd SEEDS` instead compares PCD's negative phase with and without tempering (10 replicas,
`RBMTrainConfig.tempering`) at equal CPU time: bench/rbm_quality.py's former recipe (batch 50,
100 chains, 250 epochs of PCD-1 with centering), the tempered run given as many epochs as fit in
the plain run's CPU time, each scored by AIS (models.likelihood) and by the MMD² of its own
tempered samples. Figures: models/tempering.py.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from models.factory import make_sampler  # noqa: E402
from models.sampling import GibbsSampler  # noqa: E402
from models.tempering import TemperedSampler, base_from_data  # noqa: E402
from rbm_quality import digits_28, train_ours  # noqa: E402

try:
    from models.quality import median_bandwidth, mmd2
except ImportError:  # the scoring module is not there: the same estimate, inline
    def _sq(a, b):
        a, b = a.double(), b.double()
        return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.t()).clamp_min(0)

    def median_bandwidth(y):
        d = _sq(y, y)
        return d[~torch.eye(len(y), dtype=torch.bool)].sqrt().median().item()

    def mmd2(x, y, bandwidth):
        k = lambda a, b: torch.exp(-_sq(a, b) / (2 * bandwidth ** 2))  # noqa: E731
        return (k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()).item()


def digit_labels(seed: int) -> torch.Tensor:
    """The classes of `digits_28(seed)`'s training images (the same permutation)."""
    from sklearn.datasets import load_digits

    perm = torch.randperm(1797, generator=torch.Generator().manual_seed(seed))
    return torch.from_numpy(load_digits().target)[perm[:1500]]


class Scorer:
    def __init__(self, train_v, labels, test_v, reference=None):
        self.train, self.labels, self.test = train_v, labels, test_v
        self.bw = median_bandwidth(test_v)
        self.reference = reference

    def classes(self, x):
        return self.labels[torch.cdist(x.cpu().float(), self.train).argmin(1)]

    def line(self, name, x, seconds, sweeps, moves=None, extra=""):
        x = x.cpu().float()
        counts = torch.bincount(self.classes(x), minlength=10)
        ref = f"  to ref {mmd2(x, self.reference, self.bw):.4f}" if self.reference is not None else ""
        mv = f"  moves {moves:.2f}" if moves is not None else ""
        print(f"  {name:44s} {sweeps:6d} sweeps {seconds:6.1f} s  MMD² {mmd2(x, self.test, self.bw):.4f}{ref}{mv}"
              f"  classes {counts.tolist()}{extra}", flush=True)


def run(sampler, sweeps: int, scorer: Scorer, look: int = 50) -> tuple[float, float]:
    """Step `sweeps` sweeps; return (seconds, mean fraction of chains whose class changed
    between looks `look` sweeps apart). The looks are not timed."""
    seconds, changes, prev, done = 0.0, [], None, 0
    dev = sampler.visible.device
    while done < sweeps:
        k = min(look, sweeps - done)
        t = time.perf_counter()
        sampler.step(k)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t
        done += k
        c = scorer.classes(sampler.mean)
        if prev is not None:
            changes.append((c != prev).float().mean().item())
        prev = c
    return seconds, sum(changes) / max(1, len(changes))


def entropy(classes: torch.Tensor) -> float:
    q = torch.bincount(classes, minlength=10).float()
    q = q[q > 0] / q.sum()
    return float(-(q * q.log()).sum()) + 0.0  # no "-0.00"


def compare_pcd(seeds: list[int], replicas: int = 10) -> None:
    """PCD against PCD + parallel tempering at equal CPU time (see the module docstring)."""
    from models.likelihood import ais_log_partition, base_rate_bias, log_likelihood
    from models.rbm import BernoulliRBM, RBMConfig
    from models.rbm_trainer import RBMTrainConfig, RBMTrainer

    train, test = digits_28(0)
    te = test.reshape(len(test), -1).float() / 255
    bw = median_bandwidth(te)

    def trainer(seed: int, tempering: int, epochs: int) -> RBMTrainer:
        torch.manual_seed(seed)
        model = BernoulliRBM(RBMConfig(784, 100, (1, 28, 28)))
        cfg = RBMTrainConfig(epochs=epochs, batch_size=50, learning_rate=0.01, lr_schedule="linear", lr_final_fraction=0.02,
                             persistent=True, n_chains=100, k=1, momentum=0.5, final_momentum=0.9, momentum_epochs=5,
                             weight_decay=1e-3, centering=True, frame_every=0, seed=seed, tempering=tempering)
        return RBMTrainer(model, train, cfg, device="cpu")

    def epoch_seconds(tempering: int) -> float:  # CPU time of an epoch, after the first
        tr, t0 = trainer(99, tempering, 250), None
        run = tr.run()
        for _ in run:
            if tr.epoch >= 1 and t0 is None:
                t0, e0 = time.process_time(), tr.epoch
            if t0 is not None and tr.epoch >= e0 + 3:
                break
        run.close()
        return (time.process_time() - t0) / 3

    plain = epoch_seconds(0)
    budget = 250 * plain
    epochs = {0: 250, replicas: max(5, min(250, int(budget / epoch_seconds(replicas))))}
    print(f"PCD-1 on the digits, 250 epochs ≈ {budget:.1f} s of CPU; with {replicas} replicas {epochs[replicas]} epochs fit", flush=True)
    for seed in seeds:
        for tempering in (0, replicas):
            tr = trainer(seed, tempering, epochs[tempering])
            t0 = time.process_time()
            run = tr.run()
            for _ in run:
                if time.process_time() - t0 > 1.05 * budget:
                    run.close()
                    break
            m = tr.model
            ais = ais_log_partition(m, n_runs=100, base_visible_bias=base_rate_bias(m.images_to_visible(train)), seed=0)
            ll = log_likelihood(m, m.images_to_visible(test), ais.log_z).mean().item()
            s = TemperedSampler(m, n_chains=300, seed=0, base=base_from_data(m, train)).step(1000)
            name = f"PCD + {replicas} replicas" if tempering else "PCD"
            print(f"  seed {seed}  {name:16s} {tr.epoch:3d} epochs in {time.process_time() - t0:5.1f} s CPU  "
                  f"AIS test log-likelihood {ll:8.2f} nats  MMD² of its tempered samples {mmd2(s.mean, te, bw):.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000, help="sweeps of every sampler")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chains", type=int, default=500)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of RBM training at most")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reference", type=int, default=0, help="sweeps of a long 20-replica run to compare with (0: none)")
    ap.add_argument("--pcd", default="", help="seeds: compare PCD with PCD + tempering instead (e.g. 0,1,2,3)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.pcd:
        compare_pcd([int(x) for x in args.pcd.split(",")])
        return
    dev = torch.device(args.device)
    train, test = digits_28(args.seed)
    t0 = time.perf_counter()
    model, _, recipe = train_ours(train, args.budget, args.seed)  # bench/rbm_quality.py's recipe
    model.to(dev)
    print(f"digits RBM ({recipe}) trained in {time.perf_counter() - t0:.0f} s; {args.chains} chains, "
          f"{args.steps} sweeps, {args.threads} thread(s) on {dev}", flush=True)
    tv, te = model.images_to_visible(train).cpu(), model.images_to_visible(test).cpu()
    base = base_from_data(model, train)
    n, S = args.chains, args.steps
    reference = None
    if args.reference:
        t = time.perf_counter()
        ref = TemperedSampler(model, n_chains=n, seed=args.seed + 100, replicas=20, beta_min=0.1, base=base).step(args.reference)
        reference = ref.mean.cpu()
        print(f"  reference: 20 replicas, {args.reference} sweeps in {time.perf_counter() - t:.0f} s", flush=True)
    sc = Scorer(tv, digit_labels(args.seed), te, reference)
    print(f"  floor (training images vs test): MMD² {mmd2(tv[:n], te, sc.bw):.4f}; bandwidth {sc.bw:.2f}")

    g = torch.Generator(device=dev).manual_seed(args.seed)
    base_draws = torch.bernoulli(torch.sigmoid(base).expand(n, -1), generator=g)

    pt = make_sampler(model, n_chains=n, seed=args.seed, base=base)
    pt_s, pt_moves = run(pt, S, sc)
    rates = " ".join(f"{r:.2f}" for r in pt.swap_rates.tolist())

    plain = GibbsSampler(model, n_chains=n, seed=args.seed)
    s, mv = run(plain, S, sc)
    equal = max(S, int(S * pt_s / s))
    sc.line("plain Gibbs from noise (visible biases)", plain.mean, s, S, mv)
    plain_b = GibbsSampler(model, n_chains=n, seed=args.seed).reset(start=base_draws)
    s, mv = run(plain_b, S, sc)
    sc.line("plain Gibbs from the data's base rate", plain_b.mean, s, S, mv)
    sc.line(f"tempered, {pt.replicas} replicas, data base rate", pt.mean, pt_s, S, pt_moves, f"  exchanges {rates}")
    bias_pt = TemperedSampler(model, n_chains=n, seed=args.seed, replicas=pt.replicas)
    s, mv = run(bias_pt, S, sc)
    sc.line(f"tempered, {pt.replicas} replicas, visible biases", bias_pt.mean, s, S, mv)
    print(f"  equal wall time ({equal} plain sweeps):")
    plain.reset(start=None)
    s, mv = run(plain, equal, sc)
    sc.line("plain Gibbs from noise (visible biases)", plain.mean, s, equal, mv)
    plain_b.reset(start=base_draws)
    s, mv = run(plain_b, equal, sc)
    sc.line("plain Gibbs from the data's base rate", plain_b.mean, s, equal, mv)
    from_train = GibbsSampler(model, n_chains=n, seed=args.seed).reset(start=tv[torch.randperm(len(tv), generator=torch.Generator().manual_seed(1))[:n]].to(dev))
    s, mv = run(from_train, S, sc)
    sc.line("plain Gibbs from training images", from_train.mean, s, S, mv)

    six = int((sc.labels == 6).nonzero()[0])
    start = tv[six].to(dev).expand(n, -1).clone()
    print(f"  all chains started at one training image (a {sc.labels[six].item()}), class entropy (ln 10 = {math.log(10):.2f}):")
    for name, sampler, sweeps in (
        ("plain Gibbs", GibbsSampler(model, n_chains=n, seed=args.seed), S),
        ("plain Gibbs, equal wall time", GibbsSampler(model, n_chains=n, seed=args.seed), equal),
        ("tempered, data base rate", make_sampler(model, n_chains=n, seed=args.seed, base=base), S),
    ):
        sampler.reset(start=start)
        s, mv = run(sampler, sweeps, sc)
        sc.line(name, sampler.mean, s, sweeps, mv, f"  entropy {entropy(sc.classes(sampler.mean)):.2f}")


if __name__ == "__main__":
    main()
