"""SSLMethod: what every method shares, and nothing more.

A method implements `ssl_step(inputs) -> (loss, features)` for pretraining and `embed(inputs) -> (B, D)`
for the probe. The base owns the encoder (`backbone`), the optimizer and its warmup-cosine schedule,
per-step randomness that survives a resume, the NaN guard and the optional online linear probe. What
it needs to know about the data it is handed (`use_data`); it never reads a datamodule.
"""

from typing import Annotated

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ssl_zoo.data.base import DataInfo
from ssl_zoo.errors import UserError
from ssl_zoo.optim import OptimConfig, build_optimizer, param_groups, warmup_cosine_scheduler
from ssl_zoo.settings import Nested


class SSLMethod(pl.LightningModule):
    name: str = "?"
    modality: str = "?"  # text | image | speech
    objective: str = "?"  # masked | autoregressive | joint-embedding: the row of the grid (compare --grid)

    def __init__(self, backbone: nn.Module, optim: Annotated[dict | None, Nested(OptimConfig)] = None, online_probe: bool = True,
                 seed: int = 0):
        super().__init__()
        self.backbone = backbone
        self.embed_dim = backbone.out_dim  # width of embed()'s features
        self.optim = OptimConfig(**(optim or {}))
        self.use_online_probe = online_probe
        self.seed = seed
        self.batch_size: int | None = None  # per device, for the lr scaling rule: from use_data()
        self.online_head: nn.Module | None = None
        self.micro_batch = 0  # which micro-batch of the optimizer step (gradient accumulation), set by training_step

    # --- the two things a method defines -------------------------------------------------------
    def ssl_step(self, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Pretraining loss of a batch and the (B, D) features of its first view (for the online probe)."""
        raise NotImplementedError

    def embed(self, inputs) -> torch.Tensor:
        """Features for the probe: (B, D). The probe calls it under no_grad (frozen features); full
        fine-tuning calls it with gradients."""
        raise NotImplementedError

    def baseline_embeddings(self) -> dict:
        """{name: embed-like function} of features without learning that the probe also scores (speech:
        the log-mel input itself, SUPERB's FBANK row); none by default."""
        return {}

    def report(self) -> dict:
        """Extra figures for results.json after training (e.g. a text sample); none by default."""
        return {}

    # --- what the data tells the method, and what a datamodule needs to feed it ----------------
    def use_data(self, info: DataInfo) -> None:
        """Called by the trainer before fitting, with what the data it pretrains on tells it."""
        self.batch_size = info.batch_size
        if self.use_online_probe and self.online_head is None and info.num_classes >= 2:  # one class: nothing to tell apart
            self.attach_online_probe(info.num_classes)

    def positive_pair(self, dataset, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Encodings (N, D), (N, D) of two random views of the same items of dataset, for the probe's
        alignment diagnostic (Wang & Isola 2020); None for a method that draws no views."""
        return None

    def data_settings(self) -> dict:
        """Keyword arguments for a datamodule that feeds this model its inputs as it was trained
        (text: its tokenizer); none by default."""
        return {}

    # --- shared machinery ----------------------------------------------------------------------
    def step_generator(self) -> torch.Generator:
        """Random numbers for this micro-batch's views or masks, a function of (seed, optimizer step,
        rank, micro-batch) only, so that a resumed run draws exactly what the uninterrupted run would
        have drawn, and under gradient accumulation each micro-batch of one step draws its own."""
        key = (self.seed, self.global_step, self.global_rank)
        if self.micro_batch:  # the first micro-batch keeps the key of a run without accumulation
            key += (self.micro_batch,)
        seed = hash(key) & 0xFFFF_FFFF_FFFF
        return torch.Generator(device=self.device).manual_seed(seed)

    def attach_online_probe(self, num_classes: int) -> None:
        # Standardised features, as the offline probe sees them; the running statistics follow the
        # encoder as it changes.
        self.online_head = nn.Sequential(nn.BatchNorm1d(self.embed_dim, affine=False), nn.Linear(self.embed_dim, num_classes))
        self.online_acc = MulticlassAccuracy(num_classes, average="micro", ignore_index=-1)

    def training_step(self, batch, batch_idx):
        inputs, labels = batch
        # Lightning steps the optimizer after every accumulate_grad_batches batches of an epoch (batch_idx
        # is restored on resume), so this is the micro-batch's place in its optimizer step.
        self.micro_batch = batch_idx % self.trainer.accumulate_grad_batches
        loss, features = self.ssl_step(inputs)
        if not torch.isfinite(loss):
            raise UserError(
                f"the training loss became {loss.item()} at step {self.global_step}: training stopped, "
                "the last good checkpoint is kept; lower the learning rate (method.optim.lr=...)"
            )
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        if self.online_head is not None and (labels >= 0).any():
            # Detached features: the probe watches the encoder without steering it.
            logits = self.online_head(features.detach())
            loss = loss + F.cross_entropy(logits, labels, ignore_index=-1)
            self.online_acc(logits, labels)
            self.log("train/online_probe_acc", self.online_acc, prog_bar=True)
        return loss

    def configure_optimizers(self):
        cfg = self.optim
        lr = cfg.lr
        if cfg.scale_lr:
            if self.batch_size is None:
                raise UserError("method.optim.scale_lr needs the batch size: train through ssl-zoo train (or call use_data)")
            global_batch = self.batch_size * self.trainer.world_size * self.trainer.accumulate_grad_batches
            lr = cfg.lr * global_batch / 256
        head = self.online_head
        # Every parameter of the method, those set on it directly too (MAE's mask token), but the online
        # probe's; a teacher's (requires_grad off) are left out by param_groups.
        method_params = [p for n, p in self.named_parameters() if not n.startswith("online_head.")]
        groups = param_groups(method_params, cfg.weight_decay, cfg.exclude_bias_and_norm)
        if head is not None:  # the probe is a plain linear classifier: no decay, no LARS adaptation
            groups.append({"params": list(head.parameters()), "weight_decay": 0.0, "lars_adapt": False})
        optimizer = build_optimizer(cfg, groups, lr, clipping=bool(self.trainer.gradient_clip_val))
        scheduler = warmup_cosine_scheduler(optimizer, cfg, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
