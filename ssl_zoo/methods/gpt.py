"""GPT (Radford et al., 2018, 2019): a causal transformer that predicts every next token."""

from typing import Annotated

from torchmetrics import MeanMetric

from ssl_zoo.data.base import DataInfo
from ssl_zoo.errors import BadValue, UserError
from ssl_zoo.losses import token_cross_entropy, token_losses
from ssl_zoo.methods.text import TextMethod
from ssl_zoo.nn.transformer import Transformer
from ssl_zoo.settings import Range


BEST_VAL_KEY = "ssl_zoo_best_val_loss"


class GPT(TextMethod):
    name = "gpt"
    objective = "autoregressive"
    causal = True  # position t attends to positions <= t only

    def __init__(self, backbone: Transformer, sample_prompt: str = "\n", sample_tokens: Annotated[int, Range(0, 100_000, whole=True)] = 200, **text):
        super().__init__(backbone, **text)
        self.sample_prompt, self.sample_tokens = sample_prompt, sample_tokens
        self.val_loss, self.val_early, self.val_late = MeanMetric(), MeanMetric(), MeanMetric()
        self.best_val_loss = float("inf")  # over every validation of the run (nanoGPT reports its best)
        # Olsson et al. 2022's in-context score compares tokens late and early in the context: at about
        # 90% and 10% of it, each over 5% of the positions
        t = backbone.cfg.block_size
        self.early, self.late = (slice(int(a * t), max(int(b * t), int(a * t) + 1)) for a, b in ((0.075, 0.125), (0.875, 0.925)))

    def ssl_step(self, ids):
        inputs, targets = ids[:, :-1], ids[:, 1:]  # (B, T): token t+1 is the target at position t
        hidden = self.backbone(inputs)  # (B, T, C)
        return token_cross_entropy(self.backbone.logits(hidden), targets), hidden.mean(1)

    def validation_step(self, batch, batch_idx):
        ids, _ = batch
        inputs, targets = ids[:, :-1], ids[:, 1:]
        logits = self.backbone.logits(self.backbone(inputs))  # (B, T, V)
        self.val_loss.update(token_cross_entropy(logits, targets), weight=ids.shape[0])
        per_token = token_losses(logits, targets)  # (B, T)
        self.val_early.update(per_token[:, self.early].mean(), weight=ids.shape[0])
        self.val_late.update(per_token[:, self.late].mean(), weight=ids.shape[0])

    def on_validation_epoch_end(self):
        loss = self.val_loss.compute()  # mean over the whole held-out set, then its perplexity
        # in-context score: the loss of tokens at about 90% of the context minus at about 10% (negative:
        # the model predicts better with more context; Olsson et al. 2022 compare the 500th and 50th token)
        in_context = self.val_late.compute() - self.val_early.compute()
        self.best_val_loss = min(self.best_val_loss, float(loss))
        self.log_dict({"val/loss": loss, "val/perplexity": loss.exp(), "val/in_context_score": in_context}, prog_bar=True)
        self.log("val/best_loss", self.best_val_loss)
        for metric in (self.val_loss, self.val_early, self.val_late):
            metric.reset()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[BEST_VAL_KEY] = self.best_val_loss  # a resumed run keeps the best of its first part

    def use_data(self, info: DataInfo) -> None:
        super().use_data(info)
        if self.sample_tokens:  # the sample after training reads its prompt with this vocabulary: checked now, not then
            from ssl_zoo.infer.text import prompt_ids

            try:
                prompt_ids(self, self.sample_prompt)
            except UserError as e:
                raise BadValue("method.sample_prompt", f"method.sample_prompt: {e}") from None

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.best_val_loss = checkpoint.get(BEST_VAL_KEY, float("inf"))

    def report(self) -> dict:
        """A sample of the trained model, printed in the summary."""
        from ssl_zoo.infer.text import SamplingSettings, generate_text

        was_training = self.training
        self.eval()
        settings = SamplingSettings(self.sample_tokens, temperature=0.8, top_k=50, seed=self.seed)
        sample = self.sample_prompt + "".join(generate_text(self, self.sample_prompt, settings))
        self.train(was_training)
        return {"sample": sample}
