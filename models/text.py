"""Text side: CoOp's learnable prompt, a causal text encoder, hand-crafted template features."""

import functools
import warnings

import torch
import torch.nn as nn

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import clip
    from clip.simple_tokenizer import SimpleTokenizer

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")
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
    caller may pass sequences cut after the last EOS instead of the full 77 tokens.
    """

    def __init__(self, clip_model):
        super().__init__()
        self.resblocks = clip_model.transformer.resblocks
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection

    def forward(self, token_embeddings, eos_positions):
        """[N, S, D] embeddings and [N] EOS indices -> [N, E] features (not normalised)."""
        seq_len = token_embeddings.shape[1]
        x = token_embeddings + self.positional_embedding[:seq_len].to(token_embeddings.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        causal = torch.full((seq_len, seq_len), float("-inf"), device=x.device).triu_(1)
        causal = causal.to(x.dtype)
        for block in self.resblocks:
            h = block.ln_1(x)
            x = x + block.attn(h, h, h, need_weights=False, attn_mask=causal)[0]
            x = x + block.mlp(block.ln_2(x))
        eos = x[eos_positions, torch.arange(x.shape[1], device=x.device)]
        return self.ln_final(eos) @ self.text_projection


def truncate_after_eos(token_ids):
    """Token ids cut after the last EOS of the batch, and each row's EOS index."""
    eos_positions = token_ids.argmax(dim=-1)  # EOS has the highest id in CLIP's vocabulary
    return token_ids[:, : int(eos_positions.max()) + 1], eos_positions


@torch.no_grad()
def encode_template(clip_model, classnames, template):
    """Normalised text features of ``template.format(name)`` for each class (the frozen T0)."""
    texts = [template.format(display_name(name)) for name in classnames]
    token_ids = tokenize_checked(
        texts, classnames, context_length(clip_model), f"The prompt from template {template!r}"
    )
    token_ids, eos_positions = truncate_after_eos(
        token_ids.to(clip_model.positional_embedding.device)
    )
    embeddings = clip_model.token_embedding(token_ids).to(clip_model.dtype)
    features = TextEncoder(clip_model)(embeddings, eos_positions)
    return features / features.norm(dim=-1, keepdim=True)


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


def initial_context(token_embedding, n_cls, n_ctx, ctx_init, csc, max_len):
    """Initial context vectors (float32) and the text that stands for them in the prompt.

    With ``ctx_init`` (underscores read as spaces) there is one vector per word, initialised
    from the words' token embeddings and shared by all classes, as in CoOp; otherwise
    ``n_ctx`` random vectors, per class with ``csc``.
    """
    device = token_embedding.weight.device
    words = display_name(ctx_init).split() if ctx_init else []
    if not words:
        if n_ctx < 1:
            raise ValueError(f"n_ctx must be at least 1 without ctx_init, got {n_ctx}")
        width = token_embedding.weight.shape[1]
        shape = (n_cls, n_ctx, width) if csc else (n_ctx, width)
        return torch.empty(shape, device=device).normal_(std=0.02), " ".join([PLACEHOLDER] * n_ctx)
    n_ctx = len(words)
    text = " ".join(words)
    if count_tokens(text) != n_ctx:
        warnings.warn(
            f"ctx_init {ctx_init!r} has {n_ctx} words but {count_tokens(text)} BPE tokens; as "
            f"in CoOp, its first {n_ctx} tokens become the learnable context and the others "
            "stay fixed in the prompt",
            stacklevel=3,
        )
    if csc:
        warnings.warn(
            "ctx_init is set, so the context is shared by all classes (as in CoOp); "
            "csc=True is ignored",
            stacklevel=3,
        )
    init_ids = clip.tokenize(text, context_length=max_len).to(device)
    with torch.no_grad():
        return token_embedding(init_ids)[0, 1 : 1 + n_ctx].float(), text


class PromptLearner(nn.Module):
    """CoOp's learnable text context around each class name.

    The prompt of class c is SOS, n context vectors and the class-name tokens (in the order
    given by ``class_token_position``), ".", EOS. ``ctx`` is [n_ctx, D] (shared) or
    [C, n_ctx, D] (class-specific), float32 whatever CLIP's dtype. ``forward`` returns the
    prompts' token embeddings, cut after the longest prompt's EOS, and the EOS positions.
    """

    def __init__(self, clip_model, classnames, n_ctx=16, ctx_init="", csc=False,
                 class_token_position="end"):  # fmt: skip
        super().__init__()
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(
                f"class_token_position must be one of {CLASS_TOKEN_POSITIONS}, "
                f"got {class_token_position!r}"
            )
        n_cls = len(classnames)
        if n_cls == 0:
            raise ValueError("at least one class name is needed")
        token_embedding = clip_model.token_embedding
        device = token_embedding.weight.device
        max_len = context_length(clip_model)

        ctx, prefix_text = initial_context(token_embedding, n_cls, n_ctx, ctx_init, csc, max_len)
        n_ctx = ctx.shape[-2]
        self.ctx = nn.Parameter(ctx)

        names = [display_name(name) for name in classnames]
        texts = [f"{prefix_text} {name}." for name in names]
        token_ids = tokenize_checked(
            texts, classnames, max_len, f"The prompt with {n_ctx} context tokens"
        ).to(device)
        seq_len = int(token_ids.argmax(dim=-1).max()) + 1
        layouts = [
            _prompt_layout(n_ctx, count_tokens(name), seq_len, class_token_position)
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
        # derived from class names and CLIP: not saved with the learnable state
        self.register_buffer("tokenized_prompts", token_ids, persistent=False)
        self.register_buffer("frozen_embeddings", frozen, persistent=False)
        self.register_buffer("ctx_slots", ctx_slots, persistent=False)
        self.register_buffer("eos_positions", prompt_ids.argmax(dim=-1), persistent=False)

    def forward(self):
        frozen = self.frozen_embeddings
        ctx = self.ctx.to(frozen.dtype)
        if ctx.dim() == 2:
            ctx = ctx.expand(self.n_cls, -1, -1)
        rows = torch.arange(self.n_cls, device=frozen.device)[:, None].expand_as(self.ctx_slots)
        return frozen.index_put((rows, self.ctx_slots), ctx), self.eos_positions

    @torch.no_grad()
    def upstream_buffers(self, token_embedding):
        """The original code's ``token_prefix`` and ``token_suffix`` for these class names."""
        embeddings = token_embedding(self.tokenized_prompts).to(self.frozen_embeddings.dtype)
        return {"token_prefix": embeddings[:, :1], "token_suffix": embeddings[:, 1 + self.n_ctx :]}


class LearnedTextFeatures(nn.Module):
    """Text features T of the learnable prompts, [C, E], not normalised.

    In eval mode without autograd the features are computed once and reused until the
    context changes (an optimiser step or a load bumps the parameter's version).
    """

    def __init__(self, clip_model, prompt_learner):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.encoder = TextEncoder(clip_model)
        self._cache = None

    def _cache_key(self):
        ctx = self.prompt_learner.ctx
        device_type = ctx.device.type
        autocast = torch.is_autocast_enabled(device_type)
        autocast_dtype = torch.get_autocast_dtype(device_type) if autocast else None
        return ctx.data_ptr(), ctx._version, ctx.device, autocast_dtype

    def forward(self):
        if self.training or torch.is_grad_enabled():
            self._cache = None
            return self.encoder(*self.prompt_learner())
        key = self._cache_key()
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.encoder(*self.prompt_learner()))
        return self._cache[1]
