"""``FidelityCallback``: the fidelity checks on a fixed set of validation users, logged as ``fidelity/*``.

At each validation end the recommender under evaluation encodes the same users (chosen once, seeded);
for each, an item is generated (the creator, when given, conditioned on the user state and a simulated
instruction of the held-out item; else the recommender's own top item is "generated" by retrieval) and
every check runs on it. Logged: ``fidelity/<check>/pass_rate``, ``fidelity/<check>/score`` (mean over
finite scores) and ``fidelity/pass_rate`` (all checks passed).

A creator lives in the item-embedding space it was trained in: pass one only when that space is the
evaluated model's (``trainer.validate`` of a fixed recommender, or a frozen item table); while the
recommender itself trains, leave ``creator=None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch

from generec.generative.evaluate import encode_rows, simulate_instructions
from generec.generative.guidance import Guidance
from generec.generative.pipeline import GeneratedItem
from generec.trust.fidelity import build_checks


class FidelityCallback(L.Callback):
    def __init__(
        self,
        checks: Mapping[str, Any] | None = None,
        users: int = 64,
        level: str = "keywords",
        creator: Any = None,
        encoder: Any = None,
        text_column: str = "title",
        neighbours: int = 10,
        seed: int = 0,
    ) -> None:
        from omegaconf import OmegaConf

        if checks is None:
            from generec.paths import CONF_DIR

            checks = OmegaConf.to_container(OmegaConf.load(f"{CONF_DIR}/fidelity/default.yaml"))
        self.cfg = dict(checks)
        self.users, self.level, self.creator, self.encoder = users, level, creator, encoder
        self.text_column, self.neighbours, self.seed = text_column, neighbours, seed
        self.history: list[dict[str, float]] = []
        self._fixed: dict[str, Any] | None = None

    def _setup(self, trainer) -> dict[str, Any]:
        """Users, histories, instructions and catalogue text embeddings, computed once."""
        if self._fixed is None:
            dm = trainer.datamodule
            if dm is None:
                raise RuntimeError("FidelityCallback needs trainer.fit/validate(model, datamodule=...)")
            if self.encoder is None:
                from generec.generative.instructor import SentenceEncoder

                self.encoder = SentenceEncoder()
            from generec.generative.instructor import sanitize_item_text

            texts = [sanitize_item_text(t) for t in dm.data.item_side[self.text_column]]
            rows = dm.eval_rows["valid"].tensors
            rng = np.random.default_rng(self.seed)
            sel = np.sort(
                rng.choice(len(rows["targets"]), min(self.users, len(rows["targets"])), replace=False)
            )
            targets = rows["targets"][torch.from_numpy(sel)]
            if targets.dim() > 1:
                targets = targets[:, 0]
            instructions = simulate_instructions(targets.tolist(), texts, self.level, seed=self.seed)
            self._fixed = {
                "inputs": rows["input_ids"][torch.from_numpy(sel)],
                "instructions": instructions,
                "instruction_emb": self.encoder.encode(instructions),
                "texts": texts,
                "text_emb": self.encoder.encode(texts),
            }
        return self._fixed

    @torch.no_grad()
    def evaluate(self, model, fixed: Mapping[str, Any]) -> dict[str, float]:
        """Generate for the fixed users, run every check, and aggregate: {metric: value}."""
        was_training = model.training
        model.eval()
        items = model.item_embeddings().detach().float().cpu()  # [I+1, d]
        states = encode_rows(model, fixed["inputs"])  # [U, d]
        if self.creator is not None:
            vectors = self.creator.sample(states, fixed["instruction_emb"], seed=self.seed)
            kind = "created"
        else:
            scores = states @ items.T
            scores[:, 0] = float("-inf")
            scores.scatter_(1, fixed["inputs"], float("-inf"))
            vectors, kind = None, "retrieved"
            top = scores.argmax(1)
        checks = build_checks(self.cfg, items, fixed["text_emb"], fixed["texts"], self.encoder)
        dist = torch.cdist(vectors, items) if vectors is not None else None
        results: dict[str, list] = {}
        for u in range(states.shape[0]):
            if vectors is not None:
                dist[u, 0] = float("inf")
                d, ids = torch.topk(dist[u], self.neighbours, largest=False)
                item = GeneratedItem(
                    kind,
                    float(states[u] @ vectors[u]),
                    vector=vectors[u].tolist(),
                    nearest=list(zip(ids.tolist(), d.tolist(), strict=True)),
                )
            else:
                item = GeneratedItem(kind, float(states[u] @ items[top[u]]), item_id=int(top[u]))
            g = Guidance(
                "create" if vectors is not None else "retrieve",
                states[u],
                fixed["instructions"][u],
                fixed["instruction_emb"][u] if fixed["instructions"][u] else None,
            )
            for r in (c(item, g) for c in checks):
                results.setdefault(r.name, []).append(r)
        model.train(was_training)
        return summarise(results)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = self.evaluate(pl_module, self._setup(trainer))
        self.history.append({"epoch": trainer.current_epoch, **metrics})
        for key, value in metrics.items():
            pl_module.log(key, value, sync_dist=False)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])


def summarise(results: Mapping[str, Sequence]) -> dict[str, float]:
    """{check: [CheckResult]} -> fidelity/<check>/pass_rate, fidelity/<check>/score, fidelity/pass_rate."""
    out: dict[str, float] = {}
    passed_all = None
    for name, rs in results.items():
        passed = np.array([r.passed for r in rs], bool)
        scores = np.array([r.score for r in rs], float)
        out[f"fidelity/{name}/pass_rate"] = float(passed.mean())
        finite = scores[np.isfinite(scores)]
        if finite.size:
            out[f"fidelity/{name}/score"] = float(finite.mean())
        passed_all = passed if passed_all is None else passed_all & passed
    if passed_all is not None:
        out["fidelity/pass_rate"] = float(passed_all.mean())
    return out
