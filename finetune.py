"""Fine-tune UIE on prompt examples (the train/dev files doccano.py writes).

    python finetune.py --train_path data/train.txt --dev_path data/dev.txt \
        --init_from_ckpt checkpoint/model_best --save_dir checkpoint/run1 --device gpu

Writes a complete, Taskflow-loadable checkpoint to ``<save_dir>/model_best`` (best dev span F1), logging
step/total, loss, dev F1 and ETA. The loop itself is ``uie_backend/trainer.py``.

    python finetune.py --from_scratch --config recipes/uie-zh-small.json --corpora ../shared/data/ner \
        --save_dir models/uie-zh-small

trains the offline default model from public corpora instead (``uie_backend/offline_model/recipe.py``; resumable).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from uie_backend import trainer
from uie_backend.checkpoint import CheckpointError
from uie_backend.data import DataError, read_jsonl


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = trainer.TrainConfig(init_from=Path(), save_dir=Path())
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    if "--from_scratch" in (sys.argv[1:] if argv is None else argv):
        p.add_argument("--from_scratch", action="store_true", help="train a new model by a recipe (uie_backend/offline_model/recipe.py)")
        p.add_argument("--config", type=Path, required=True, help="the recipe, e.g. recipes/uie-zh-small.json")
        p.add_argument("--corpora", type=Path, required=True, help="folder of the public corpora (../shared/data/ner)")
        p.add_argument("--save_dir", type=Path, required=True, help="the finished model and its model card go here")
        p.add_argument("--workdir", type=Path, help="resumable training state (default: .recipe-work/<config name>)")
        return p.parse_args(argv)
    p.add_argument("--train_path", type=Path, required=True, help="UIE examples (JSON lines) to learn from")
    p.add_argument("--dev_path", type=Path, required=True, help="UIE examples to select the best checkpoint on")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--init_from_ckpt", type=Path, help="checkpoint directory to start from")
    source.add_argument("--model", type=Path, help="alias of --init_from_ckpt")
    p.add_argument("--save_dir", type=Path, required=True, help="model_best is written here")
    p.add_argument("--device", default="auto", help="cpu, gpu, gpu:N or auto (GPU when there is one)")
    p.add_argument("--max_seq_len", type=int, default=defaults.max_seq_len)
    p.add_argument("--batch_size", type=int, default=defaults.batch_size)
    p.add_argument("--learning_rate", type=float, default=defaults.learning_rate)
    p.add_argument("--num_epochs", type=int, default=defaults.num_epochs)
    p.add_argument("--max_steps", type=int, default=0, help="stop after this many steps (0: num_epochs decides)")
    p.add_argument("--warmup_proportion", type=float, default=defaults.warmup_proportion)
    p.add_argument("--weight_decay", type=float, default=defaults.weight_decay)
    p.add_argument("--valid_steps", type=int, default=0, help="steps between dev evaluations (0: every epoch)")
    p.add_argument("--early_stopping_patience", type=int, default=0,
                   help="stop after this many evaluations without improvement (0: never)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    if getattr(args, "from_scratch", False):
        from uie_backend.offline_model import recipe

        workdir = args.workdir or Path(".recipe-work") / args.config.stem
        summary = recipe.run(args.config, args.corpora, args.save_dir, workdir)
        print((args.save_dir / "README.md").read_text(encoding="utf-8"))
        return 0 if summary["steps"] else 1
    config = trainer.TrainConfig(
        init_from=args.init_from_ckpt or args.model, save_dir=args.save_dir, learning_rate=args.learning_rate,
        batch_size=args.batch_size, max_seq_len=args.max_seq_len, num_epochs=args.num_epochs,
        max_steps=args.max_steps, warmup_proportion=args.warmup_proportion, weight_decay=args.weight_decay,
        eval_every=args.valid_steps, early_stopping_patience=args.early_stopping_patience, seed=args.seed,
        device=args.device)
    try:
        result = trainer.train(config, read_jsonl(args.train_path), read_jsonl(args.dev_path))
    except (DataError, CheckpointError, ValueError, OSError) as exc:
        print(f"finetune.py: error: {exc}", file=sys.stderr)
        return 2
    if os.environ.get("PADDLE_TRAINER_ID", "0") != "0":  # one of several processes: the first one reports
        return 0
    if result.initial_report and result.best_report:
        print(f"dev F1: starting model {result.initial_report.overall.f1:.4f}, "
              f"new model {result.best_report.overall.f1:.4f}")
    print(f"saved {args.save_dir / 'model_best'} (version {result.version}) after {result.steps} steps, "
          f"{result.seconds:.0f} s")
    if result.best_report:
        print(result.best_report.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
