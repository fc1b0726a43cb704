"""In-context learning tasks: families of string tasks in the spirit of GPT-3's (Brown et al. 2020,
section 3.9), with words that training never shows, and user tasks from JSONL files.

A family poses examples {input, output, choices (optional)}; a prompt shows `input => output` lines
(see eval/icl.py), and `icl_mix` data trains on episodes of the same form. There are three kinds:

- word families: a transformation of one word, built from primitives (reverse, rotate, capitals,
  doubling, parts, sorting, a letter shift, counting, symbols inserted or removed) and their
  compositions ("reverse.upper": reverse, then capitals);
- number families: arithmetic on a pair of operands;
- context families: the answer is only in the prompt: a mapping (a made-up lexicon, a label per
  word) drawn fresh for every episode, shown in the demonstrations with the query's key among them.

Split by construction: words and operand pairs come in three disjoint pools, `train` (what icl_mix
pretrains on), `val` (its held-out text and the probe's train set) and `eval` (what in-context
evaluation asks about; no evaluation word occurs in the natural text of icl_mix either), and the
families in two lists, those icl_mix trains on and those it holds out.
"""

import functools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ssl_zoo.data.base import stable_fraction
from ssl_zoo.errors import UserError

# Common English words (3-8 letters): the words of training episodes.
TRAIN_WORDS = """
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

# Words that training never shows: the query words of evaluation. None of them occurs in the pydoc topics
# that icl_mix's natural text comes from or inside a training word, and none has, under any word family, the
# answer of a training word under any family (ginger and finger lose the same first letter): tests/test_icl.py
# checks all of it; made_up_words keeps the invented words of each side off the other side's answers.
EVAL_WORDS = """
giraffe dolphin octopus beetle spider parrot falcon beaver otter hamster turtle camel gorilla koala
raccoon moose pumpkin potato onion garlic cabbage lettuce cherry mango plum grape lemon walnut peanut
pretzel waffle noodle cookie yogurt jelly pickle guitar trumpet flute harp banjo tuba pillow curtain
lantern kettle spoon ladle towel saddle tractor scooter sled jungle meadow glacier volcano lagoon cliff
orchard tulip lily orchid fern maple pebble marble velvet wool helmet sweater slipper sandal thunder
blizzard breeze goblin wizard tower dungeon pony duck swan eagle sparrow vanilla syrup porridge nephew
cousin hammer wrench shovel rake anchor compass purple crimson ivory indigo ferret gopher mole panther
puffin salmon shrimp sloth snail toad trout weasel apricot avocado basil beans cashew celery cocoa
coconut cucumber donut fudge garnet guava hazelnut lentil lime olive papaya pasta pastry radish ravioli
scone sushi turnip accordion clarinet harmonica oboe ukulele bathtub cupboard mattress quilt teacup
thimble
""".split()

# The same kind of words again, for held-out text during pretraining (validation, the probe's train set).
VAL_WORDS = """
walrus lobster pigeon badger rabbit lizard panda hedgehog buffalo tomato pepper spinach peach melon
almond muffin biscuit honey violin drum cello blanket mirror teapot sponge wagon bicycle kite canyon
swamp harbor daisy cactus willow crystal silk glove apron tornado dragon pirate goat goose hawk cinnamon
toffee omelet grandma chisel ladder lasso amber maroon lemur newt rhino skunk stork tuna wombat barley
bagel chili crouton dumpling granola kiwi nutmeg parsley pecan salami sorbet tofu bagpipe kazoo
xylophone hammock stool whisk ginger canoe taco squirrel drizzle zebra llama viper robin sherbet
""".split()

SYMBOLS = "!#$%&*+-./:;=?@^~"
SEPARATOR = " =>"


@dataclass
class Example:
    input: str
    output: str
    choices: list[str] | None = None  # multiple choice: `output` is one of them


def example_line(example: Example) -> str:
    return f"{example.input}{SEPARATOR} {example.output}"


def words_of(pool: str) -> list[str]:
    return {"train": TRAIN_WORDS, "val": VAL_WORDS, "eval": EVAL_WORDS}[pool]


@functools.lru_cache(maxsize=16)
def operand_pairs(pool: str, digits: int = 2) -> tuple[tuple[int, int], ...]:
    """The operand pairs of a pool: every pair of `digits`-digit numbers, split 3/4 train, 1/8 val,
    1/8 eval by a hash of the pair, so that no evaluated pair is ever a training pair."""
    low, high = 10 ** (digits - 1), 10**digits
    bounds = SPLIT_SHARES[pool]
    return tuple((a, b) for a in range(low, high) for b in range(low, high) if bounds[0] <= stable_fraction(f"{a}+{b}") < bounds[1])


# --- word primitives: (description, transformation) --------------------------------------------------
def caesar(word: str, shift: int) -> str:
    return "".join(chr((ord(c) - 97 + shift) % 26 + 97) if "a" <= c <= "z" else c for c in word)


PRIMITIVES: dict[str, tuple[str, Callable[[str], str]]] = {
    "reverse": ("reverse the letters", lambda w: w[::-1]),
    "rotate_left": ("move the first letter to the end", lambda w: w[1:] + w[:1]),
    "rotate_right": ("move the last letter to the front", lambda w: w[-1:] + w[:-1]),
    "upper": ("write it in capitals", str.upper),
    "double_letters": ("write every letter twice", lambda w: "".join(c * 2 for c in w)),
    "repeat": ("write it twice", lambda w: w + w),
    "first_three": ("keep the first three letters", lambda w: w[:3]),
    "last_three": ("keep the last three letters", lambda w: w[-3:]),
    "every_other": ("keep every other letter", lambda w: w[::2]),
    "drop_first": ("drop the first letter", lambda w: w[1:]),
    "drop_last": ("drop the last letter", lambda w: w[:-1]),
    "sort_letters": ("sort the letters", lambda w: "".join(sorted(w))),
    "shift_1": ("replace each letter by the next one in the alphabet", lambda w: caesar(w, 1)),
    "shift_2": ("replace each letter by the one two places on in the alphabet", lambda w: caesar(w, 2)),
    "remove_vowels": ("remove the vowels", lambda w: "".join(c for c in w if c not in "aeiou")),
    "dashes": ("put a dash between the letters", "-".join),
    "first_last": ("keep the first and the last letter", lambda w: w[:1] + w[-1:]),
    "swap_halves": ("swap the two halves", lambda w: w[len(w) // 2:] + w[: len(w) // 2]),
    "length": ("count the letters", lambda w: str(len(w))),
    "count_vowels": ("count the vowels", lambda w: str(sum(c in "aeiou" for c in w))),
}
COMPOSITIONS = [  # "a.b": a, then b
    "reverse.upper", "reverse.double_letters", "upper.first_three", "drop_first.reverse", "sort_letters.reverse",
    "shift_1.reverse", "rotate_left.upper", "every_other.reverse", "double_letters.upper", "last_three.reverse",
    "remove_vowels.upper", "dashes.upper", "first_last.upper", "swap_halves.reverse", "repeat.upper",
]


@dataclass(frozen=True)
class Family:
    """A family of tasks: `pose(item, rng)` makes the example of one word or operand pair (word and
    number families); a context family makes whole episodes instead (`episode`)."""

    name: str
    description: str
    kind: str  # word | number | context
    pose: Callable[[object, random.Random], Example] | None = None
    choices: int = 0  # context families: how many options a query offers (0: free-form answer)

    def pool(self, split: str, digits: int = 2) -> list:
        return operand_pairs(split, digits) if self.kind == "number" else words_of(split)

    def episode(self, rng: random.Random, pool: list, k: int, query_item=None, split: str = "train") -> tuple[list[Example], Example]:
        """k demonstrations and a query (of query_item, or of an item drawn from the pool); the
        demonstrations never repeat the query's item, except in a context family, where the query's
        key is among them (it is the only place the answer is); its made-up answers come from the
        split's share of the invented words."""
        query_item = rng.choice(pool) if query_item is None else query_item
        others = rng.sample([x for x in pool if x != query_item], k - (self.kind == "context" and k > 0))
        if self.kind != "context":
            return [self.pose(x, rng) for x in others], self.pose(query_item, rng)
        keys = others + [query_item] if k > 0 else [query_item]
        rng.shuffle(keys)
        values = made_up_words(rng, len(keys) + max(0, self.choices - 1), split)
        if self.name == "label":  # two labels drawn for the episode, each key given one of them
            labels = values[:2]
            values = [rng.choice(labels) for _ in keys]
        answer = dict(zip(keys, values))
        demos = [Example(key, answer[key]) for key in keys] if k > 0 else []
        if self.name == "label":
            return demos, Example(query_item, answer[query_item], list(labels))
        options = None
        if self.choices:
            options = [answer[query_item]] + rng.sample([v for v in values if v != answer[query_item]], self.choices - 1)
            rng.shuffle(options)
        return demos, Example(query_item, answer[query_item], options)


SPLIT_SHARES = {"train": (0.0, 0.75), "val": (0.75, 0.875), "eval": (0.875, 1.0)}  # of operand pairs and invented words


def made_up_words(rng: random.Random, n: int, split: str = "train") -> list[str]:
    """n distinct words of an invented language, e.g. 'velumo' (syllables drawn by rng), from the
    split's share of them (a hash decides), none of them an answer of the word families on the other
    side's words ("donu", drop_last of the evaluation word donut, is no training word): an evaluated
    answer is never a training answer."""
    onsets, vowels = "b d f g l m n p r s t v z ch".split(), "a e i o u ou ai".split()
    low, high = SPLIT_SHARES[split]
    taken = word_answers("train" if split == "eval" else "eval")
    made = []
    while len(made) < n:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(2, 3)))
        if word not in made and low <= stable_fraction(word) < high and word not in taken:
            made.append(word)
    return made


@functools.lru_cache(maxsize=3)
def word_answers(pool: str) -> frozenset[str]:
    """Every answer the word families give for the words of a pool."""
    return frozenset(f.pose(w, random.Random(0)).output for f in FAMILIES.values() if f.kind == "word" for w in words_of(pool))


def _word_family(name: str) -> Family:
    """A primitive, or a composition of primitives ("a.b": a, then b)."""
    steps = [PRIMITIVES[part] for part in name.split(".")]
    description = ", then ".join(phrase for phrase, _ in steps)

    def pose(word: str, rng: random.Random) -> Example:
        answer = word
        for _, transform in steps:
            answer = transform(answer)
        return Example(word, answer)

    return Family(name, description[0].upper() + description[1:] + ".", "word", pose)


def _insert_symbols(word: str, rng: random.Random) -> Example:
    noisy = "".join(c + (rng.choice(SYMBOLS) if rng.random() < 0.5 else "") for c in word)
    return Example(noisy, word)


def _arithmetic(name: str, op: Callable[[int, int], int], sign: str, description: str) -> Family:
    return Family(name, description, "number", lambda pair, rng: Example(f"{pair[0]} {sign} {pair[1]}", str(op(*pair))))


FAMILIES: dict[str, Family] = {
    **{name: _word_family(name) for name in [*PRIMITIVES, *COMPOSITIONS]},
    "remove_symbols": Family("remove_symbols", "Remove the symbols from the word.", "word", _insert_symbols),
    "addition": _arithmetic("addition", lambda a, b: a + b, "+", "Add the two numbers."),
    "subtraction": _arithmetic("subtraction", lambda a, b: a - b, "-", "Subtract the second number from the first."),
    "translate": Family("translate", "Translate the word into the made-up language.", "context", choices=4),
    "lookup": Family("lookup", "Give the code word of the word.", "context"),
    "label": Family("label", "Give the label of the word.", "context", choices=2),
}
# The families icl_mix holds out by default (never in its corpus); it trains on all the others.
HELD_OUT = ["shift_2", "swap_halves", "rotate_right", "count_vowels", "every_other.reverse", "last_three.reverse",
            "subtraction", "label"]
TRAINED = [name for name in FAMILIES if name not in HELD_OUT]


def check_families(trained: list[str], held_out: list[str]) -> None:
    """Refuse unknown family names and a family in both lists, in one line."""
    unknown = sorted((set(trained) | set(held_out)) - set(FAMILIES))
    if unknown:
        raise UserError(f"unknown task famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; "
                        f"the families are: {', '.join(FAMILIES)}")
    both = sorted(set(trained) & set(held_out))
    if both:
        raise UserError(f"famil{'ies' if len(both) > 1 else 'y'} {', '.join(both)} both trained and held out; "
                        "take them out of data.families or of data.held_out")


def episode_text(family: Family, rng: random.Random, pool: list, k: int, with_description: bool, split: str = "train") -> str:
    """A training episode for icl_mix: the description (sometimes), k demonstrations and the solved
    query. A context family's episode asks up to three more of its keys before the query: its
    demonstrations' answers are drawn at random, so the lines asked again are what teaches reading them."""
    demos, query = family.episode(rng, pool, k, split=split)
    again = rng.sample(demos, min(len(demos), rng.randint(0, 3))) if family.kind == "context" else []
    lines = ([family.description] if with_description else []) + [example_line(e) for e in demos + again + [query]]
    return "\n".join(lines)


# --- user tasks ------------------------------------------------------------------------------------
@dataclass
class Task:
    """A user task: a fixed pool of examples (the first ones are the queries)."""

    name: str
    description: str
    examples: list[Example] = field(default_factory=list)


def read_jsonl_task(path: str | Path, description: str = "") -> Task:
    """A user task: one JSON object per line with "input", "output" and optionally "choices"."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise UserError(f"task file {path} {what}; pass task=<family name> or task=<file.jsonl>")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"task file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8 JSON lines") from None
    examples = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ex = Example(row["input"], row["output"], row.get("choices"))
            if not (isinstance(ex.input, str) and isinstance(ex.output, str)):  # str(None) would be a silent "None"
                raise ValueError('"input" and "output" must be strings')
            if ex.choices is not None and (not isinstance(ex.choices, list) or not all(isinstance(c, str) for c in ex.choices)
                                           or ex.output not in ex.choices):
                raise ValueError('"choices" must be a list of strings that contains "output"')
        except (ValueError, KeyError, TypeError) as e:
            reason = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
            raise UserError(f'{path}, line {number} is not a task example ({reason}); each line must be '
                            '{"input": ..., "output": ..., "choices": [...] (optional)}') from None
        examples.append(ex)
    if len(examples) < 2:
        raise UserError(f"{path} holds {len(examples)} examples; a task needs at least 2 (a query and a demonstration)")
    return Task(path.stem, description, examples)


def is_user_task(name: str) -> bool:
    return name not in FAMILIES and (name.endswith(".jsonl") or Path(name).is_file())


def check_task_name(name: str) -> None:
    if name not in FAMILIES and not is_user_task(name):
        raise UserError(f"unknown ICL task '{name}'; choose a family ({', '.join(FAMILIES)}) or a .jsonl file")
