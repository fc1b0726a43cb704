"""In-context learning tasks: synthetic ones in the spirit of GPT-3's (Brown et al. 2020, section 3.9),
and user tasks from JSONL files. An example is {input, output, choices (optional)}; a prompt shows
`input => output` lines (see eval/icl.py), and `icl_mix` data trains on episodes of the same form.
"""

import functools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from ssl_zoo.errors import UserError

# Common English words (3-8 letters): the vocabulary of the word tasks and the lexicon.
WORDS = """
able about above after again air also animal answer apple area army baby back ball bank base basket bear
because bed before begin bell best bird black blood blue boat body bone book bottle box boy bread bridge
bright bring brother brown build butter cake call camp candle captain car card care carry castle cat cause
chair change cheese child church circle city class clean clock close cloud coat cold color corn cotton
country cover cow cream cross crowd dance dark daughter day deep desert dinner doctor dog door dream
dress drink early earth east egg end engine evening eye face fact farm father field finger fire fish flag
floor flower food foot forest friend fruit garden gate girl glass gold grass green ground group hair hand
happy hat head heart heavy hill horse hour house ice idea iron island jacket key king kitchen lake lamp
land language laugh leaf letter light lion market milk minute money moon morning mother mountain mouth
music name night north ocean office orange paper parent party pencil people piano picture plant pocket
queen rain river road rock room rose salt school sea season shadow sheep ship shoe silver sister sky
small snow soap song south spring square star stone street sugar summer sun table teacher tiger time
tooth town train tree truck uncle valley village voice water weather week wheel window winter wolf woman
wood world yellow young
""".split()

SYMBOLS = "!#$%&*+-./:;=?@^~"


@dataclass
class Example:
    input: str
    output: str
    choices: list[str] | None = None  # multiple choice: `output` is one of them


@dataclass
class Task:
    name: str
    description: str  # the instruction line a prompt may start with
    examples: list[Example] = field(default_factory=list)


def made_up_lexicon(seed: int = 0) -> dict[str, str]:
    """English word -> a word of an invented language (syllables drawn by seed), e.g. cheese -> 'velumo'."""
    return dict(_lexicon(seed))


@functools.lru_cache(maxsize=4)
def _lexicon(seed: int) -> tuple[tuple[str, str], ...]:
    rng = random.Random(seed)
    onsets, vowels = "b d f g l m n p r s t v z ch". split(), "a e i o u ou ai".split()
    lexicon, used = {}, set()
    for word in WORDS:
        while True:
            made = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(2, 3)))
            if made not in used:
                break
        used.add(made)
        lexicon[word] = made
    return tuple(lexicon.items())


def _remove_symbols(word: str, rng: random.Random) -> str:
    out = []
    for ch in word:
        out.append(ch)
        if rng.random() < 0.5:
            out.append(rng.choice(SYMBOLS))
    return "".join(out)


def synthetic_example(task: str, rng: random.Random, digits: int = 2) -> Example:
    word = rng.choice(WORDS)
    if task == "addition":  # n-digit addition
        a, b = (rng.randint(10 ** (digits - 1), 10**digits - 1) for _ in range(2))
        return Example(f"{a} + {b}", str(a + b))
    if task == "cycle_letters":  # the word's letters rotated: "heesec" -> "cheese"
        k = rng.randint(1, len(word) - 1)
        return Example(word[k:] + word[:k], word)
    if task == "remove_symbols":  # symbols inserted among the letters: "c!he#ese" -> "cheese"
        return Example(_remove_symbols(word, rng), word)
    if task == "reverse_words":  # "eseehc" -> "cheese"
        return Example(word[::-1], word)
    if task == "translate":  # through the made-up lexicon, with 4 choices
        lexicon = _lexicon(0)
        answer = dict(lexicon)[word]
        others = rng.sample([made for _, made in lexicon if made != answer], 3)
        choices = others + [answer]
        rng.shuffle(choices)
        return Example(word, answer, choices)
    raise KeyError(task)


SYNTHETIC = {
    "addition": "Add the two numbers.",
    "cycle_letters": "Unscramble the rotated letters into a word.",
    "remove_symbols": "Remove the symbols from the word.",
    "reverse_words": "Reverse the letters of the word.",
    "translate": "Translate English to the made-up language.",
}


def synthetic_task(name: str, n: int, seed: int, digits: int = 2) -> Task:
    """n examples of a built-in task, drawn by seed, no two with the same input."""
    rng, seen, examples = random.Random(f"{name}-{seed}"), set(), []
    for _ in range(50 * n):
        ex = synthetic_example(name, rng, digits)
        if ex.input not in seen:
            seen.add(ex.input)
            examples.append(ex)
            if len(examples) == n:
                break
    return Task(name, SYNTHETIC[name], examples)


def read_jsonl_task(path: str | Path, description: str = "") -> Task:
    """A user task: one JSON object per line with "input", "output" and optionally "choices"."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"task file {path} does not exist; pass task=<name> or task=<file.jsonl>")
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ex = Example(str(row["input"]), str(row["output"]), row.get("choices"))
            if ex.choices is not None and (not isinstance(ex.choices, list) or ex.output not in map(str, ex.choices)):
                raise ValueError('"choices" must be a list that contains "output"')
        except (ValueError, KeyError, TypeError) as e:
            reason = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
            raise UserError(f'{path}, line {number} is not a task example ({reason}); each line must be '
                            '{"input": ..., "output": ..., "choices": [...] (optional)}') from None
        if ex.choices is not None:
            ex.choices = [str(c) for c in ex.choices]
        examples.append(ex)
    if len(examples) < 2:
        raise UserError(f"{path} holds {len(examples)} examples; a task needs at least 2 (a query and a demonstration)")
    return Task(path.stem, description, examples)


def load_task(name: str, n: int, seed: int, digits: int = 2, description: str | None = None) -> Task:
    """A built-in task by name, or a JSONL file by path."""
    if name in SYNTHETIC:
        task = synthetic_task(name, n, seed, digits)
    elif name.endswith(".jsonl") or Path(name).is_file():
        task = read_jsonl_task(name)
    else:
        raise UserError(f"unknown ICL task '{name}'; choose one of: {', '.join(SYNTHETIC)}, or a .jsonl file")
    if description is not None:
        task.description = description
    return task


def episode(task: Task, k: int, rng: random.Random, with_description: bool = True) -> str:
    """A training episode for icl_mix: the description (sometimes), then k + 1 solved examples."""
    shown = rng.sample(task.examples, min(k + 1, len(task.examples)))
    lines = ([task.description] if with_description else []) + [f"{ex.input} => {ex.output}" for ex in shown]
    return "\n".join(lines)
