"""lm-evaluation-harness on an ssl-zoo GPT, and our in-context tasks as lm-eval tasks.

SslZooLM is lm-eval's model interface over a GPT checkpoint: `loglikelihood` (by lm-eval's
TemplateLM: context and continuation tokenised together, then split, as lm-eval does for every causal
model), `loglikelihood_rolling` (a text in disjoint windows of the context size) and `generate_until`
(greedy, or sampled at gen_kwargs' temperature; KV-cached).

    ssl-zoo lm-eval --model ssl-zoo --model_args checkpoint=.../last.ckpt --tasks ... [--include_path DIR]
    lm_eval.simple_evaluate(model=SslZooLM(checkpoint=...), tasks=[...])

lm_eval (0.4) finds a model only in its own table or among the classes registered in the running
process (it reads no entry points of other packages), so `ssl-zoo lm-eval` imports this module, which
registers SslZooLM as "ssl-zoo", and then runs lm_eval's own command line with the arguments as given.

The tasks to score it on: `ssl-zoo icl ... export_tasks=DIR` writes our in-context prompts as lm-eval
task files (commands/icl.py).
"""

import os
import re
import sys
import traceback

import lm_eval.models  # noqa: F401  lm_eval's own models, registered before ours (its registry fills itself only when empty)
import torch
from lm_eval import utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from ssl_zoo.atomic import check_can_write
from ssl_zoo.errors import UserError, one_line
from ssl_zoo.infer.load import load_text_model
from ssl_zoo.data.tokenizer import EOS_ID
from ssl_zoo.eval.icl import GPTScorer
from ssl_zoo.infer.decode import generate


MODEL_ARGS = ("checkpoint", "device", "batch_size", "max_gen_toks")  # what --model_args may set


def check_model_args(given: dict) -> None:
    """--model_args of --model ssl-zoo: known keys, a checkpoint, whole numbers where they are counts."""
    if unknown := sorted(set(given) - set(MODEL_ARGS)):
        raise UserError(f"--model_args {unknown[0]}=... is not a setting of --model ssl-zoo; its settings are: {', '.join(MODEL_ARGS)}")
    if "checkpoint" not in given:
        raise UserError("--model ssl-zoo needs --model_args checkpoint=PATH (a GPT run's last.ckpt)")
    for name in ("batch_size", "max_gen_toks"):
        value = str(given.get(name, 1))
        if not (value.isdigit() and int(value) > 0) and not (name == "batch_size" and value.startswith("auto")):
            raise UserError(f"--model_args {name}={value} is not a whole number above 0" + (" (or auto)" if name == "batch_size" else ""))


@register_model("ssl-zoo")
class SslZooLM(TemplateLM):
    """lm-eval's model interface over a GPT checkpoint; --model_args checkpoint=PATH[,device=cpu,batch_size=16]."""

    def __init__(self, checkpoint: str, device: str = "auto", batch_size: int | str = 16, max_gen_toks: int = 256):
        super().__init__()
        check_model_args({"checkpoint": checkpoint, "batch_size": batch_size, "max_gen_toks": max_gen_toks})
        self.scorer = GPTScorer(load_text_model(checkpoint, "gpt", device, command="lm-eval"))
        self.batch = int(batch_size) if str(batch_size).isdigit() else 16  # "auto": 16
        self.max_gen_toks = int(max_gen_toks)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> "SslZooLM":
        """--model_args, then lm_eval's own --device / --batch_size where model_args does not set them
        (lm_eval's --device defaults to cuda:0: on a machine without CUDA, ours to device=auto, as lm_eval's hf model)."""
        check_model_args(arg_dict)
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k in MODEL_ARGS and k not in arg_dict}
        if str(extra.get("device", "")).startswith("cuda") and not torch.cuda.is_available():
            extra["device"] = "auto"
        return cls(**extra, **arg_dict)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "SslZooLM":
        return cls.create_from_arg_obj(utils.simple_parse_args_string(arg_string), additional_config)

    @property
    def eot_token_id(self) -> int:
        return EOS_ID  # the separator between the documents our GPTs train on

    @property
    def max_length(self) -> int:
        return self.scorer.block_size

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.scorer.encode(string)

    def tok_decode(self, tokens: list[int], **kwargs) -> str:
        return self.scorer.decode(tokens)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        pairs = [(context, continuation) for _, context, continuation in requests]
        return [score for start in range(0, len(pairs), self.batch)
                for score in self.scorer.continuation_scores(pairs[start : start + self.batch])]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """log p(text): every token scored once, each window reading up to max_length tokens before it."""
        out = []
        for (text,) in (r.args for r in requests):
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.prefix_token_id, max_seq_len=self.max_length, context_len=1)]
            out.append(sum(lp for lp, _ in self.scorer.continuation_scores(windows)))
        return out

    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for context, gen_kwargs in (r.args for r in requests):
            until = gen_kwargs.get("until") or [self.tok_decode([self.eot_token_id])]
            until = [until] if isinstance(until, str) else list(until)
            steps = int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))
            temperature = float(gen_kwargs.get("temperature", 0.0)) if gen_kwargs.get("do_sample", False) else 0.0
            ids = torch.tensor([self.tok_encode(context)[-self.max_length:]], device=self.scorer.device)
            new = []
            for token in generate(self.scorer.model, ids, steps, temperature=temperature):
                new.append(token.item())
                text = self.tok_decode(new)
                if new[-1] == self.eot_token_id or any(stop in text for stop in until):
                    break
            text = self.tok_decode(new)
            for stop in until:
                text = text.split(stop)[0]
            out.append(text)
        return out


def split_flags(argv: list[str]) -> list[str]:
    """--flag=value as --flag value (argparse takes both; the checks read one form)."""
    return [part for arg in argv for part in (arg.split("=", 1) if arg.startswith("--") and "=" in arg else [arg])]


def check_arguments(argv: list[str]) -> None:
    """The arguments lm_eval would take in silence, or refuse only after loading its tasks, refused first."""
    flags = [arg for arg in argv if arg.startswith("--") or re.fullmatch(r"-[A-Za-z]", arg)]  # not a value -1
    if twice := next((flag for flag in flags if flags.count(flag) > 1), None):
        raise UserError(f"{twice} is given more than once (lm_eval would keep only the last); give it once"
                        + (", with its settings comma-separated (checkpoint=PATH,batch_size=8)" if twice == "--model_args" else ""))
    model = next((value for flag, value in zip(argv, argv[1:]) if flag == "--model"), None)
    if model not in (None, "ssl-zoo") and "checkpoint=" in " ".join(argv):
        raise UserError(f"--model_args checkpoint=... is read by --model ssl-zoo, not --model {model}; give --model ssl-zoo")
    if model is None and "--model_args" in argv and "pretrained=" not in " ".join(argv):
        raise UserError("--model is not given (lm_eval's default, hf, loads pretrained=NAME); for an ssl-zoo GPT give "
                        "--model ssl-zoo --model_args checkpoint=PATH")
    for flag, value in zip(argv, argv[1:]):
        if flag == "--include_path" and not os.path.isdir(value):
            raise UserError(f"--include_path {value} is not a folder; give the folder of task files (e.g. what "
                            "`ssl-zoo icl ... export_tasks=DIR` wrote)")
        if flag == "--model_args" and model == "ssl-zoo":
            check_model_args(utils.simple_parse_args_string(value))
        if flag in ("--limit", "--num_fewshot"):
            try:
                number = float(value)
            except ValueError:
                number = -1.0
            if number < 0 or (flag == "--limit" and number == 0) or (flag == "--num_fewshot" and not number.is_integer()):
                raise UserError(f"{flag} {value} is out of range; give " + ("a whole number of examples at least 0"
                                if flag == "--num_fewshot" else "a number of examples above 0 (or a fraction below 1)"))
        if flag == "--output_path":
            check_can_write(value, "--output_path", folder=not value.endswith(".json"))


def main(argv: list[str]) -> None:
    """`ssl-zoo lm-eval ARGS`: lm_eval's command line, with --model ssl-zoo known."""
    from lm_eval.__main__ import cli_evaluate

    argv = split_flags(argv)
    check_arguments(argv)
    sys.argv = ["lm-eval", *argv]
    try:
        cli_evaluate()
    except (ValueError, KeyError) as e:  # lm_eval's refusal of its arguments: a model or task it does not know
        if "lm_eval" not in traceback.extract_tb(e.__traceback__)[-1].filename:
            raise  # raised by a model's code, not by lm_eval's reading of its arguments
        raise UserError(f"lm-eval: {one_line(e)} (lm-eval --help; our GPTs: --model ssl-zoo --model_args checkpoint=...)") from None
