"""Convert a run directory of the original DPT code into this project's layout.

    python tools/convert_checkpoint.py ORIGINAL_RUN_DIR OUT_DIR [--epoch N]

Reads ``prompt_learner/``, ``image_encoder.transformer.ctx_learner/`` and
``image_encoder.transformer.extractor/`` (``model-best.pth.tar`` by default, as the original's
evaluation does, or ``model.pth.tar-N``), renames the parameters, casts them to float32 and writes
``OUT_DIR/{prompt_learner,visual_prompt,cavpt}/model.pth.tar-N``. ``train.py --eval-only
--model-dir`` also reads original run directories directly; converting makes them resumable
and loadable without the name mapping.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainers.original_checkpoints import convert_original_run, is_original_layout  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="run directory written by the original DPT code")
    parser.add_argument("dst", help="output run directory (our layout)")
    parser.add_argument("--epoch", type=int, help="load model.pth.tar-EPOCH instead of the best")
    args = parser.parse_args(argv)
    if not is_original_layout(args.src):
        parser.error(
            f"{args.src} has no image_encoder.transformer.* folder: not an original DPT/VLP/VPT "
            "run directory (CoOp run directories need no conversion)"
        )
    if os.path.exists(args.dst) and os.listdir(args.dst):
        parser.error(f"{args.dst} exists and is not empty; choose a new output directory")
    for path in convert_original_run(args.src, args.dst, args.epoch):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
