"""``generec audit results=<record.json | folder>``: audit trained runs and write reports beside their records.

Each record's checkpoint is reloaded with ``generec.predict.load_model`` and its data with the
record's own ``config.data``; the model and its compressed copies are audited, and the trust
index is ECDF-normalised across every candidate on the same dataset (all variants of all records
given), so a folder of runs is ranked together.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from generec.predict import load_model
from generec.results import atomic_write_text
from generec.trust.audit import AuditConfig, AuditData, AuditResult, audit_with_compression, trust_block
from generec.trust.report import write_report

log = logging.getLogger(__name__)
from generec.paths import CONF_DIR  # noqa: E402


def record_paths(results: str | Path) -> list[Path]:
    """A record file, or every ``*.json`` record directly in a folder."""
    path = Path(results)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json") if not p.name.startswith("."))
        if files:
            return files
    raise FileNotFoundError(f"results={results}: no results record (.json) there")


def _checkpoint(record: dict, record_path: Path) -> Path:
    ckpt = record.get("checkpoint")
    if not ckpt:
        raise ValueError(f"{record_path}: the record names no checkpoint (was the run saved?)")
    for candidate in (Path(ckpt), record_path.parent / ckpt, Path(record.get("output_dir", ".")) / ckpt):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{record_path}: checkpoint {ckpt} not found")


def _datamodule(record: dict, record_path: Path):
    data_cfg = (record.get("config") or {}).get("data")
    if not data_cfg:
        raise ValueError(f"{record_path}: the record has no config.data to rebuild the datamodule")
    datamodule = instantiate(OmegaConf.create(data_cfg))
    datamodule.setup("fit")
    expected = (record.get("dataset") or {}).get("fingerprint")
    if expected and expected != datamodule.data.fingerprint:
        raise ValueError(
            f"{record_path}: recorded dataset fingerprint {expected} != rebuilt {datamodule.data.fingerprint}"
        )
    return datamodule


# Data settings that only shape the training loader: runs that differ in them are evaluated on the
# same users, targets and histories, so they are audited (and ECDF-ranked) together.
TRAINING_ONLY_DATA_KEYS = frozenset(
    {
        "batch_size",
        "eval_batch_size",
        "protocol",
        "window_stride",
        "length_bucketing",
        "resident_device",
        "augment",
    }
)


def audit_data_key(fingerprint: str, data_cfg: Mapping) -> str:
    """Which candidates share audit data: the dataset fingerprint and the evaluation-relevant settings.

    The seed stays in the key unless the split is leave-one-out (the ComiRec user split is seeded).
    """
    dropped = set(TRAINING_ONLY_DATA_KEYS)
    if data_cfg.get("split", "loo") == "loo":
        dropped.add("seed")
    kept = {k: v for k, v in data_cfg.items() if k not in dropped}
    return f"{fingerprint}:{json.dumps(kept, sort_keys=True, default=str)}"


def audit_records(
    paths: list[Path],
    weights: Mapping[str, float] | None = None,
    audit: Mapping | None = None,
    write_record: bool = True,
) -> list[dict]:
    """Audits every record, writes ``<record>.trust.{md,html}`` and (optionally) ``record["trust"]``.

    Returns the records with their ``trust`` blocks.
    """
    cfg = AuditConfig.from_mapping(audit)
    audited: list[tuple[Path, dict, str, dict[str, AuditResult]]] = []  # (path, record, fingerprint, results)
    data_cache: dict[str, AuditData] = {}
    for path in paths:
        record = json.loads(path.read_text())
        model, _ = load_model(_checkpoint(record, path))
        datamodule = _datamodule(record, path)
        key = audit_data_key(datamodule.data.fingerprint, record["config"]["data"])
        if key not in data_cache:
            data_cache[key] = AuditData.from_datamodule(datamodule, cfg)
        log.info("auditing %s", path)
        audited.append((path, record, key, audit_with_compression(model, data_cache[key], cfg)))

    out = []
    for path, record, key, results in audited:
        # Candidates audited on the same data (fingerprint + evaluation settings) are ranked together.
        others = {
            f"{other['run_id']}:{name}": r.metrics
            for other_path, other, other_key, other_results in audited
            if other_path != path and other_key == key
            for name, r in other_results.items()
        }
        record["trust"] = trust_block(results, weights, "original", others)
        record["trust"]["audit"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}
        md, html_path = write_report(record["trust"], record, path.with_suffix(""))
        if write_record:
            atomic_write_text(path, json.dumps(record, indent=2))
        print(f"{path.name}: trust index {record['trust']['index']:.3f} -> {md} , {html_path}")
        out.append(record)
    return out


def main(argv: list[str] | None = None) -> int:
    """``generec audit results=<record or folder> [weights.bias=2] [audit.max_users=500] [write_record=false]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="audit", overrides=argv)
    plain = OmegaConf.to_container(cfg, resolve=True)
    audit_records(record_paths(plain["results"]), plain["weights"], plain["audit"], plain["write_record"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
