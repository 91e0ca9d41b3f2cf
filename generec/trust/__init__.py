"""Trust audits (utility, fidelity, privacy, bias, robustness) and the trust index."""

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
