"""An ssl-zoo BERT as a Hugging Face masked LM. `ssl-zoo export format=hf` copies this file into the
export folder as modeling_ssl_zoo.py, and config.json's auto_map points transformers at it:

    AutoModelForMaskedLM.from_pretrained(DIR, trust_remote_code=True)
    pipeline("fill-mask", model=DIR, trust_remote_code=True)

No class of transformers computes our BERT: its blocks are pre-LN with no LayerNorm on the
embeddings and a bare tied output layer (RoBERTa-PreLayerNorm and Megatron-BERT normalise the
embeddings or put a dense + GELU + LayerNorm transform before the output layer). So the model is our
own transformer (the ssl-zoo package must be installed), wrapped in transformers' interface.
"""

import torch
import torch.nn.functional as F
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from ssl_zoo.nn.transformer import Transformer


class SslZooConfig(PretrainedConfig):
    model_type = "ssl_zoo_transformer"

    def __init__(self, vocab_size: int = 2048, block_size: int = 128, n_layer: int = 4, n_head: int = 4, n_embd: int = 128,
                 bias: bool = True, tie_word_embeddings: bool = True, **kwargs):
        self.block_size, self.n_layer, self.n_head, self.n_embd, self.bias = block_size, n_layer, n_head, n_embd, bias
        self.vocab_size = vocab_size
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)


class SslZooForMaskedLM(PreTrainedModel):
    config_class = SslZooConfig
    base_model_prefix = "transformer"
    _tied_weights_keys = {"transformer.lm_head.weight": "transformer.tok_emb.weight"}

    def __init__(self, config: SslZooConfig):
        super().__init__(config)
        self.transformer = Transformer(vocab_size=config.vocab_size, block_size=config.block_size, n_layer=config.n_layer,
                                       n_head=config.n_head, n_embd=config.n_embd, bias=config.bias, causal=False,
                                       tie_weights=config.tie_word_embeddings)
        self.post_init()

    def get_input_embeddings(self):
        return self.transformer.tok_emb

    def get_output_embeddings(self):
        return self.transformer.lm_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **unused) -> MaskedLMOutput:
        """input_ids (B, T); attention_mask (B, T), 1 = a real token; labels (B, T), -100 = not scored."""
        real = attention_mask.bool() if attention_mask is not None else None
        logits = self.transformer.logits(self.transformer(input_ids, key_padding_mask=real))  # (B, T, V)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits)
