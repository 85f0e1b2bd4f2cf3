"""``ray.data.llm``'s vLLM engine stage, keeping every completion of a request (``completions``).

Voting@k and k proofs are one request with ``n = k``: vLLM schedules its k samples together on one
prefill, and Ray Data moves, converts and checkpoints one row instead of k. The library's own extension
point is the engine stage's UDF class (``StatefulStage.fn``); this subclass wraps the engine wrapper's
single-request coroutine to see the whole ``RequestOutput`` and adds its completions to the row that the
library builds. Imported only where an engine pool starts (it imports vLLM).
"""

from __future__ import annotations

import uuid
from typing import Any

from ray.llm._internal.batch.stages.vllm_engine_stage import vLLMEngineStageUDF
from vllm.sampling_params import RequestOutputKind

from gram_ray.judging.completions import COMPLETIONS, encode


class AllCompletionsUDF(vLLMEngineStageUDF):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._finished: dict[int, list] = {}  # request id -> its completions, until its row is built
        generate = self.llm._generate_async

        async def generate_and_keep(request: Any) -> Any:
            # final outputs only: a streamed n > 1 request yields each sample as it moves, and the chunk
            # that says "finished" holds only the samples that moved last; the final output holds all n
            if hasattr(request.params, "output_kind"):
                request.params.output_kind = RequestOutputKind.FINAL_ONLY
            output = await generate(request)
            self._finished[request.request_id] = output.outputs
            return output

        self.llm._generate_async = generate_and_keep

    async def _generate_with_error_handling(self, row: dict[str, Any], batch_uuid: uuid.UUID) -> dict[str, Any]:
        out = await super()._generate_with_error_handling(row, batch_uuid)
        out[COMPLETIONS] = encode(self._finished.pop(out["request_id"], ()))
        return out
