"""BERT (Devlin et al., 2019): a bidirectional transformer that fills in masked tokens."""

from typing import Annotated

import torch
from torchmetrics import MeanMetric

from ssl_zoo.losses import IGNORE, token_cross_entropy
from ssl_zoo.masking import mask_tokens
from ssl_zoo.methods.text import TextMethod
from ssl_zoo.nn.transformer import Transformer
from ssl_zoo.settings import Range


class BERT(TextMethod):
    name = "bert"
    objective = "masked"
    causal = False  # every position sees the whole sequence

    def __init__(self, backbone: Transformer, select_prob: Annotated[float, Range(0, 1, above=True)] = 0.15,
                 mask_frac: Annotated[float, Range(0, 1)] = 0.8, random_frac: Annotated[float, Range(0, 1)] = 0.1, **text):
        super().__init__(backbone, **text)
        self.select_prob, self.mask_frac, self.random_frac = select_prob, mask_frac, random_frac
        self.val_loss, self.val_acc = MeanMetric(), MeanMetric()

    def masked_step(self, ids, generator):
        """Loss, logits and targets at the selected positions only (N, V), (N,); hidden states (B, T, C)."""
        ids = ids[:, : self.backbone.cfg.block_size]  # (B, T): the windows carry one id more, for GPT
        inputs, targets = mask_tokens(ids, generator, self.backbone.cfg.vocab_size, self.select_prob,
                                      self.mask_frac, self.random_frac)
        hidden = self.backbone(inputs)  # (B, T, C)
        chosen = targets != IGNORE  # the output layer runs on the ~15% selected positions only
        logits = self.backbone.logits(hidden[chosen])  # (N, V)
        return token_cross_entropy(logits[None], targets[chosen][None]), logits, targets[chosen], hidden

    def ssl_step(self, ids):
        loss, _, _, hidden = self.masked_step(ids, self.step_generator())
        return loss, hidden.mean(1)

    def validation_step(self, batch, batch_idx):
        ids, _ = batch
        g = torch.Generator(device=self.device).manual_seed(self.seed * 100_003 + batch_idx)  # same masks every time
        loss, logits, targets, _ = self.masked_step(ids, g)
        self.val_loss.update(loss, weight=len(targets))
        self.val_acc.update((logits.argmax(-1) == targets).float().mean(), weight=len(targets))

    def on_validation_epoch_end(self):
        # top-1 accuracy on the held-out tokens that were selected for masking
        self.log_dict({"val/loss": self.val_loss.compute(), "val/masked_acc": self.val_acc.compute()}, prog_bar=True)
        self.val_loss.reset()
        self.val_acc.reset()
