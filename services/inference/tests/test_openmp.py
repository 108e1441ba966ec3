"""OpenMP's wait policy for llama.cpp's threads: passive unless the user chose one."""

import os

from corral_inference.main import llama_factory
from corral_inference.openmp import prefer_passive_wait
from corral_inference.settings import InferenceSettings


def test_passive_waiting_is_the_default() -> None:
    environ: dict[str, str] = {}
    assert prefer_passive_wait(environ) == "PASSIVE" and environ == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_a_policy_the_user_set_is_kept() -> None:
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert prefer_passive_wait(environ) == "ACTIVE" and environ == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_the_inference_service_sets_it_when_it_makes_its_engine_factory(monkeypatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    llama_factory(InferenceSettings.from_env({}))
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
