"""The judging core that the inference stages and the apply layer share (no Ray Data plan of its own).

* ``engine``: an ``EngineConfig`` as vLLM settings, a ``ray.data.llm`` processor or an in-process
  ``vllm.LLM``, one engine pass over request rows, and reading an output row's log-probabilities;
* ``requests``: rows to prompt token ids (chat template, length check), per-request seeds, the label
  tokens of a model, and why a pair row cannot be judged;
* ``voting``: sampled judgements to votes, a decision and a confidence, over one or two orders;
* ``proofs``: scoring and choosing among a prover's sampled proofs.
"""
