"""The learned text prompt in words: for each learned context vector, the nearest tokens of
CLIP's vocabulary by Euclidean distance in its token-embedding space, as CoOp's
interpret_prompt.py reports them.

    python -m tools.interpret_prompt RUN [--topk 5] [--load-epoch N]

Works for runs whose method names a text prompt (``Method.text_prompt_module``: CoOp, CoCoOp,
VLP, DPT, IVLP, MaPLe and those built on them); a class-specific context (CSC) is listed per
class. CoCoOp's context is the one before each image's meta-net shift.
"""

import argparse
import sys

import torch
from clip.simple_tokenizer import SimpleTokenizer

from engine.cli import exit_status
from inference.cli import add_model_arguments, classifier_from_args


def learned_context(clf):
    """The run's learned text context, [n_ctx, D] or (class-specific) [C, n_ctx, D]: the
    ``ctx`` of the module that its method names as its text prompt."""
    learner = clf.trainer.method.learned_part(
        clf.model, "text_prompt_module", "a text context", "Prompt interpretations"
    )
    return learner.ctx.detach().float()


@torch.no_grad()
def nearest_tokens(ctx, token_embedding, k, tokenizer):
    """For each vector of ``ctx`` [n, D]: the ``k`` nearest rows of ``token_embedding``
    [V, D] as (token text, distance), nearest first."""
    distances = torch.cdist(ctx.float(), token_embedding.float())
    values, ids = distances.topk(k, dim=1, largest=False)
    decode = tokenizer.decode
    return [
        [(decode([i]).strip(), d) for i, d in zip(row_ids, row_d)]
        for row_ids, row_d in zip(ids.tolist(), values.tolist())
    ]


def interpret(clf, k=5):
    """(class name or None for a shared context, the nearest tokens of each context vector)
    pairs: one for a shared context, one per class for a class-specific one."""
    ctx = learned_context(clf)
    embedding = clf.model.clip.token_embedding.weight
    tokenizer = SimpleTokenizer()
    if ctx.dim() == 2:
        return [(None, nearest_tokens(ctx, embedding, k, tokenizer))]
    return [
        (name, nearest_tokens(c, embedding, k, tokenizer)) for name, c in zip(clf.classnames, ctx)
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_arguments(parser, run_positional=True)
    parser.add_argument("--topk", type=int, default=5, help="nearest tokens per vector")
    args = parser.parse_args(argv)
    if args.topk < 1:
        raise ValueError(f"--topk must be >= 1, got {args.topk}")
    clf = classifier_from_args(args)
    groups = interpret(clf, args.topk)
    n_ctx, width = learned_context(clf).shape[-2:]
    shared = "shared by all classes" if groups[0][0] is None else "one set per class"
    print(f"{args.model_dir} ({clf.cfg.TRAINER.NAME}, epoch {clf.trainer.epoch + 1}): "
          f"{n_ctx} context vectors of width {width}, {shared}")  # fmt: skip
    for name, rows in groups:
        if name is not None:
            print(f"class '{name}':")
        for position, row in enumerate(rows, 1):
            words = ", ".join(f"{token!r} {distance:.4f}" for token, distance in row)
            print(f"  context {position}: {words}")
        print(f"  nearest words in order: {' '.join(row[0][0] for row in rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
