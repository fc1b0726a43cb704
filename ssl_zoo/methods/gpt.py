"""GPT (Radford et al., 2018, 2019): a causal transformer that predicts every next token."""

from torchmetrics import MeanMetric

from ssl_zoo.losses import token_cross_entropy
from ssl_zoo.methods.text import TextMethod
from ssl_zoo.nn.transformer import Transformer


class GPT(TextMethod):
    name = "gpt"
    causal = True  # position t attends to positions <= t only

    def __init__(self, backbone: Transformer, sample_prompt: str = "\n", sample_tokens: int = 200, **text):
        super().__init__(backbone, **text)
        self.sample_prompt, self.sample_tokens = sample_prompt, sample_tokens
        self.val_loss = MeanMetric()

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

    def report(self) -> dict:
        """A sample of the trained model, printed in the summary."""
        from ssl_zoo.eval.generate import SamplingSettings, generate_text

        was_training = self.training
        self.eval()
        settings = SamplingSettings(self.sample_tokens, temperature=0.8, top_k=50, seed=self.seed)
        sample = self.sample_prompt + "".join(generate_text(self, self.sample_prompt, settings))
        self.train(was_training)
        return {"sample": sample}
