"""Sections of a trained reward model in use: ranking and evaluation (``ApplyConfig``) and the reward
server (``ServeConfig``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gram_ray.config.inference import EngineConfig, JudgeConfig
from gram_ray.config.loading import Section


class RewardModelConfig(Section):
    """A generative reward model in use: its engine, what kind of judge it is, and how it is asked.

    ``kind: reasoning`` is GRAM-R2 (rationale then ``<answer>``; template ``gram_r2`` for the released
    checkpoints), ``kind: label`` is GRAM (one label token; template ``gram``). With ``both_orders`` every
    comparison is judged in both presentation orders and averaged (GRAM eq. 3).
    """

    engine: EngineConfig
    kind: Literal["reasoning", "label"] = Field("reasoning", description="reasoning = GRAM-R2, label = GRAM")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="template and sampling of the judge")
    both_orders: bool = Field(True, description="eq. 3: judge each pair in both orders and average")


class ApplyConfig(RewardModelConfig):
    """``gram-ray rank`` and ``gram-ray eval run``."""

    backend: Literal["offline", "ray"] = Field(
        "offline", description="offline = one in-process vLLM engine; ray = Ray Data engine pool (large sets)"
    )


class ServeConfig(RewardModelConfig):
    """The reward server: a vLLM engine behind FastAPI speaking OpenRLHF's remote reward protocol.

    The reward of a response is P(response beats reference) (GRAM eq. 3 with ``both_orders``), from the
    label token (``kind: label``) or the reasoning judge's answer token (``kind: reasoning``). The reference
    is the request's ``labels`` or, with ``reference: policy``, the greedy output of the ``policy`` engine.
    Limits keep one client from starving the others.
    """

    reference: Literal["labels", "policy"] = Field("labels", description="where the reference response comes from")
    policy: EngineConfig | None = Field(None, description="reference policy engine for reference: policy")
    policy_max_tokens: int = Field(512, ge=1, description="length cap of the policy's greedy reference")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    max_items: int = Field(256, ge=1, description="items per request; more get 413")
    max_chars: int = Field(65536, ge=1, description="characters per text field; longer get 413")
    max_batch_prompts: int = Field(256, ge=1, description="judge prompts sent to the engine as one batch")
    batch_wait_ms: float = Field(5.0, ge=0, description="how long a batch waits for more requests after its first")
    max_batches_in_flight: int = Field(2, ge=1, description="batches the engine works on at once")
    max_pending_prompts: int = Field(
        8192, ge=1, description="judge prompts admitted and not yet answered, across requests; beyond that 429 "
        "(a one-sample OpenRLHF call is 2 prompts with both_orders)"
    )
    request_timeout_s: float = Field(600.0, gt=0, description="a request running longer gets 504")
    api_key_env: str | None = Field(
        "GRAM_RAY_API_KEY", description="env var holding the bearer token; unset or empty = no auth"
    )
    policy_tokenizer: str | None = Field(
        None, description="the policy's tokenizer (folder or hub id): its chat template is unwrapped from "
        "OpenRLHF's prompts, so the judge sees the user's question, not the policy's markup"
    )
    strip_strings: list[str] = Field(
        default_factory=lambda: ["<|endoftext|>", "<|eot_id|>", "<|im_end|>", "</s>", "<pad>"],
        description="special-token text removed from the ends of OpenRLHF queries before judging",
    )

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        if self.reference == "policy" and self.policy is None:
            raise ValueError("reference: policy needs a policy engine section")
        return self
