"""The reward server: FastAPI in front of vLLM's async engine, speaking OpenRLHF's remote reward protocol.

Endpoints:

* ``POST /get_reward`` - ``{"query": [...], "prompts": [...], "labels": [...]}`` (OpenRLHF's
  ``--remote_rm_url`` client; ``query`` is prompt + response, ``labels`` the reference responses) ->
  ``{"rewards": [...], "scores": [...], "extra_logs": {...}}``. Reward = GRAM eq. 3, P(response beats
  reference) in [0, 1].
* ``POST /rationale`` - ``{"items": [{"prompt", "response_a", "response_b"}], "votes": k}`` -> the
  reasoning judge's rationales, verdicts, vote and P(A) for each pair.
* ``POST /preferences`` - ``{"items": [{"prompt", "response_a", "response_b"}]}`` -> ``{"p_a": [...]}``:
  the reward judge's P(A) for each ordered pair, one presentation order each (the caller asks both
  orders when it wants eq. 3). What group rewards (``apply.group_rewards``) and ``apply.rl_client`` use.
* ``GET /health`` - 200 when the engine is up (no auth, for load balancers).

Concurrent requests share engine batches: a micro-batching queue (``apply.batching``) collects the
judge prompts of every request that arrives within ``batch_wait_ms`` (up to ``max_batch_prompts``) and
sends them to vLLM together, ``max_batches_in_flight`` batches at a time. So an RL step's hundreds of
concurrent one-sample calls are judged as a few large batches, not refused.

Requests are bounded: body size (413), items and characters per request (413), malformed JSON (400) or
fields (422, also text with lone surrogates, which no tokenizer takes), bearer token (401) when
``api_key_env`` names a set variable, ``max_pending_prompts`` judge prompts admitted and unanswered
across requests (429 beyond, with Retry-After) and ``request_timeout_s`` (504).

With ``policy_tokenizer`` the prompts are the policy's chat-templated text (as OpenRLHF sends them); the
judge gets the user turn inside it (``apply.policy_chat``) and the response without the policy's
special tokens.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gram_ray.apply.batching import Busy, MicroBatcher
from gram_ray.apply.judges import JudgeCore, Judgement
from gram_ray.apply.policy_chat import ChatUnwrapper
from gram_ray.apply.ranking import PairItem
from gram_ray.config import ServeConfig
from gram_ray.data.records import UnreadableJSON, is_utf8_encodable, load_json
from gram_ray.judging.engine import llm_kwargs
from gram_ray.prompts.verdicts import eq3


class RewardRequest(BaseModel):
    """OpenRLHF's remote reward payload."""

    model_config = ConfigDict(extra="forbid")
    query: list[str] = Field(min_length=1)
    prompts: list[str]
    labels: list[str] | None = None

    def size(self) -> int:
        return len(self.query)

    def texts(self) -> list[str]:
        return [*self.query, *self.prompts, *(self.labels or [])]


class PairIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str
    response_a: str
    response_b: str


class PreferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[PairIn] = Field(min_length=1)

    def size(self) -> int:
        return len(self.items)

    def texts(self) -> list[str]:
        return [t for i in self.items for t in (i.prompt, i.response_a, i.response_b)]


class RationaleRequest(PreferenceRequest):
    votes: int | None = Field(None, ge=1, le=64, description="k samples per pair; the server default when unset")


class AsyncJudge:
    """``JudgeCore`` on a ``vllm.AsyncLLM`` behind a ``MicroBatcher``: one call's items are checked and
    tokenized on their own (a bad item fails only its request), then judged in a batch with other calls'."""

    def __init__(self, engine: Any, core: JudgeCore, batcher: MicroBatcher):
        self.engine, self.core, self.batcher = engine, core, batcher

    async def _one(self, prompt_ids: list[int], params: Any) -> Judgement:
        from vllm import TokensPrompt

        final = None
        async for out in self.engine.generate(TokensPrompt(prompt_token_ids=prompt_ids), params,
                                              f"judge-{uuid.uuid4().hex}"):
            final = out
        return self.core.read(final)

    async def run_batch(self, prompts: list[list[int]], votes: int | None) -> list[Judgement | BaseException]:
        """One engine batch: every prompt is in flight at once, so the engine schedules them together."""
        from vllm.sampling_params import RequestOutputKind

        params = self.core.sampling_params(votes)
        params.output_kind = RequestOutputKind.FINAL_ONLY
        return list(await asyncio.gather(*(self._one(ids, params) for ids in prompts), return_exceptions=True))

    async def judge(self, items: Sequence[PairItem], votes: int | None = None) -> list[Judgement]:
        try:  # bad settings or an overlong prompt are refused before any request reaches the engine
            self.core.sampling_params(votes)
            prompts = [self.core.prompt_ids(item) for item in items]
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        try:
            return await self.batcher.submit(prompts, (self, votes))
        except Busy as exc:
            raise HTTPException(429, f"server busy: {exc}; retry later", headers={"Retry-After": "1"}) from None


def strip_ends(text: str, strings: Sequence[str]) -> str:
    """Remove any of ``strings`` (special-token text such as padding and EOS) and whitespace from both ends."""
    previous = None
    while previous != text:
        previous = text
        text = text.strip()
        for s in strings:
            if s:
                text = text.removeprefix(s).removesuffix(s)
    return text


def response_of(query: str, prompt: str, strings: Sequence[str]) -> str:
    """The response part of an OpenRLHF query (prompt + response, possibly padded)."""
    query, prompt = strip_ends(query, strings), strip_ends(prompt, strings)
    at = query.find(prompt)
    if at < 0:
        raise ValueError("query does not contain its prompt")
    return strip_ends(query[at + len(prompt):], strings)


class RewardService:
    """The engines and the judging logic behind the HTTP layer."""

    def __init__(self, cfg: ServeConfig, engine: Any, policy: Any | None = None):
        self.cfg, self.engine, self.policy = cfg, engine, policy
        tokenizer, max_len = engine.get_tokenizer(), cfg.engine.max_model_len

        async def run_batch(prompts: list[list[int]], key: tuple[AsyncJudge, int | None]) -> list[Any]:
            judge, votes = key
            return await judge.run_batch(prompts, votes)

        # one queue for both judges: they share the engine, its batches and the bound on waiting prompts
        self.batcher = MicroBatcher(run_batch, cfg.max_batch_prompts, cfg.batch_wait_ms / 1000,
                                    cfg.max_pending_prompts, cfg.max_batches_in_flight)
        self.reward_judge = AsyncJudge(engine, JudgeCore(tokenizer, cfg.kind, cfg.judge, max_len), self.batcher)
        self.rationale_judge = AsyncJudge(engine, JudgeCore(tokenizer, "reasoning", cfg.judge, max_len), self.batcher)
        self.unwrapper = ChatUnwrapper.load(cfg.policy_tokenizer) if cfg.policy_tokenizer else None
        self.strip_strings = [*cfg.strip_strings, *(self.unwrapper.special_strings if self.unwrapper else [])]

    async def references(self, req: RewardRequest) -> list[str]:
        if self.cfg.reference == "labels":
            if req.labels is None or any(not label.strip() for label in req.labels):
                raise HTTPException(422, "every item needs a reference response in 'labels' "
                                         "(or run the server with reference: policy)")
            return req.labels
        from vllm import SamplingParams, TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(temperature=0.0, max_tokens=self.cfg.policy_max_tokens,
                                output_kind=RequestOutputKind.FINAL_ONLY)
        tokenizer = self.policy.get_tokenizer()

        async def greedy(prompt: str) -> str:
            # tokenized as the RL client did (OpenRLHF: no special tokens added), so a templated prompt
            # does not get a second BOS
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            final = None
            async for out in self.policy.generate(TokensPrompt(prompt_token_ids=ids), params,
                                                  f"policy-{uuid.uuid4().hex}"):
                final = out
            return final.outputs[0].text

        return list(await asyncio.gather(*(greedy(p) for p in req.prompts)))

    async def get_reward(self, req: RewardRequest) -> dict[str, Any]:
        if len(req.prompts) != len(req.query) or (req.labels is not None and len(req.labels) != len(req.query)):
            raise HTTPException(422, "query, prompts and labels must have the same length")
        try:
            responses = [response_of(q, p, self.strip_strings) for q, p in zip(req.query, req.prompts, strict=True)]
            questions = [self.unwrapper.question(p) for p in req.prompts] if self.unwrapper else req.prompts
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        references = await self.references(req)
        items = [(q, r, ref) for q, r, ref in zip(questions, responses, references, strict=True)]
        if self.cfg.both_orders:
            items += [(p, ref, r) for p, r, ref in items]
        judged = await self.reward_judge.judge(items)
        n = len(responses)
        p_ab = [j.p_a for j in judged[:n]]
        p_ba = [j.p_a for j in judged[n:]] if self.cfg.both_orders else []
        rewards = [eq3(a, b) for a, b in zip(p_ab, p_ba, strict=True)] if self.cfg.both_orders else p_ab
        logs: dict[str, Any] = {"p_response_first": p_ab, **({"p_reference_first": p_ba} if p_ba else {})}
        if self.cfg.reference == "policy":
            logs["references"] = references  # the policy's greedy outputs the responses were judged against
        return {"rewards": rewards, "scores": rewards, "extra_logs": logs}

    async def preferences(self, req: PreferenceRequest) -> dict[str, Any]:
        judged = await self.reward_judge.judge([(i.prompt, i.response_a, i.response_b) for i in req.items])
        return {"p_a": [j.p_a for j in judged]}

    async def rationale(self, req: RationaleRequest) -> dict[str, Any]:
        judged = await self.rationale_judge.judge([(i.prompt, i.response_a, i.response_b) for i in req.items],
                                                  votes=req.votes)
        return {"results": [
            {"rationales": list(j.texts), "verdicts": list(j.verdicts), "answer": j.answer, "p_a": j.p_a,
             "votes": {"A": j.votes_a, "B": j.votes_b, "none": j.votes_none}}
            for j in judged
        ]}


def _check_texts(cfg: ServeConfig, count: int, texts: list[str]) -> None:
    """Limits (413), and text the tokenizer cannot take: JSON may escape lone surrogates (422)."""
    if count > cfg.max_items:
        raise HTTPException(413, f"{count} items in one request; the limit is {cfg.max_items}")
    longest = max((len(t) for t in texts), default=0)
    if longest > cfg.max_chars:
        raise HTTPException(413, f"a text field has {longest} characters; the limit is {cfg.max_chars}")
    if not all(is_utf8_encodable(t) for t in texts):
        raise HTTPException(422, "a text field is not valid Unicode (a lone surrogate such as \\ud800)")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body over {limit} bytes")
    return bytes(body)


def _parse(model: type[BaseModel], body: bytes) -> Any:
    try:
        raw = load_json(body)
    except UnreadableJSON as exc:
        raise HTTPException(400, f"body is not valid JSON: {exc.detail}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:10]]
        raise HTTPException(422, problems) from None


def create_app(cfg: ServeConfig) -> FastAPI:
    """The app; its engines start in the lifespan (before the first request is accepted) and stop with it."""
    token = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
    state: dict[str, RewardService] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engines = start_engines(cfg)
        state["service"] = RewardService(cfg, *engines)
        try:
            yield
        finally:
            await state["service"].batcher.close()
            for engine in engines:
                if engine is not None:
                    engine.shutdown()

    app = FastAPI(title="gram-ray reward server", lifespan=lifespan)

    def authorize(request: Request) -> None:
        if not token:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    async def run(coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, cfg.request_timeout_s)
        except TimeoutError:
            raise HTTPException(504, f"judging took longer than {cfg.request_timeout_s} s") from None

    @app.get("/health")
    async def health() -> JSONResponse:
        svc = state.get("service")
        if svc is None or getattr(svc.engine, "errored", False):
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "model": cfg.engine.model, "kind": cfg.kind,
                             "template": cfg.judge.template, "pending_prompts": svc.batcher.pending})

    async def handle(request: Request, model: type[RewardRequest | PreferenceRequest], method: str) -> JSONResponse:
        authorize(request)
        req = _parse(model, await _read_body(request, cfg.max_body_bytes))
        _check_texts(cfg, req.size(), req.texts())
        return JSONResponse(await run(getattr(state["service"], method)(req)))

    @app.post("/get_reward")
    async def get_reward(request: Request) -> JSONResponse:
        return await handle(request, RewardRequest, "get_reward")

    @app.post("/preferences")
    async def preferences(request: Request) -> JSONResponse:
        return await handle(request, PreferenceRequest, "preferences")

    @app.post("/rationale")
    async def rationale(request: Request) -> JSONResponse:
        return await handle(request, RationaleRequest, "rationale")

    return app


def start_engines(cfg: ServeConfig) -> list[Any]:
    """The judge's ``AsyncLLM`` and, for ``reference: policy``, the policy's (else None)."""
    from vllm import AsyncEngineArgs, AsyncLLMEngine

    def start(engine_cfg: Any) -> Any:
        return AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**llm_kwargs(engine_cfg)))

    judge = start(cfg.engine)
    return [judge, start(cfg.policy) if cfg.reference == "policy" else None]


def serve(cfg: ServeConfig) -> None:
    """Run the server until interrupted (``gram-ray serve``)."""
    import uvicorn

    uvicorn.run(create_app(cfg), host=cfg.host, port=cfg.port, log_level="info")
