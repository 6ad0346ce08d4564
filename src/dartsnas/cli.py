"""The command line: ``dartsnas search|demo ...``. The only module that reads argv.

Every error a user can cause ends with one line on stderr (``dartsnas: error: ...``) and exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, NoReturn, get_args, get_origin, get_type_hints

from .config import SearchConfig, TrainConfig, load_config
from .demo import DEMO_SEARCH, DEMO_TRAIN_EPOCHS
from .engine.hypercheck import CHECK_FIELDS
from .errors import DartsNASError, StopRequested
from .genotype import DEFAULT_THRESHOLD, DERIVATION_RULES

logger = logging.getLogger("dartsnas")

SEARCH_EPILOG = """\
examples:
  dartsnas search --dataset cifar10 --data ~/data            # the paper's first-order search
  dartsnas search --dataset cifar10 --data ~/data --order 2  # second order (unrolled)
  dartsnas search --dataset imagefolder --data DIR --epochs 10 --layers 5 --init-channels 8
  dartsnas search --config runs/RUN/config.yaml              # repeat a run
  dartsnas search --resume runs/RUN --epochs 80              # continue (and extend) a run
"""

TRAIN_EPILOG = """\
examples:
  dartsnas train --genotype DARTS_V2 --dataset cifar10 --data ~/data       # the paper's CIFAR-10 training
  dartsnas train --from-run runs/SEARCH --dataset cifar100 --data ~/data   # transfer a searched cell
  dartsnas train --from-run runs/SEARCH --epoch 30 ...                     # the genotype after epoch 30
  dartsnas train --genotype g.json --recipe imagenet --data ~/imagenet     # the paper's ImageNet training
"""

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# The seed systems' spellings of our options (the original DARTS code and D-DARTS, pt.darts), accepted beside
# ours; every option also takes its underscore form (--batch_size for --batch-size).
SEED_ALIASES: dict[str, tuple[str, ...]] = {
    "lr": ("--learning_rate", "--w_lr"),
    "lr_min": ("--learning_rate_min", "--w_lr_min"),
    "momentum": ("--w_momentum",),
    "weight_decay": ("--w_weight_decay",),
    "grad_clip": ("--w_grad_clip",),
    "arch_lr": ("--arch_learning_rate", "--alpha_lr"),
    "arch_weight_decay": ("--alpha_weight_decay",),
    "threshold": ("--op_threshold",),
    "cutout": ("--cutout_length",),
    "genotype": ("--arch", "--genotype_file"),
}


def _option_strings(name: str) -> list[str]:
    """``--init-channels``, its underscore form ``--init_channels``, and the seed systems' names for it."""
    flags = [_flag(name)]
    if "_" in name:
        flags.append("--" + name)
    return flags + list(SEED_ALIASES.get(name, ()))


def _converter(hint: Any):
    """argparse ``type`` for a dataclass field's type hint (lists are comma-separated)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (list, tuple):
        inner = args[0]

        def parse_list(text: str):
            items = [t.strip() for t in text.split(",") if t.strip()]
            try:
                return [inner(t) for t in items]
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a comma-separated list of {inner.__name__}, "
                                                 f"got {text!r}") from None

        return parse_list
    if origin is not None:  # Optional[X]
        inner = [a for a in args if a is not type(None)][0]
        return _converter(inner)
    return hint


def add_config_flags(parser: argparse.ArgumentParser, cls: type, only: Collection[str] | None = None) -> None:
    """One flag per config field (``only``: these fields); defaults are suppressed so that only flags given on
    the line override."""
    hints = get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} options (also YAML keys for --config)")
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        hint = hints[f.name]
        meta = dict(f.metadata)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        help_text = meta.get("help", "")
        if "(default:" not in help_text:  # a help that says its default (the space's, ...) says it once
            help_text = f"{help_text} (default: {shown})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if hint is bool or (get_origin(hint) is not None and bool in get_args(hint)):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _converter(hint)
            if "choices" in meta:
                kwargs["choices"] = meta["choices"]
            if "metavar" in meta:
                kwargs["metavar"] = meta["metavar"]
            if "const" in meta:  # the flag alone means this value (--cutout: 16)
                kwargs.update(nargs="?", const=meta["const"])
        group.add_argument(*_option_strings(f.name), **kwargs)


_PATH_ERRORS = {errno.ENAMETOOLONG, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ELOOP}
MAX_MESSAGE = 600  # characters of an error line: user input echoed in it is cut, not printed by the megabyte


def _one_line(message: str) -> str:
    """One line, its middle cut when long: the problem comes first and the remedy last."""
    message = " ".join(str(message).split())
    if len(message) <= MAX_MESSAGE:
        return message
    return message[:MAX_MESSAGE * 2 // 3] + " [...] " + message[-MAX_MESSAGE // 3:]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (its default prints the whole usage first); subcommands inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dartsnas", description="Differentiable architecture search (DARTS).")
    parser.add_argument("--version", action="version", version=f"dartsnas {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    search = _add_run_command(sub, "search", "search a cell with DARTS", SEARCH_EPILOG, SearchConfig)
    search.add_argument("--unrolled", dest="order", action="store_const", const=2, default=argparse.SUPPRESS,
                        help="the original code's spelling of --order 2")
    search.add_argument("--arch_baseline", dest="space", type=lambda name: f"dartopti-{name.lower()}",
                        default=argparse.SUPPRESS, metavar="ResNet18|ResNet50|Xception",
                        help="D-DARTS' spelling of --space dartopti-resnet18 (-resnet50, -xception)")
    search.add_argument("--no_arch_metric", dest="arch_metric", action="store_false", default=argparse.SUPPRESS,
                        help="D-DARTS' spelling of --no-arch-metric")

    _add_run_command(sub, "train", "train the network built from a genotype", TRAIN_EPILOG, TrainConfig)

    evaluate = sub.add_parser("evaluate", help="test accuracy, parameters, multiply-adds and speed of a trained "
                                               "network")
    evaluate.add_argument("source", metavar="RUN_OR_CHECKPOINT", help="a training run directory or checkpoint file")
    evaluate.add_argument("--dataset", help="data set to test on (default: the one it was trained on)")
    evaluate.add_argument("--data", metavar="DIR", help="data folder (default: the training run's)")
    evaluate.add_argument("--batch-size", type=int, default=256, help="batch size (default: 256)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    evaluate.add_argument("--workers", type=int, default=2, help="data loader workers (default: 2)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.add_argument("--out", metavar="FILE", help="write the result here (default: in the run directory, "
                                                        "evaluation.json for its own test set, "
                                                        "evaluation_<dataset>[_<folder hash>].json for another)")
    _add_verbosity(evaluate)
    _add_ops_module(evaluate)

    derive = sub.add_parser("derive", help="derive the genotype of any epoch from a search run's alpha history")
    derive.add_argument("run", metavar="RUN", help="a search run directory, or a folder with the course project's "
                                                   "alpha_normal_history.npy and alpha_reduce_history.npy")
    derive.add_argument("--epoch", type=int, help="epoch (0: the initial alphas; default: the last)")
    derive.add_argument("--out", metavar="FILE", help="write the genotype as JSON")
    derive.add_argument("--rule", choices=list(DERIVATION_RULES),
                        help="derivation rule (default: the search's): top-k (DARTS), or D-DARTS' threshold-sparse, "
                             "threshold-edge, threshold-complete (see `dartsnas search --help`)")
    derive.add_argument("--threshold", type=float, help="gate threshold of the threshold rules (default: the "
                                                        f"search's, else {DEFAULT_THRESHOLD})")
    _add_verbosity(derive)
    _add_ops_module(derive)

    plot = sub.add_parser("plot", help="pictures of a run: cell diagrams, the search as a GIF, curves, alpha heat "
                                       "maps (or diagrams of a genotype file)")
    plot.add_argument("run", metavar="RUN|GENOTYPE", help="a search or training run directory, or a genotype "
                                                          "file or published name")
    plot.add_argument("--epochs", default="last", metavar="LIST",
                      help="epochs for diagrams and heat maps: last, all, or comma-separated numbers (default: last)")
    plot.add_argument("--out", metavar="DIR", help="where to write (default: RUN/pictures)")
    plot.add_argument("--only", default="diagrams,gif,curves,heatmaps,totals", metavar="LIST",
                      help="which pictures (default: diagrams,gif,curves,heatmaps,totals; also: mp4, and "
                           "tensorboard to rewrite RUN/tensorboard from the run's files)")
    _add_verbosity(plot)
    _add_ops_module(plot)

    report = sub.add_parser("report", help="a self-contained HTML page of a run (or a comparison of several): "
                                           "config, genotype, diagrams, curves, heat maps, GIF, size, accuracy")
    report.add_argument("runs", nargs="+", metavar="RUN", help="search or training run directories")
    report.add_argument("--out", metavar="FILE", help="the page (default: RUN/report.html for one run, "
                                                      "report.html here for several)")
    report.add_argument("--init-channels", type=int, help="C of the network a search's cells are counted in "
                                                          "(default: 36, or 48 with the ImageNet stem)")
    report.add_argument("--layers", type=int, help="cells of that network (default: 20, or 14 with the ImageNet "
                                                   "stem)")
    _add_verbosity(report)
    _add_ops_module(report)

    check = _with_examples(sub, "hypergrad-check", "how far the paper's finite-difference hypergradient is from the "
                           "exact one on your network and data",
                           "dartsnas hypergrad-check --dataset cifar10 --data ~/data --batch-size 16 --batches 5")
    check.add_argument("--config", metavar="FILE", help="a search's YAML config (flags override it)")
    check.add_argument("--batches", type=int, default=5, help="batch pairs compared (default: 5)")
    check.add_argument("--dtypes", default="float32,float64", help="float32, float64 or both (default: both)")
    check.add_argument("--radii", default="0.01", help="finite-difference radii R*||v||, comma-separated "
                                                       "(default: 0.01, the paper's)")
    check.add_argument("--weight-steps", type=int, default=1, help="weight steps taken first (default: 1)")
    check.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    _add_verbosity(check)
    add_config_flags(check, SearchConfig, only=CHECK_FIELDS)

    dist = sub.add_parser("distance", help="the distance between two architectures (genotype files, published "
                                           "names or runs): 0 when identical, one per differing edge or op")
    dist.add_argument("a", metavar="A", help="genotype file, published name, or run directory")
    dist.add_argument("b", metavar="B", help="genotype file, published name, or run directory")
    dist.add_argument("--epoch-a", type=int, help="with a search run: the genotype after this epoch")
    dist.add_argument("--epoch-b", type=int, help="with a search run: the genotype after this epoch")
    dist.add_argument("--json", action="store_true", help="print JSON")
    _add_verbosity(dist)
    _add_ops_module(dist)

    ops = sub.add_parser("ops", help="list the registered candidate ops with their cost (and the named spaces)")
    ops.add_argument("--channels", type=int, default=16, help="C the ops are built with (default: 16)")
    ops.add_argument("--size", type=int, default=32, help="input height and width (default: 32)")
    ops.add_argument("--markdown", action="store_true", help="a Markdown table")
    _add_verbosity(ops)
    _add_ops_module(ops)

    info = sub.add_parser("info", help="parameters and multiply-adds of a genotype's network, without training")
    info.add_argument("--genotype", required=True, metavar="PATH|NAME|TEXT",
                      help="genotype file, published name, or the genotype text itself (quoted)")
    info.add_argument("--dataset", default="cifar10", help="data set preset: classes, image size (default: "
                                                           "cifar10)")
    info.add_argument("--data", metavar="DIR", help="data folder (imagefolder/imagenet: to count classes)")
    info.add_argument("--init-channels", type=int, help="C (default: 36, or 48 with the ImageNet stem)")
    info.add_argument("--layers", type=int, help="cells (default: 20, or 14 with the ImageNet stem; a per-cell "
                                                 "genotype's own cells)")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_verbosity(info)
    _add_ops_module(info)

    geno = sub.add_parser("genotype",
                          help="read a genotype (JSON, classic text or published name), print or convert it")
    geno.add_argument("source", help="genotype file (JSON or classic text), FILE::NAME, a published name "
                                     "such as DARTS_V2, or the genotype text itself (quoted)")
    geno.add_argument("--format", choices=["json", "classic"], default="classic",
                      help="how to print it (default: classic)")
    geno.add_argument("--out", metavar="FILE", help="write it as a JSON genotype file")
    _add_verbosity(geno)
    _add_ops_module(geno)

    repeat = _with_examples(sub, "repeat", "several search seeds, each found cell trained several times, then mean "
                            "+- std and the genotypes' distances (resumable)",
                            "dartsnas repeat --search-config search.yaml --train-config train.yaml --seeds 4 "
                            "--retrains 2 --out runs/study", "dartsnas repeat --resume runs/study")
    repeat.add_argument("--search-config", metavar="FILE", help="YAML of search keys (default: the paper's search)")
    repeat.add_argument("--train-config", metavar="FILE",
                        help="YAML of training keys (default: the paper's training, on the search's data set)")
    repeat.add_argument("--seeds", default="0,1", help="search seeds, comma-separated, or a count N for 0..N-1 "
                                                       "(default: 0,1)")
    repeat.add_argument("--retrains", type=int, default=1,
                        help="trainings of each found cell, seeded from the training config's seed up "
                             "(default: 1)")
    repeat.add_argument("--out", metavar="DIR", help="the study's folder (default: runs/repeat-<dataset>-<time>)")
    repeat.add_argument("--resume", metavar="DIR", help="continue the study in DIR: finished runs are kept, "
                                                        "stopped ones resumed")
    _add_verbosity(repeat)

    demo = sub.add_parser("demo", help="a short search on the built-in digits data (no download)")
    demo.add_argument("--out", metavar="DIR", help="folder for the demo's runs (default: runs/demo-digits-<time>)")
    demo.add_argument("--epochs", type=int, default=DEMO_SEARCH["epochs"], help="search epochs (default: %(default)s)")
    demo.add_argument("--train-epochs", type=int, default=DEMO_TRAIN_EPOCHS,
                      help="training epochs of the found cell (default: %(default)s)")
    _add_verbosity(demo)
    return parser


def _with_examples(sub, name: str, help_text: str, *examples: str) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with example command lines."""
    return sub.add_parser(name, help=help_text, epilog="example:\n" + "".join(f"  {e}\n" for e in examples),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_run_command(sub, name: str, help_text: str, epilog: str, cls: type) -> argparse.ArgumentParser:
    """``search`` or ``train``: --config, --resume, verbosity, then one flag per config field."""
    p = sub.add_parser(name, help=help_text, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="YAML file of config keys (flags override it)")
    p.add_argument("--resume", metavar="RUN", help=f"continue the {name} run in RUN from its latest checkpoint")
    _add_verbosity(p)
    add_config_flags(p, cls)
    return p


def _add_ops_module(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ops-module", metavar="MODULE,...", type=lambda t: [m for m in t.split(",") if m.strip()],
                   help="import these modules (dotted names or .py files) first: their @register_op ops")


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the result")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _version() -> str:
    from . import __version__

    return __version__


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger("dartsnas")
    root.setLevel(logging.DEBUG)
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.propagate = False


def _overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def _main_process() -> bool:
    """Whether this is rank 0 (or the only process): the one that prints results."""
    return _rank() == "0"


def _rank() -> str:
    return os.environ.get("RANK", "0") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "0"


def _stopped(stop: StopRequested, kind: str) -> int:
    if not getattr(stop, "main_process", True):
        return 1
    world = int(os.environ.get("WORLD_SIZE", "1"))
    again = f"torchrun --nproc_per_node={world} -m dartsnas" if world > 1 else "dartsnas"
    print(f"dartsnas: {stop}; checkpoint saved, continue with: {again} {kind} --resume {stop.run_path}",
          file=sys.stderr)
    return 143 if stop.signame == "SIGTERM" else 130


# -- commands --------------------------------------------------------------------------------------------------
def cmd_search(args: argparse.Namespace) -> int:
    return _run(args, "search")


def cmd_train(args: argparse.Namespace) -> int:
    return _run(args, "train")


def _run(args: argparse.Namespace, kind: str) -> int:
    """A whole search or training through the library's run API; prints where it went and what it found."""
    from .runner import run_search, run_training

    run, cls = (run_search, SearchConfig) if kind == "search" else (run_training, TrainConfig)
    try:
        result = run(args.config, overrides=_overrides(args, cls), resume=args.resume)
    except StopRequested as stop:
        return _stopped(stop, kind)
    if not _main_process():
        return 0
    print(f"run directory: {result.run_dir.path}")
    if kind == "search":
        print(f"genotype: {result.run_dir.genotype_path}")
        print(result.genotype)
    else:
        print(f"test accuracy after {result.final['epochs']} epochs: {result.final['test_acc']:.2f}% "
              f"(top-5 {result.final['test_top5']:.2f}%)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from .engine.evaluate import evaluate_checkpoint, format_report

    report = evaluate_checkpoint(args.source, dataset=args.dataset, data=args.data, batch_size=args.batch_size,
                                 device=args.device, workers=args.workers, out=args.out)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def cmd_derive(args: argparse.Namespace) -> int:
    from .genotype import save_genotype
    from .runs import derive_from_course_history, derive_from_history, is_course_history

    threshold = args.threshold
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise DartsNASError(f"--threshold must be in (0, 1], got {threshold}")
    if is_course_history(args.run):  # the course project's alpha_*_history.npy files
        if args.rule not in (None, "top-k"):
            raise DartsNASError("the course project's histories derive by its own rule (top-k); leave out --rule")
        genotype, epoch = derive_from_course_history(args.run, args.epoch)
    else:
        if args.rule not in (None, "top-k") and threshold is None:
            from .config import read_yaml
            from .runs import RunDir

            threshold = read_yaml(RunDir.open(args.run).config_path).get("threshold") or DEFAULT_THRESHOLD
        genotype, epoch = derive_from_history(args.run, args.epoch, rule=args.rule, threshold=threshold)
    if args.out:
        save_genotype(genotype, args.out)
        logger.info("wrote %s", args.out)
    print(f"epoch {epoch}: {genotype}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from .engine.evaluate import format_report, genotype_info

    report = genotype_info(args.genotype, dataset=args.dataset, data=args.data, init_channels=args.init_channels,
                           layers=args.layers)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def cmd_genotype(args: argparse.Namespace) -> int:
    import json

    from .genotype import load_genotype, save_genotype

    genotype = load_genotype(args.source)
    if args.out:
        save_genotype(genotype, args.out)
        logger.info("wrote %s", args.out)
    if args.format == "json":
        print(json.dumps(genotype.to_dict(), indent=2))
    else:
        print(genotype)
    return 0


def cmd_repeat(args: argparse.Namespace) -> int:
    from .repeat import run_repeat, summary_markdown

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise DartsNASError(f"--seeds takes a count or comma-separated integers, got {args.seeds!r}") from None
    if len(seeds) == 1 and "," not in args.seeds:
        seeds = list(range(seeds[0]))
    summary = run_repeat(args.search_config, args.train_config, seeds=seeds, retrains=args.retrains, out=args.out,
                         resume=args.resume)
    print(summary_markdown(summary))
    print(f"study folder: {summary['folder']} (summary.md, summary.json, report.html)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole story on the built-in digits: search, train the found cell, evaluate it, draw and report."""
    from .demo import run_demo
    from .engine.evaluate import format_report

    done = run_demo(args.out, epochs=args.epochs, train_epochs=args.train_epochs)
    print(f"genotype: {done['genotype']}")
    print(format_report(done["evaluation"]))
    base = done["base"]
    print(f"demo runs: {base}/search, {base}/train (evaluation in {base}/train/evaluation.json, pictures in "
          f"each run's pictures/, TensorBoard events in each run's tensorboard/, report pages in each run's "
          f"report.html and {base}/report.html)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .viz.run_plots import plot_run

    files = plot_run(args.run, out=args.out, epochs=args.epochs, only=args.only)
    for f in files:
        print(f)
    return 0


def cmd_distance(args: argparse.Namespace) -> int:
    import json

    from .distance import architecture_distance, format_distance, resolve_architecture

    a = resolve_architecture(args.a, args.epoch_a)
    b = resolve_architecture(args.b, args.epoch_b)
    result = architecture_distance(a, b)
    print(json.dumps(result, indent=2) if args.json else format_distance(result, args.a, args.b))
    return 0


def cmd_hypergrad_check(args: argparse.Namespace) -> int:
    import json

    from .engine.common import resolve_device
    from .engine.hypercheck import format_check, hypergradient_check
    from .process import setup_process

    cfg = load_config(SearchConfig, args.config, _overrides(args, SearchConfig))
    setup_process(cfg.seed, deterministic=cfg.deterministic, device=resolve_device(cfg.device), threads=cfg.threads)
    try:
        radii = [float(r) for r in args.radii.split(",") if r.strip()]
    except ValueError:
        raise DartsNASError(f"--radii takes comma-separated numbers, got {args.radii!r}") from None
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    results = hypergradient_check(cfg, batches=args.batches, dtypes=dtypes, radii=radii,
                                  weight_steps=args.weight_steps)
    print(format_check(results))
    if args.json:
        from .fileio import atomic_write_bytes

        atomic_write_bytes(Path(args.json), json.dumps(results, indent=2).encode())
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    from .profile import op_costs
    from .space import SPACES

    rows = [(c["op"], f"{c['params']:,}", f"{c['macs']:,}", c["description"])
            for c in op_costs(args.channels, args.size)]
    head = ("op", "parameters", f"multiply-adds (C={args.channels}, {args.size}x{args.size}, stride 1)",
            "what it is")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join(" --- " if i == 0 or i == 3 else " ---: " for i in range(4)) + "|")
        for r in rows:
            print(f"| `{r[0]}` | {r[1]} | {r[2]} | {r[3]} |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        for r in (head, *rows):
            print("  ".join(str(x).ljust(w) if i in (0, 3) else str(x).rjust(w)
                            for i, (x, w) in enumerate(zip(r, widths))).rstrip())
    print()
    for name in SPACES.names():
        space = SPACES.get(name)
        print(f"space {name}: {', '.join(space.primitives)} ({space.nodes} nodes, multiplier {space.multiplier})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .viz.report import write_report

    print(write_report(args.runs, args.out, init_channels=args.init_channels, layers=args.layers))
    return 0


COMMANDS = {"distance": cmd_distance, "hypergrad-check": cmd_hypergrad_check, "ops": cmd_ops, "report": cmd_report,
            "plot": cmd_plot, "search": cmd_search, "train": cmd_train, "evaluate": cmd_evaluate, "derive": cmd_derive,
            "info": cmd_info, "genotype": cmd_genotype, "repeat": cmd_repeat, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None, *, _configured: bool = False) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not _configured:
        setup_logging(getattr(args, "quiet", False), getattr(args, "verbose", False))
    try:
        if getattr(args, "ops_module", None) and args.command not in ("search", "train"):
            from .plugins import load_ops_modules

            load_ops_modules(args.ops_module)
        return COMMANDS[args.command](args)
    except DartsNASError as e:
        rank = _rank()
        if getattr(args, "verbose", False) and e.__cause__ is not None:  # the user's code failed: its traceback
            import traceback

            traceback.print_exception(e.__cause__, file=sys.stderr)
        print(f"dartsnas: error: {'' if rank == '0' else f'[rank {rank}] '}{_one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in _PATH_ERRORS:
            raise
        # a path the system refuses (too long, not writable, under a file) that no check before it caught
        if getattr(args, "verbose", False):
            import traceback

            traceback.print_exception(e, file=sys.stderr)
        where = f": {e.filename}" if e.filename else ""
        print(f"dartsnas: error: {_one_line(f'{e.strerror or e}{where}; pass another path')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dartsnas: interrupted", file=sys.stderr)
        return 130
