"""What the text methods share: the shared transformer over token ids with the attention the method
needs, the tokenizer the model reads text with (its own checkpoint state), and the probe's features
(one layer's hidden states, mean-pooled over the real tokens)."""

from ssl_zoo.data.base import DataInfo
from ssl_zoo.data.tokenizer import PAD_ID, TextTokenizer
from ssl_zoo.methods.base import SSLMethod
from ssl_zoo.nn.transformer import Transformer

TOKENIZER_KEY = "ssl_zoo_tokenizer"  # where a checkpoint keeps the model's tokenizer (its JSON)


class TextMethod(SSLMethod):
    modality = "text"
    causal: bool  # the attention the method trains with

    def __init__(self, backbone: Transformer, probe_layer: int | str = -1, **base):
        super().__init__(backbone, **base)
        backbone.use_attention(self.causal, f"method={self.name}")
        self.probe_layer = backbone.check_layer(probe_layer, "method.probe_layer")
        self.tokenizer: TextTokenizer | None = None  # the data's, from use_data(); or the checkpoint's

    def use_data(self, info: DataInfo) -> None:
        super().use_data(info)
        self.tokenizer = info.tokenizer

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.tokenizer is not None:
            checkpoint[TOKENIZER_KEY] = self.tokenizer.to_str()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if TOKENIZER_KEY in checkpoint:
            self.tokenizer = TextTokenizer.from_str(checkpoint[TOKENIZER_KEY])

    def data_settings(self) -> dict:
        """The text is read with the tokenizer the model learned, not one fitted to it anew."""
        return {"model_tokenizer": self.tokenizer}

    def embed(self, ids):
        return self.backbone.pooled(ids, ids != PAD_ID, self.probe_layer)
