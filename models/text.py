"""Text side: CoOp's learnable prompt, a causal text encoder with a prompt hook, hand-crafted
template features."""

import functools
import warnings

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from models.attention import run_block, run_block_shared_prefix
from models.prompting import NO_PROMPTS, PromptHook, run_blocks
from models.settings import PROMPT_INIT_STD, TextPromptCfg
from models.speed import Speed, block_function

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import clip
    from clip.simple_tokenizer import SimpleTokenizer

PLACEHOLDER = "X"  # stands for a learnable context token in the tokenised prompt


@functools.lru_cache(maxsize=1)
def _tokenizer():
    return SimpleTokenizer()


def display_name(classname):
    """Class names are written with underscores in split files; CLIP reads them as spaces."""
    return classname.replace("_", " ")


def count_tokens(text):
    """BPE tokens of ``text`` without SOS/EOS."""
    return len(_tokenizer().encode(text))


def tokenize_checked(texts, classnames, context_length, what):
    """``clip.tokenize`` with an error that names the class whose prompt does not fit."""
    for text, name in zip(texts, classnames):
        n_tokens = count_tokens(text) + 2  # SOS and EOS
        if n_tokens > context_length:
            raise ValueError(
                f"{what} for class '{name}' is {n_tokens} tokens long ({text!r}, including "
                f"SOS and EOS), more than CLIP's context length of {context_length} tokens; "
                "shorten the class name or use fewer context tokens"
            )
    return clip.tokenize(texts, context_length=context_length)


def context_length(clip_model):
    return clip_model.positional_embedding.shape[0]


class TextEncoder(nn.Module):
    """CLIP's text transformer on token embeddings, read at each sequence's EOS position.

    The transformer is causal, so the EOS feature depends only on the tokens up to EOS: the
    caller may pass sequences cut after the last EOS instead of the full 77 tokens, and
    leading tokens that all sequences share may be run once (``shared_prefix``).
    """

    def __init__(self, clip_model):
        super().__init__()
        self.resblocks = clip_model.transformer.resblocks
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.speed = Speed()

    def forward(self, token_embeddings, eos_positions, shared_prefix=0, prompts=NO_PROMPTS):
        """[N, S, D] embeddings and [N] EOS indices -> [N, E] features (not normalised).

        With ``shared_prefix`` = P > 0 the first P embeddings must be the same in every
        sequence (``prompts.input`` included) and every EOS at P or later; they are computed
        once (needs ``speed.sdpa``), and ``prompts.enter`` and ``leave`` see the sequences as
        a pair (that prefix [1, P, D], the rest [N, S - P, D]). Otherwise they see [N, S, D].
        """
        x = prompts.input(token_embeddings)
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        if shared_prefix:
            x = (x[:1, :shared_prefix], x[:, shared_prefix:])
            x = run_blocks(self.resblocks, x, self._shared_prefix_step, prompts)[1]
            eos_positions = eos_positions - shared_prefix
        else:  # batch first: no transposes around the attention kernel
            x = run_blocks(self.resblocks, x, self._step, prompts)
        eos = x[torch.arange(x.shape[0], device=x.device), eos_positions]
        return self.ln_final(eos) @ self.text_projection

    def _step(self, block, x):
        return self._call(run_block, block, x, causal=True, sdpa=self.speed.sdpa, batch_first=True)

    def _shared_prefix_step(self, block, x):
        return self._call(run_block_shared_prefix, block, *x)

    def _call(self, block_fn, *args, **kwargs):
        """``block_fn(*args, **kwargs)``, compiled and checkpointed as ``speed`` says."""
        block_fn = block_function(block_fn, self.speed)
        if self.speed.checkpoint_text and torch.is_grad_enabled():
            return checkpoint(block_fn, *args, use_reentrant=False, **kwargs)
        return block_fn(*args, **kwargs)


def place_tokens(x, slots, tokens):
    """``x`` [N, S, D] with ``tokens`` ([n, D] for every sequence, or [N, n, D]) written at
    ``slots`` [N, n] (out of place, so that gradients reach the tokens)."""
    if slots.shape[1] == 0:
        return x
    tokens = tokens.to(x.dtype)
    if tokens.dim() == 2:
        tokens = tokens.expand(slots.shape[0], -1, -1)
    rows = torch.arange(slots.shape[0], device=x.device)[:, None].expand_as(slots)
    return x.index_put((rows, slots), tokens)


class ContextPrompts(PromptHook):
    """Learnable text context as a prompt hook: ``ctx`` is placed at each sequence's context
    slots in the token embeddings (CoOp, CoCoOp); with deep prompts, before block i
    (1 <= i <= len(block_tokens)) the context tokens are replaced by ``block_tokens[i - 1]``
    (IVLP, MaPLe), and carried on as the blocks leave them after that.

    ctx: [n, D] for every sequence, or [N, n, D] one per sequence; ctx_slots: [N, n];
    block_tokens: [n, D] each.
    """

    def __init__(self, ctx, ctx_slots, block_tokens=()):
        self.ctx = ctx
        self.ctx_slots = ctx_slots
        self.block_tokens = list(block_tokens)

    def input(self, x):
        return place_tokens(x, self.ctx_slots, self.ctx)

    def enter(self, block, x):
        if not 1 <= block <= len(self.block_tokens):
            return x
        tokens = self.block_tokens[block - 1]
        if not isinstance(x, tuple):
            return place_tokens(x, self.ctx_slots, tokens)
        prefix, rest = x  # a slot in the shared prefix is at the same place in every sequence
        n_prefix = prefix.shape[1]
        in_prefix = self.ctx_slots[0] < n_prefix
        prefix = place_tokens(prefix, self.ctx_slots[:1, in_prefix], tokens[in_prefix])
        rest = place_tokens(rest, self.ctx_slots[:, ~in_prefix] - n_prefix, tokens[~in_prefix])
        return prefix, rest


def truncate_after_eos(token_ids):
    """Token ids cut after the last EOS of the batch, and each row's EOS index."""
    eos_positions = token_ids.argmax(dim=-1)  # EOS has the highest id in CLIP's vocabulary
    return token_ids[:, : int(eos_positions.max()) + 1], eos_positions


def encode_template(clip_model, classnames, template):
    """Normalised text features of ``template.format(name)`` for each class (the frozen T0)."""
    features = template_features(clip_model, classnames, template)
    return features / features.norm(dim=-1, keepdim=True)


@torch.no_grad()
def template_features(clip_model, classnames, template):
    """Text features of ``template.format(name)`` for each class, [C, E], not normalised."""
    texts = [template.format(display_name(name)) for name in classnames]
    token_ids = tokenize_checked(
        texts, classnames, context_length(clip_model), f"The prompt from template {template!r}"
    )
    token_ids, eos_positions = truncate_after_eos(
        token_ids.to(clip_model.positional_embedding.device)
    )
    embeddings = clip_model.token_embedding(token_ids).to(clip_model.dtype)
    return TextEncoder(clip_model)(embeddings, eos_positions)


def _prompt_layout(n_ctx, name_len, seq_len, position):
    """Where each token of the tokenised "SOS ctx... name... . EOS" goes for ``position``.

    Returns the source index for each output slot and the output slot of each context vector.
    """
    ctx = list(range(1, 1 + n_ctx))
    name = list(range(1 + n_ctx, 1 + n_ctx + name_len))
    rest = list(range(1 + n_ctx + name_len, seq_len))
    if position == "end":
        body = ctx + name
    elif position == "front":
        body = name + ctx
    else:  # middle: the first n_ctx // 2 context vectors, the name, the remaining ones
        half = n_ctx // 2
        body = ctx[:half] + name + ctx[half:]
    order = [0] + body + rest
    return order, [order.index(source) for source in ctx]


def initial_context(token_embedding, n_cls, settings, max_len):
    """Initial context vectors (float32) and the text that stands for them in the prompt.

    With ``settings.ctx_init`` (underscores read as spaces) there is one vector per word,
    initialised from the words' token embeddings and shared by all classes, as in CoOp;
    otherwise ``settings.n_ctx`` random vectors, per class with ``settings.csc``.
    """
    device = token_embedding.weight.device
    ctx_init = settings.ctx_init
    words = display_name(ctx_init).split() if ctx_init else []
    if not words:
        n_ctx = settings.n_ctx
        width = token_embedding.weight.shape[1]
        shape = (n_cls, n_ctx, width) if settings.csc else (n_ctx, width)
        ctx = torch.empty(shape, device=device).normal_(std=PROMPT_INIT_STD)
        return ctx, " ".join([PLACEHOLDER] * n_ctx)
    n_ctx = len(words)
    text = " ".join(words)
    if count_tokens(text) != n_ctx:
        warnings.warn(
            f"ctx_init {ctx_init!r} has {n_ctx} words but {count_tokens(text)} BPE tokens; as "
            f"in CoOp, its first {n_ctx} tokens become the learnable context and the others "
            "stay fixed in the prompt",
            stacklevel=3,
        )
    if settings.csc:
        warnings.warn(
            "ctx_init is set, so the context is shared by all classes (as in CoOp); "
            "csc=True is ignored",
            stacklevel=3,
        )
    init_ids = clip.tokenize(text, context_length=max_len).to(device)
    with torch.no_grad():
        return token_embedding(init_ids)[0, 1 : 1 + n_ctx].float(), text


def _shared_prefix_length(prompt_ids, ctx_slots, csc):
    """How many leading prompt tokens are the same for every class (at most up to the
    earliest EOS): equal token ids and, at context slots, the same shared context vector."""
    n_cls, seq_len = prompt_ids.shape
    ctx_index = torch.full((n_cls, seq_len), -1, device=prompt_ids.device)
    which_ctx = torch.arange(ctx_slots.shape[1], device=prompt_ids.device).expand_as(ctx_slots)
    ctx_index.scatter_(1, ctx_slots, which_ctx)
    same = (prompt_ids == prompt_ids[:1]).all(0) & (ctx_index == ctx_index[:1]).all(0)
    if csc:  # class-specific context vectors differ between classes
        same &= (ctx_index < 0).all(0)
    n_same = int(same.int().cumprod(0).sum())
    return min(n_same, int(prompt_ids.argmax(dim=-1).min()))


class PromptLearner(nn.Module):
    """CoOp's learnable text context around each class name.

    The prompt of class c is SOS, n context vectors and the class-name tokens (in the order
    given by ``class_token_position``), ".", EOS. ``ctx`` is [n_ctx, D] (shared) or
    [C, n_ctx, D] (class-specific), float32 whatever CLIP's dtype. ``forward`` returns the
    prompts' token embeddings, cut after the longest prompt's EOS (``truncated_length``)
    unless ``full_length``, and the EOS positions. The first ``shared_prefix_length`` tokens
    are the same in every class's prompt (SOS and a shared context before the class name).
    """

    # Derived from class names and CLIP: other codebases' checkpoints (CoOp, the original DPT)
    # carry them; they are rebuilt here, never loaded.
    derived_checkpoint_keys = ("token_prefix", "token_suffix")

    def __init__(self, clip_model, classnames, *, settings=TextPromptCfg(), context=None):
        super().__init__()
        class_token_position = settings.class_token_position
        n_cls = len(classnames)
        if n_cls == 0:
            raise ValueError("at least one class name is needed")
        token_embedding = clip_model.token_embedding
        device = token_embedding.weight.device
        max_len = context_length(clip_model)

        if context is None:
            context = initial_context(token_embedding, n_cls, settings, max_len)
        ctx, prefix_text = context
        n_ctx = ctx.shape[-2]
        self.ctx = nn.Parameter(ctx)

        names = [display_name(name) for name in classnames]
        texts = [f"{prefix_text} {name}." for name in names]
        token_ids = tokenize_checked(
            texts, classnames, max_len, f"The prompt with {n_ctx} context tokens"
        ).to(device)
        layouts = [
            _prompt_layout(n_ctx, count_tokens(name), max_len, class_token_position)
            for name in names
        ]
        orders = torch.tensor([order for order, _ in layouts], device=device)
        ctx_slots = torch.tensor([slots for _, slots in layouts], device=device)
        prompt_ids = token_ids.gather(1, orders)
        with torch.no_grad():
            frozen = token_embedding(prompt_ids).to(clip_model.dtype)

        self.n_cls = n_cls
        self.n_ctx = n_ctx
        self.csc = ctx.dim() == 3
        self.class_token_position = class_token_position
        eos_positions = prompt_ids.argmax(dim=-1)
        self.truncated_length = int(eos_positions.max()) + 1
        self.shared_prefix_length = _shared_prefix_length(prompt_ids, ctx_slots, self.csc)
        # derived from class names and CLIP: not saved with the learnable state
        self.register_buffer("tokenized_prompts", token_ids, persistent=False)
        self.register_buffer("frozen_embeddings", frozen, persistent=False)
        self.register_buffer("ctx_slots", ctx_slots, persistent=False)
        self.register_buffer("eos_positions", eos_positions, persistent=False)

    def frozen_prompts(self, full_length=False):
        """The prompts' token embeddings without the context (the placeholder or init words'
        embeddings at its slots), cut after the longest EOS unless ``full_length``, and the
        EOS positions."""
        frozen = self.frozen_embeddings
        return (frozen if full_length else frozen[:, : self.truncated_length]), self.eos_positions

    def prompts(self, block_tokens=()):
        """The context as a text-tower prompt hook, with deep ``block_tokens`` if any."""
        return ContextPrompts(self.ctx, self.ctx_slots, block_tokens)

    def forward(self, full_length=False):
        """The prompts' token embeddings with the context in place, and the EOS positions."""
        frozen, eos_positions = self.frozen_prompts(full_length)
        return self.prompts().input(frozen), eos_positions

    @torch.no_grad()
    def upstream_buffers(self, token_embedding):
        """The original code's ``token_prefix`` and ``token_suffix`` for these class names."""
        embeddings = token_embedding(self.tokenized_prompts).to(self.frozen_embeddings.dtype)
        return {"token_prefix": embeddings[:, :1], "token_suffix": embeddings[:, 1 + self.n_ctx :]}


class LearnedTextFeatures(nn.Module):
    """Text features T of the learnable prompts, [C, E], not normalised.

    ``deep_prompt`` (a ``models.prompting.DeepPrompt``, optional): its layer i replaces the
    context tokens before text block i + 1 (IVLP, MaPLe).

    In eval mode without autograd (and ``speed.cache_text``) the features are computed once
    and reused until a learnable input changes (an optimiser step or a load bumps a
    parameter's version): once per evaluation instead of once per batch.
    """

    def __init__(self, clip_model, prompt_learner, deep_prompt=None):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.deep_prompt = deep_prompt
        self.encoder = TextEncoder(clip_model)
        self.speed = Speed()
        self._cache = None

    def _features(self):
        learner = self.prompt_learner
        frozen, eos_positions = learner.frozen_prompts(full_length=not self.speed.truncate_text)
        deep = () if self.deep_prompt is None else self.deep_prompt.tokens.unbind(0)
        shared = learner.shared_prefix_length if self.speed.shared_text_prefix else 0
        return self.encoder(frozen, eos_positions, shared, learner.prompts(deep))

    def clear_cache(self):
        """Forget the cached features (the next evaluation computes them again)."""
        self._cache = None

    def _cache_key(self):
        """Every learnable input (which tensor, which version of it), device and autocast."""
        inputs = list(self.prompt_learner.parameters())
        if self.deep_prompt is not None:
            inputs += list(self.deep_prompt.parameters())
        device = inputs[0].device
        autocast = torch.is_autocast_enabled(device.type)
        autocast_dtype = torch.get_autocast_dtype(device.type) if autocast else None
        versions = tuple((p.data_ptr(), p._version) for p in inputs)
        return versions, device, autocast_dtype

    def forward(self):
        if self.training or torch.is_grad_enabled() or not self.speed.cache_text:
            self.clear_cache()
            return self._features()
        key = self._cache_key()
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._features())
        return self._cache[1]
