"""`ssl-zoo <command> [key=value ...]`: one Hydra app per command (train, probe, generate, fill, icl,
embed-plot, serve), plus `compare`. Each command lives in its own module (run/train.py, commands/*.py);
this file only dispatches.

`python -m ssl_zoo ...` is the same. Config group choices are checked before Hydra starts, so that
a typo gets one line listing the valid names.
"""

import math
import os
import re
import sys
from functools import partial
from importlib import import_module
from pathlib import Path

from ssl_zoo import config_dir
from ssl_zoo.errors import UserError, one_line

USAGE = """usage: ssl-zoo <command> [key=value ...] [-m]

commands:
  train     pretrain a method, then probe it:  ssl-zoo train method=simclr data=shapes
  probe     re-probe a saved run:              ssl-zoo probe checkpoint=outputs/.../checkpoints/last.ckpt
  generate  continue a prompt with a GPT:      ssl-zoo generate checkpoint=... prompt="def main(" max_new_tokens=200
  fill      a BERT's candidates for [MASK]:   ssl-zoo fill checkpoint=... text="import [MASK]" top_k=5
  icl       in-context learning accuracy:     ssl-zoo icl checkpoint=... task=reverse shots=[0,1,4,16]
  embed-plot  t-SNE map of a run's features:   ssl-zoo embed-plot checkpoint=...  (beside the random-init encoder's)
  serve     a web page to try GPT and BERT:     ssl-zoo serve checkpoint=<gpt ckpt> checkpoint2=<bert ckpt> port=8000
  export    a model in another library's format: ssl-zoo export checkpoint=<gpt ckpt> format=hf out=DIR
  compare   leaderboard of results.json files: ssl-zoo compare outputs/ [--out DIR] [--plot]
  lm-eval   lm-evaluation-harness on a GPT:    ssl-zoo lm-eval --model ssl-zoo --model_args checkpoint=... --tasks ...

Every key of the config can be set on the command line (see conf/); -m sweeps comma-separated values.
"""
# command: (its config in conf/, "module:function" of its Hydra task)
HYDRA_COMMANDS = {
    "train": ("train", "ssl_zoo.cli:train_task"),
    "probe": ("probe", "ssl_zoo.commands.probe:run"),
    "generate": ("generate", "ssl_zoo.commands.generate:generate"),
    "fill": ("fill", "ssl_zoo.commands.generate:fill"),
    "icl": ("icl", "ssl_zoo.commands.icl:run"),
    "embed-plot": ("embed_plot", "ssl_zoo.commands.embed_plot:run"),
    "serve": ("serve", "ssl_zoo.commands.serve:run"),
    "export": ("export", "ssl_zoo.commands.export:run"),
}
CHECKS_GROUPS = ("train", "probe", "embed-plot")  # commands that take method=, data=, ...
TAKES_FREE_TEXT = ("generate", "fill", "icl")  # commands whose prompt= / text= is prose
GROUPS = ("method", "data", "model", "trainer", "probe", "logger", "experiment")
FREE_TEXT_KEYS = ("prompt", "text")
ADDED_KEYS = {"serve": r"checkpoint\d+"}  # keys a command takes with + (serve: a third model, +checkpoint3=...)
# keys of a shared group that a command leaves unread, and what it does read
UNREAD_KEYS = {"embed_plot": [(r"\+?probe\.(?!batch_size$).*", "embed-plot reads probe.batch_size only (to extract the features)")],
               "probe": [(r"probe\.enabled", "probe.enabled is read by train (whether a run is probed); the probe command always probes")]}

# keys read only in some settings: typed on the command line where they are not read, refused (they would be
# recorded in config.yaml and never used); (key, read given the config and the key's node, when it is read)
READ_ONLY_WITH = ((r"data\.vocab_size", lambda cfg, node: node.get("tokenizer") == "bpe",
                   "data.tokenizer=bpe (a char vocabulary is the text's own characters)"),
                  (r"data\.test_fraction", lambda cfg, node: node.get("test_path") is None and node.get("name") != "fsdd",
                   "no data.test_path (and not data=fsdd, whose split is its own)"),
                  (r"data\.crop_scale", lambda cfg, node: bool(node.get("pretrain_crops")), "data.pretrain_crops=2 (crops cut by the loader)"),
                  (r"method\.(views|view_a|view_b)\.crop_scale", lambda cfg, node: not (cfg.get("data") or {}).get("pretrain_crops"),
                   "data the views crop (data=image_folder crops in its loader: set data.crop_scale)"),
                  (r"method\.(views|view_a|view_b)\.blur_sigma", lambda cfg, node: (node.get("blur_prob") or 0) > 0,
                   "the views' blur_prob above 0"),
                  (r"method\.(views|view_a|view_b)\.(brightness|contrast|saturation|hue)",
                   lambda cfg, node: (node.get("jitter_prob") or 0) > 0, "the views' jitter_prob above 0"),
                  (r"trainer\.gradient_clip_algorithm", lambda cfg, node: bool(node.get("gradient_clip_val")),
                   "trainer.gradient_clip_val set (above 0)"))


def check_read(cfg, typed) -> None:
    """A key typed on the command line that the run would not read (READ_ONLY_WITH), refused in one line."""
    from omegaconf import OmegaConf

    for key in typed:
        for pattern, read, when in READ_ONLY_WITH:
            node = OmegaConf.select(cfg, key.rpartition(".")[0])
            if re.fullmatch(pattern, key) and OmegaConf.is_dict(node) and not read(cfg, node):
                raise UserError(f"{key} is read only with {when}; drop it, or set that too")


def fail(error: BaseException) -> None:
    print(f"ssl-zoo: error: {one_line(error)}", file=sys.stderr)
    sys.exit(2)


def check_group_choices(overrides: list[str]) -> None:
    """Refuse `method=nope` (and the like) with the list of valid names."""
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in GROUPS:
            continue
        available = sorted(p.stem for p in (config_dir() / key).glob("*.yaml"))
        if value.startswith("[") and key != "logger":  # Hydra would merge the configs into one
            raise UserError(f"{key}={value} names several {key}s for one run; choose one, or run one job each with "
                            f"-m {key}={value.strip('[]')}")
        if any(c in value for c in "()[]${}"):
            continue
        for choice in value.split(","):
            if choice in ("null", "") and key != "logger":
                raise UserError(f"{key}={choice} leaves the run without a {key}; choose one of: {', '.join(available)}")
            if choice not in available and choice != "null":
                raise UserError(f"unknown {key} '{choice}'; choose one of: {', '.join(available)}")


def quote_free_text(override: str) -> str:
    """`text=The capital of France is [MASK].` as the user means it: Hydra would read [ ] , = ${ } as
    syntax, so the value is passed as one quoted string (unless the user quoted it for Hydra already)."""
    key, sep, value = override.partition("=")
    if not sep or key not in FREE_TEXT_KEYS or (len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""):
        return override
    value = value.replace("${", "\\${")  # literal, not an interpolation
    value = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), value)
    return f"{key}='{value}'"


def _override_values(config_name: str, arg: str, multirun: bool) -> tuple[str, list[str]]:
    """(key, the override of each of its values: one unless a sweep), or one line on what Hydra would refuse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        [override] = OverridesParser.create().parse_overrides([arg])
    except HydraException as e:
        raise UserError(f"cannot read {arg!r}: {one_line(e).split(' See https')[0]} (key=value, see "
                        "https://hydra.cc/docs/advanced/override_grammar/basic)") from None
    if not override.key_or_group:
        raise UserError(f"{arg!r} has no key; write key=value (e.g. seed=3)")
    if config_name != "train" and arg.startswith("+") and override.key_or_group.split(".")[0] not in (*GROUPS, "hydra") \
            and not re.fullmatch(ADDED_KEYS.get(config_name, "$^"), override.key_or_group):
        raise UserError(f"{override.key_or_group} is not a setting of this command; drop {arg} (its settings are in "
                        f"conf/{config_name}.yaml)")
    for pattern, reads in UNREAD_KEYS.get(config_name, ()):
        if re.fullmatch(pattern, override.key_or_group):
            raise UserError(f"{reads}; drop {arg}")
    if override.is_sweep_override() and not multirun:
        raise UserError(f"{arg} gives several values: add -m to run one job for each (ssl-zoo {config_name} -m {arg}), "
                        "or give one value")
    try:
        each = [f"{override.get_key_element()}={v}" for v in override.sweep_string_iterator()] if override.is_sweep_override() else [arg]
    except HydraException as e:  # interval(0, 1): a range to search, not values to run
        raise UserError(f"{arg} cannot be run value by value ({one_line(e)}); give the values (a=1,2,3 or range(0,3))") from None
    if not each:
        raise UserError(f"{arg} gives no value to run; check its bounds (range(start, stop) counts up from start to stop - 1)")
    return override.key_or_group, each


def check_overrides(config_name: str, overrides: list[str], check_job=None) -> None:
    """Hydra's own refusals (a key the config lacks, a malformed value, an interpolation of nothing) as
    one line naming the key and the settings it could be, before Hydra starts: Hydra would print them
    over several lines and exit 1. A sweep (a=1,2) is checked at each of its values (the other keys at
    their first); check_job(cfg): the command's own start-up check of each job's config. With Hydra's
    flags (--cfg job, ...) Hydra checks."""
    from omegaconf import OmegaConf

    if any(arg.startswith("-") for arg in overrides if arg not in ("-m", "--multirun")):
        return
    plain = [arg for arg in overrides if not arg.startswith("-")]
    multirun = bool({"-m", "--multirun", "hydra.mode=MULTIRUN"} & set(overrides))  # the last: Hydra's other spelling of -m
    values, given = [], {}  # per argument: the override of each of its values (one unless a sweep)
    for arg in plain:
        key, each = _override_values(config_name, arg, multirun)
        if key in given:  # Hydra keeps the last (a base command line then changed is common): said, not refused
            print(f"ssl-zoo: warning: {key} is given twice ({given[key]}, then {arg}); the last is used", file=sys.stderr)
        given[key] = arg
        values.append(each)
    first = [each[0] for each in values]
    warn_experiment_over_choice(given)
    cfg = _checked_compose(config_name, first, check_job)
    check_read(cfg, [key.lstrip("+~") for key in given])
    for i, each in enumerate(values):
        for other in each[1:]:  # a sweep's other values
            _checked_compose(config_name, [*first[:i], other, *first[i + 1:]], check_job)
    for arg in first:
        key = arg[1:].partition("=")[0]
        if arg.startswith("~") and "." in key and not key.startswith("hydra."):
            kept = composed(config_name, [a for a in first if a != arg])
            if not OmegaConf.is_config(value := OmegaConf.select(kept, key)):
                raise UserError(f"~{key} would remove a setting the run reads: the code would use a default that the run's "
                                f"config.yaml does not record; set it instead ({key}={value})")
    sweep = "-m" in overrides or "--multirun" in overrides or str(cfg.hydra.mode).endswith("MULTIRUN")
    check_output_dir(cfg, "hydra.sweep.dir" if sweep else "hydra.run.dir")
    if config_name == "train" and not sweep:  # before Hydra writes its .hydra/ into the folder (each job of a sweep: in train)
        from ssl_zoo.run.checkpoint_io import check_new_run

        from omegaconf.errors import InterpolationResolutionError

        try:
            check_new_run(cfg.resume, OmegaConf.select(cfg, "hydra.run.dir"))
        except InterpolationResolutionError:  # a folder only Hydra's run names (${hydra:...}): checked again in train
            pass
    check_job_names(cfg, jobs=math.prod(map(len, values)) if sweep else 1)
    check_launcher(cfg, sweep)


def check_job_names(cfg, jobs: int) -> None:
    """hydra.job.name names the run's log file; a sweep's hydra.sweep.subdir, each job's folder: empty, or the
    same for every job, the jobs would write over each other's checkpoints and results."""
    name = cfg.hydra.job._get_node("name")._value()  # as given, not resolved: ${hydra.job.num} resolves only in a job
    if not str(name or "").strip():
        raise UserError("hydra.job.name is empty; give a name (it names the run's log file), or leave it out")
    subdir = str(cfg.hydra.sweep._get_node("subdir")._value() or "")
    if jobs > 1 and "${" not in subdir:
        raise UserError(f"hydra.sweep.subdir={subdir!r} would be the same folder for each of the {jobs} jobs, which would write "
                        "over each other; leave it out, or make it differ per job (hydra.sweep.subdir=run_${hydra.job.num})")


def warn_experiment_over_choice(given: dict[str, str]) -> None:
    """An experiment's own settings come after every group (conf/train.yaml): trainer=debug beside experiment=X
    still trains X's trainer.max_steps. Said for each setting of a group chosen on the command line that the
    experiment sets and the command line does not."""
    from omegaconf import OmegaConf

    name = given.get("experiment", "").partition("=")[2]
    path = config_dir() / "experiment" / f"{name}.yaml"
    if not name or not path.is_file():
        return
    experiment = OmegaConf.to_container(OmegaConf.load(path))
    for group in (g for g in GROUPS if g in given and isinstance(experiment.get(g), dict)):
        for key, value in experiment[group].items():
            if f"{group}.{key}" not in given and not isinstance(value, dict):
                print(f"ssl-zoo: warning: experiment={name} sets {group}.{key}={value} over {given[group]}'s; give "
                      f"{group}.{key}=... on the command line to change it", file=sys.stderr)


def check_launcher(cfg, sweep: bool) -> None:
    """A sweep sent to SLURM from a machine without its commands fails in the launcher with a traceback."""
    import shutil

    from omegaconf import OmegaConf

    launcher = str(OmegaConf.select(cfg, "hydra.launcher._target_", default=""))  # submitit's SlurmLauncher
    if sweep and "submitit" in launcher and "slurm" in launcher.lower() and shutil.which("srun") is None:
        raise UserError("hydra/launcher=slurm sends the jobs to SLURM, whose srun is not on this machine; run the command "
                        "on the cluster (its login node), or drop hydra/launcher=slurm to run the jobs here")


def composed(config_name: str, args: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name, overrides=args, return_hydra_config=True)


def _checked_compose(config_name: str, args: list[str], check_job=None):
    """The config of these overrides, the interpolations typed in them resolved, then check_job's check;
    what Hydra would refuse, one line naming the key."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import InterpolationResolutionError

    try:
        cfg = composed(config_name, args)
    except HydraException as e:
        raise UserError(_unknown_key(config_name, args, e)) from None
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]  # resolved by Hydra's run, not here
    try:
        OmegaConf.to_container(job, resolve=True)
    except InterpolationResolutionError as e:
        typed = any(arg.lstrip("+").partition("=")[0] == e.full_key and "${" in arg for arg in args)
        if typed:  # an interpolation given on the command line (one in conf/ fails where the groups disagree: checked later)
            raise UserError(f"{e.full_key}: {one_line(e).splitlines()[0].split(' full_key:')[0]}; give it a value, or an "
                            "interpolation of an existing setting (${other.key})") from None
    if check_job is not None:
        check_job(job)
    return cfg


def _unknown_key(config_name: str, args: list[str], error) -> str:
    """What Hydra refused composing `args`: a key the config lacks (with the settings it could be), or
    a value its key cannot take."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    key = getattr(error.__cause__, "full_key", None)
    if not key:
        return one_line(error)
    parent = key.rpartition(".")[0]
    others = [arg for arg in args if arg.lstrip("+~").partition("=")[0] != key
              and not arg.lstrip("+~").startswith(f"{key}.")]
    try:
        without = composed(config_name, others)
    except HydraException:
        return f"{key} is not a setting (to add a new one: +{key}=...)"
    if OmegaConf.select(without, key, default=_MISSING) is not _MISSING:  # the key exists: its value is wrong
        given = next((arg.partition("=")[2] for arg in args if arg.lstrip("+~").partition("=")[0] == key), "")
        return f"{key}={given} is not a value {key} can take ({one_line(error.__cause__).split(' full_key:')[0]})"
    group = key.split(".")[0]
    typed = next((k for arg in args if (k := arg.lstrip("+~").partition("=")[0]).startswith(f"{group}.")), None)
    if group in GROUPS and typed and OmegaConf.select(without, group) is None:
        return f"{typed} is a setting of a chosen {group}; choose it first ({group}=<name> {typed}=...)"
    node = OmegaConf.select(without, parent) if parent else without
    names = f"; the settings of {parent or 'this command'} are: {', '.join(node.keys())}" if OmegaConf.is_config(node) else ""
    return f"{key} is not a setting{names} (to add a new one: +{key}=...)"


_MISSING = object()


def check_output_dir(cfg, key: str) -> None:
    """The folder Hydra will make for the run, refused in one line when it cannot be made (Hydra's
    own refusal is a traceback)."""
    from omegaconf import OmegaConf

    from ssl_zoo.atomic import check_can_write

    from omegaconf.errors import InterpolationResolutionError

    try:
        folder = OmegaConf.select(cfg, key)
    except InterpolationResolutionError as e:
        problem = one_line(e).split(" full_key:")[0]
        if "hydra" in problem:  # an interpolation only Hydra's run resolves (${hydra:runtime...})
            return
        raise UserError(f"{key}: {problem}; give the folder itself ({key}=outputs/my_run)") from None
    if not str(folder or "").strip():
        raise UserError(f"{key} is empty; give the run a folder ({key}=outputs/my_run), or leave {key} out")
    if str(folder).startswith("~"):  # the shell expands ~ only where it is not quoted: here it would name a folder "~"
        raise UserError(f"{key}={folder} starts with ~, which is not expanded here (a folder named ~ would be made); give the "
                        "path itself, e.g. $HOME/...")
    check_can_write(folder, key, folder=True)


def run_hydra_app(config_name: str, task, overrides: list[str], check_job=None) -> None:
    import hydra

    check_overrides(config_name, overrides, check_job)

    def guarded(cfg):
        try:
            return task(cfg)
        except UserError as e:
            fail(e)
        except BrokenPipeError:  # the reader of our output left (`ssl-zoo generate ... | head -3`): nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error as Python flushes at exit
            sys.exit(1)  # what Python's docs advise on EPIPE

    # Hydra parses sys.argv; its argparse takes -m only before the overrides (`train seed=0 -m` is a common order)
    multirun = [arg for arg in overrides if arg in ("-m", "--multirun")]
    sys.argv = [sys.argv[0], *multirun, *(arg for arg in overrides if arg not in multirun)]
    hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(guarded)()


def train_task(original_argv: list[str], cfg):
    from hydra.core.hydra_config import HydraConfig

    from ssl_zoo.report import summary
    from ssl_zoo.run.train import train

    from ssl_zoo.run.signals import RunInterrupted

    sys.argv = original_argv  # Lightning's DDP launcher starts the other ranks by re-running this command line
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        results = train(cfg, run_dir)
    except RunInterrupted as e:
        print(f"ssl-zoo: interrupted: {e}", file=sys.stderr)
        sys.exit(130)  # the shell's code for a run stopped by a signal
    if results is not None:
        print(summary(results, run_dir))
    return results


def lm_eval_command(argv: list[str]) -> None:
    """lm-evaluation-harness's own command line, with our GPTs known to it as --model ssl-zoo."""
    try:
        adapter = import_module("ssl_zoo.commands.lm_eval_adapter")
    except ModuleNotFoundError as e:
        if e.name != "lm_eval" and not (e.name or "").startswith("lm_eval."):
            raise
        raise UserError("ssl-zoo lm-eval needs lm-evaluation-harness: pip install 'ssl-zoo[lm-eval]' (or pip install lm_eval)") from None
    adapter.main(argv)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    try:
        if command == "compare":
            return import_module("ssl_zoo.commands.compare").main(rest)
        if command == "lm-eval":
            return lm_eval_command(rest)
        if flag := next((a for a in rest if re.match(r"(--config-(name|path|dir)|-c[npd])(=|$)", a)), None):
            raise UserError(f"{flag.partition('=')[0]} is not an option of ssl-zoo (each command has its own config); choose a "
                            "preset with experiment=<name>, or set the settings on the command line")
        if command not in HYDRA_COMMANDS:
            raise UserError(f"unknown command '{command}'; choose one of: {', '.join(HYDRA_COMMANDS)}, compare, lm-eval "
                            "(ssl-zoo --help)")
        if command in CHECKS_GROUPS:
            check_group_choices(rest)
        if command in TAKES_FREE_TEXT:
            rest = [quote_free_text(arg) for arg in rest]
        config_name, target = HYDRA_COMMANDS[command]
        module, function = target.split(":")
        task = getattr(import_module(module), function)
        check_job = None
        if command == "train":  # the settings of the run (each job of a sweep), before Hydra starts or the first job trains
            task = partial(task, [sys.argv[0], *argv])
            check_job = import_module("ssl_zoo.run.train").check_start
        run_hydra_app(config_name, task, rest, check_job)
    except UserError as e:
        fail(e)
