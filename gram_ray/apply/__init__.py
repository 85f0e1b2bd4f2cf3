"""Using a trained reward model: pairwise judges on vLLM (offline, async, Ray Data), listwise ranking,
best-of-n and voting@k, rewards for RLHF against a reference, and the OpenRLHF-compatible reward server."""
