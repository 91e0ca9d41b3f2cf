"""Fixtures for the fidelity tests: one thread, no network, the offline MiniLM, a tiny random recommender."""

from __future__ import annotations

import socket

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_no_network(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def refuse(*args, **kwargs):
        raise AssertionError(f"a fidelity test tried to open a network connection: {args[:1]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def encoder():
    from generec.generative.instructor import SentenceEncoder

    return SentenceEncoder()


@pytest.fixture(scope="session")
def tiny_model():
    from generec.models.sasrec import SASRec

    torch.manual_seed(0)
    from fidelity_catalog import TITLES

    return SASRec(num_items=len(TITLES) - 1, max_len=8, hidden_size=8, num_heads=2, inner_size=16).eval()
