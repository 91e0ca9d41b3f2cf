"""Trust audits (utility, fidelity, privacy, bias, robustness) and the trust index.

The fidelity checks for generated items (``generec.trust.fidelity`` and neighbours) need the generative
extra (diffusers, sentence-transformers), so they load on first use rather than with this package.
"""

import importlib

from generec.trust.audit import (
    AuditConfig,
    AuditData,
    AuditResult,
    audit_model,
    audit_with_compression,
    trust_block,
)
from generec.trust.callbacks import TrustAuditCallback
from generec.trust.index import TrustScore, absolute_index, ecdf_scores, trust_index
from generec.trust.metrics import DIMENSIONS, METRICS, TrustMetric

_LAZY = {
    "CheckResult": "generec.trust.fidelity",
    "FidelityCallback": "generec.trust.fidelity_callback",
    "InstructionFidelity": "generec.trust.fidelity",
    "Novelty": "generec.trust.fidelity",
    "PreferenceFidelity": "generec.trust.fidelity",
    "Safety": "generec.trust.fidelity",
    "Verifier": "generec.trust.fidelity",
    "as_pipeline_check": "generec.trust.fidelity",
    "build_checks": "generec.trust.fidelity",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'generec.trust' has no attribute {name!r}")


__all__ = [
    "DIMENSIONS",
    "METRICS",
    "AuditConfig",
    "AuditData",
    "AuditResult",
    "TrustAuditCallback",
    "TrustMetric",
    "TrustScore",
    "absolute_index",
    "audit_model",
    "audit_with_compression",
    "ecdf_scores",
    "trust_block",
    "trust_index",
]
