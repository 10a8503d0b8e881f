"""`moe-train`: one run, in this process (no notebook), resumed from its checkpoint when
interrupted."""

from __future__ import annotations

import argparse
import sys

from moe_core.config.catalog import parse_overrides
from moe_core.config.run_config import build_config, split_arm
from moe_core.errors import UserInputError
from moe_core.record.metrics_json import is_finished


def main(argv: list[str] | None = None) -> int:
    """`moe-train`: exit 0 when the run finished, 1 when it did not, 2 for a user error,
    130 on Ctrl-C."""
    parser = argparse.ArgumentParser(prog="moe-train", description="Train one MoE run.")
    parser.add_argument("--experiment", "-e", default="baseline",
                        help="an experiment, or EXPERIMENT@CONDITION (see `moe-suite list`)")
    parser.add_argument("--condition", default="",
                        help="a condition of parameters/conditions to run the experiment under")
    parser.add_argument("--preset", "-p", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="run folder (default runs/single/<experiment>/seed<k>)")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="override a config key, e.g. --set dropout=0.2 (repeatable)")
    parser.add_argument("--force", action="store_true", help="retrain even if finished")
    parser.add_argument("--no-resume", action="store_true",
                        help="start over instead of resuming from the last checkpoint")
    args = parser.parse_args(argv)
    from moe_core.training.trainer import train

    try:
        experiment, condition = split_arm(args.experiment)
        cfg = build_config(experiment, args.preset, parse_overrides(args.overrides or []),
                           condition=condition or args.condition)
        out = args.out or f"runs/single/{cfg.arm}/seed{args.seed}"
        metrics = train(cfg, seed=args.seed, out_dir=out, force=args.force,
                        resume=not args.no_resume)
    except UserInputError as e:
        print(f"moe-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moe-train: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    best, final = metrics.get("best_metrics"), metrics.get("final_metrics")
    floor = metrics.get("bayes_floor")
    line = (f"{cfg.arm} seed {args.seed}: {metrics['status']} after {metrics['actual_steps']} "
            f"steps in {metrics['total_time_minutes'] * 60:.1f} s")
    if best and final:
        line += (f"; val loss best {best['val_loss']:.4f} @ {best['step']}, "
                 f"final {final['val_loss']:.4f}")
    else:
        line += "; no evaluation finished"
    if floor is not None:
        line += f"; Bayes floor {floor:.4f}"
    if metrics.get("error"):
        line += f"\n{metrics['error']}"
    print(f"{line}\nmetrics: {out}/metrics.json")
    return 0 if is_finished(metrics) else 1


if __name__ == "__main__":
    sys.exit(main())
