"""Tokenizers for the text methods, both built on Hugging Face `tokenizers`:

- `char`: one token per character seen in the corpus (nanoGPT's shakespeare_char);
- `bpe`: byte-level BPE trained on the corpus (GPT-2's scheme: any text encodes, nothing is unknown).

Both put the same special tokens first, so that their ids are fixed: a method needs no tokenizer to
pad, mask or skip them. A tokenizer travels with its checkpoint as its JSON string (plain data).
"""

from collections.abc import Iterable, Iterator

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from ssl_zoo.errors import UserError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]"]
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID, BOS_ID, EOS_ID = range(len(SPECIAL_TOKENS))
NUM_SPECIAL = len(SPECIAL_TOKENS)  # ids below this are special; ordinary tokens follow
KINDS = ("char", "bpe")


class TextTokenizer:
    def __init__(self, hf: Tokenizer, kind: str):
        self.hf, self.kind = hf, kind
        self.vocab_size = hf.get_vocab_size()

    # --- building and storing ------------------------------------------------------------------
    @classmethod
    def train(cls, kind: str, texts: Iterable[str], vocab_size: int = 2048) -> "TextTokenizer":
        """A tokenizer fitted to the texts (an iterable of chunks, read once)."""
        if kind == "char":
            chars = set()
            for text in texts:
                chars.update(text)
            vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + sorted(chars))}
            hf = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
            hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
            hf.decoder = decoders.Fuse()
        elif kind == "bpe":
            hf = Tokenizer(models.BPE())
            hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            hf.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size,
                special_tokens=SPECIAL_TOKENS,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
                show_progress=False,
            )
            hf.train_from_iterator(texts, trainer)
        else:
            raise UserError(f"unknown tokenizer '{kind}'; choose one of: {', '.join(KINDS)}")
        hf.add_special_tokens(SPECIAL_TOKENS)  # "[MASK]" in a text is the mask token, never split
        return cls(hf, kind)

    def to_str(self) -> str:
        return self.hf.to_str()

    @classmethod
    def from_str(cls, data: str) -> "TextTokenizer":
        hf = Tokenizer.from_str(data)
        kind = "char" if type(hf.model).__name__ == "WordLevel" else "bpe"
        return cls(hf, kind)

    # --- use -----------------------------------------------------------------------------------
    def encode(self, text: str, strict: bool = False) -> list[int]:
        """Token ids of text. strict: refuse characters a character vocabulary has never seen
        (instead of encoding them as [UNK])."""
        ids = self.hf.encode(text, add_special_tokens=False).ids
        if strict and UNK_ID in ids:
            vocab, plain = self.hf.get_vocab(), text
            for token in SPECIAL_TOKENS:
                plain = plain.replace(token, "")
            unknown = sorted({c for c in plain if c not in vocab})
            raise UserError(
                f"the text has characters this model's vocabulary never saw: {''.join(unknown)!r}; "
                "remove or replace them"
            )
        return ids

    def encode_chunks(self, chunks: Iterable[str], batch: int = 64) -> Iterator[list[int]]:
        """Ids of many chunks of text, encoded in parallel batches (the Rust side uses every core)."""
        pending = []
        for chunk in chunks:
            pending.append(chunk)
            if len(pending) == batch:
                yield from (e.ids for e in self.hf.encode_batch(pending, add_special_tokens=False))
                pending = []
        if pending:
            yield from (e.ids for e in self.hf.encode_batch(pending, add_special_tokens=False))

    def decode(self, ids, skip_special: bool = True) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def token_text(self, token_id: int) -> str:
        """How one token reads on its own (special tokens by name)."""
        return self.hf.decode([int(token_id)], skip_special_tokens=False)
