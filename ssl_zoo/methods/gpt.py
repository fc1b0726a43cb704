"""GPT (Radford et al., 2018, 2019): a causal transformer that predicts every next token."""

import torch
from torchmetrics import MeanMetric

from ssl_zoo.data.tokenizer import PAD_ID
from ssl_zoo.losses import token_cross_entropy
from ssl_zoo.methods.base import SSLMethod
from ssl_zoo.nn.transformer import Transformer


class GPT(SSLMethod):
    name = "gpt"
    modality = "text"
    encoder_settings = {"causal": True}  # position t attends to positions <= t only

    def __init__(self, backbone: Transformer, probe_layer: int = -1, sample_prompt: str = "\n",
                 sample_tokens: int = 200, **base):
        super().__init__(**base)
        self.backbone, self.probe_layer = backbone, backbone.check_layer(probe_layer, "method.probe_layer")
        self.sample_prompt, self.sample_tokens = sample_prompt, sample_tokens
        self.embed_dim = backbone.out_dim
        self.val_loss = MeanMetric()
        self.tokenizer = None  # the data's, set by train() or load_method()

    def ssl_step(self, ids):
        inputs, targets = ids[:, :-1], ids[:, 1:]  # (B, T): token t+1 is the target at position t
        hidden = self.backbone(inputs)  # (B, T, C)
        return token_cross_entropy(self.backbone.logits(hidden), targets), hidden.mean(1)

    def validation_step(self, batch, batch_idx):
        ids, _ = batch
        loss, _ = self.ssl_step(ids)
        self.val_loss.update(loss, weight=ids.shape[0])

    def on_validation_epoch_end(self):
        loss = self.val_loss.compute()  # mean over the whole held-out set, then its perplexity
        self.log_dict({"val/loss": loss, "val/perplexity": loss.exp()}, prog_bar=True)
        self.val_loss.reset()

    def embed(self, ids):
        return self.backbone.pooled(ids, ids != PAD_ID, self.probe_layer)

    def report(self, datamodule) -> dict:
        """A sample (printed in the summary) and the unigram cross-entropy to beat."""
        from ssl_zoo.eval.generate import SamplingSettings, generate_text

        was_training = self.training
        self.eval()
        settings = SamplingSettings(self.sample_tokens, temperature=0.8, top_k=50, seed=self.seed)
        sample = self.sample_prompt + "".join(generate_text(self, self.sample_prompt, settings))
        self.train(was_training)
        return {"unigram_entropy": datamodule.unigram_baselines()["unigram_entropy"], "sample": sample}
