"""A byte-level BPE tokenizer trained here, on the task's own text, so tiny models need no download.

A judge checks a response by quoting it from the prompt, and a 2-layer model copies a token by finding
the token before it (an induction head). So the pre-tokenizer keeps every number whole, with the space
before it, and a side name whole with its colon ("Response B: 72" -> "Response", " B:", " 72"): quoting B
is then one token copied after " B:". With digits split and ": " apart, the quote's first digit followed
" " after ":" after " A" or " B", which the demo's provers and judges mixed up in most of their rationales
(measured: 82 of 200 proofs passed denoising, 196 with whole numbers). The worked solution still adds
digit by digit, as written text. The reasoning tags are added tokens (kept whole, but not special) so they
survive ``skip_special_tokens`` decoding of generated text.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

# render([user, assistant]) == render([user], add_generation_prompt=True) + content + eos, so a trainer
# can split prompt and completion at the generation prompt and vLLM's chat path sees the same prompt.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' + message['content'] + eos_token }}"
    "{% elif message['role'] in ['system', 'user'] %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% else %}"
    "{{ raise_exception('unknown chat role: ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


# GPT-2's pre-tokenizer split (without its contractions), except that a word keeps the colon after it.
PIECES = r" ?[A-Za-z]+:?| ?\d+| ?[^\sA-Za-z\d]+|\s+(?!\S)|\s+"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 640) -> PreTrainedTokenizerFast:
    """Train on ``texts`` and wrap for transformers/vLLM (chat template, bos/eos/pad set)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PIECES), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=[BOS, EOS, PAD, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in TAG_TOKENS])
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
            ),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )
