"""data2vec (Baevski et al. 2022): one objective for text, speech and images. A student reads the
masked input; an EMA teacher (the student's own weights, averaged) reads it unmasked; at the masked
positions the student regresses the average of the teacher's top K blocks' feed-forward outputs
(before the residual is added, as fairseq's reference takes them), each normalised: over time for
speech (instance norm), over the channels for text and images (layer norm without parameters), as the
paper does. Otherwise only the masking is the modality's own: BERT's tokens for text (the loss at the [MASK] positions only, as
fairseq), spans of frames for speech (as wav2vec 2.0), blocks of patches for images (as BEiT). One
option for text, not in the paper: centre_positions takes each position's batch mean out of the
targets, against a small model's targets becoming mostly position, which the student predicts without
reading.

One class per modality (method=data2vec_text, data2vec_speech, data2vec_image), each with its own
settings only; Data2Vec holds what they share: the teacher, the targets and the loss.
"""

from typing import Annotated

import torch
from torch import nn

from ssl_zoo.data.tokenizer import MASK_ID
from ssl_zoo.errors import BadValue, UserError
from ssl_zoo.losses import IGNORE, data2vec_targets, masked_mse
from ssl_zoo.masking import block_patches, mask_tokens, span_mask
from ssl_zoo.methods.image import ImageMethod, require_vit
from ssl_zoo.methods.speech import SpeechMethod
from ssl_zoo.methods.teacher import MomentumTeacher, ema_copy
from ssl_zoo.methods.text import TextMethod
from ssl_zoo.nn.transformer import Transformer, mean_pool
from ssl_zoo.nn.vit import ViT
from ssl_zoo.settings import FLAG, OneOf, Range

# The settings the three classes share: the teacher's top layers averaged, its EMA momentum, the targets' norm.
TopK = Annotated[int, Range(1, whole=True)]
Tau = Annotated[float, Range(0, 1)]
TargetNorm = Annotated[str | None, OneOf((None, "instance", "layer"))]


class Data2Vec(MomentumTeacher):
    """The objective, shared: the teacher, its targets, the loss. The classes below give it each
    modality's inputs and masking."""

    name = "data2vec"
    objective = "joint-embedding"  # two encoders' embeddings of one input made to agree (targets in latent space, as BYOL's)
    target_norm: str  # each modality's class: the paper's normalisation of a target layer (method.target_norm=null)

    def init_teacher(self, top_k: int, tau_base: float, tau_end: float, target_norm: str | None) -> None:
        """target_norm: how each target layer is normalised, "instance" (over time) or "layer" (over the
        channels); None: the paper's choice for the modality (the class's target_norm)."""
        self.target_norm = target_norm or self.target_norm
        self.init_momentum("linear", tau_base, tau_end)  # the paper: 0.999 -> 0.9999 over its first updates, then constant
        self.top_k = top_k
        self.teacher = ema_copy(self.backbone).eval()  # moved only by EMA of the student
        self.regression_head = nn.Linear(self.backbone.out_dim, self.backbone.out_dim)

    def encoder_blocks(self):
        return (self.backbone.transformer if isinstance(self.backbone, ViT) else self.backbone).blocks

    def regress(self, student: torch.Tensor, teacher_ffns: list[torch.Tensor], chosen: torch.Tensor,
                real: torch.Tensor | None = None, centre_positions: bool = False) -> torch.Tensor:
        """The loss: the student's states (B, T, C) through the regression head against the targets
        (B, T, C) made of the teacher's blocks' feed-forward outputs, at the chosen (masked) positions
        (B, T) only."""
        targets = data2vec_targets(teacher_ffns, self.top_k, real, centre_positions, self.target_norm)
        return masked_mse(self.regression_head(student), targets, chosen)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the targets come without dropout, as the reference's teacher reads in eval mode
        return self

    def teacher_pairs(self):
        return [(self.backbone, self.teacher)]


class Data2VecText(Data2Vec, TextMethod):
    modality = "text"
    causal = False
    target_norm = "layer"

    def __init__(self, backbone: Transformer, top_k: TopK = 3, tau_base: Tau = 0.99, tau_end: Tau = 0.999,
                 target_norm: TargetNorm = None, select_prob: Annotated[float, Range(0, 1, above=True)] = 0.15,
                 centre_positions: Annotated[bool, FLAG] = False, **settings):
        super().__init__(backbone, **settings)
        self.select_prob, self.centre_positions = select_prob, centre_positions
        self.init_teacher(top_k, tau_base, tau_end, target_norm)

    @staticmethod
    def centred_batch_problem(batch_size: int) -> str | None:
        """Centred text targets need two sequences or more per batch: one sequence's are all 0."""
        if batch_size < 2:
            return (f"method.centre_positions needs batches of 2 sequences or more, not {batch_size}: "
                    "set data.batch_size=2 or more, or method.centre_positions=false")
        return None

    def ssl_step(self, ids):
        ids = ids[:, : self.backbone.cfg.block_size]  # (B, T): the windows carry one id more, for GPT
        if self.centre_positions and (problem := self.centred_batch_problem(len(ids))):  # checked at start-up too (build.py)
            raise UserError(problem)
        inputs, targets = mask_tokens(ids, self.step_generator(), self.backbone.cfg.vocab_size, self.select_prob)
        masked = (inputs == MASK_ID) & (targets != IGNORE)  # (B, T): scored; the 10% kept or randomised are not
        student = self.backbone(inputs)  # (B, T, C)
        with torch.no_grad():
            teacher = self.teacher(ids, ffn_outputs=True)  # n_layer of (B, T, C)
        return self.regress(student, teacher, masked, centre_positions=self.centre_positions), student.mean(1)


class Data2VecSpeech(Data2Vec, SpeechMethod):
    modality = "speech"
    causal = False
    target_norm = "instance"

    def __init__(self, backbone: Transformer, top_k: TopK = 3, tau_base: Tau = 0.99, tau_end: Tau = 0.999,
                 target_norm: TargetNorm = None, speech_mask_prob: Annotated[float, Range(0, 1, above=True, below=True)] = 0.5,
                 speech_span: Annotated[int, Range(1, whole=True)] = 10, **settings):
        super().__init__(backbone, **settings)
        self.mask_prob, self.span = speech_mask_prob, speech_span
        self.init_teacher(top_k, tau_base, tau_end, target_norm)

    def ssl_step(self, waves):
        feats, real = self.log_mel(waves)  # (B, T, F), (B, T)
        chosen = span_mask(real.sum(1), feats.shape[1], self.mask_prob, self.span, self.step_generator()) & real
        student = self.backbone(feats.masked_fill(chosen[..., None], 0.0), real)  # masked frames zeroed
        with torch.no_grad():
            teacher = self.teacher(feats, real, ffn_outputs=True)
        return self.regress(student, teacher, chosen, real), mean_pool(student, real)


class Data2VecImage(Data2Vec, ImageMethod):
    modality = "image"
    target_norm = "layer"

    def __init__(self, backbone: ViT, views: nn.Module, top_k: TopK = 3, tau_base: Tau = 0.99, tau_end: Tau = 0.999,
                 target_norm: TargetNorm = None, image_mask_ratio: Annotated[float, Range(0, 0.99, above=True)] = 0.6,
                 image_block: Annotated[int, Range(1, whole=True)] = 2, **settings):
        require_vit(backbone, "data2vec_image")
        if image_block > (grid := backbone.image_size // backbone.patch_size):
            raise BadValue("method.image_block", f"method.image_block={image_block} is wider than the {grid} x {grid} grid of "
                           f"patches; give 1..{grid}")
        super().__init__(backbone, [views], **settings)
        self.mask_ratio, self.block = image_mask_ratio, image_block
        self.mask_patch = nn.Parameter(torch.zeros(backbone.patch_dim))  # what a hidden patch reads as, learned
        self.init_teacher(top_k, tau_base, tau_end, target_norm)

    def ssl_step(self, images):
        g = self.step_generator()
        x = self.view(0, images, g)  # (B, 3, S, S): the teacher sees this view whole
        grid = self.backbone.image_size // self.backbone.patch_size
        chosen = block_patches(len(x), grid, self.block, self.mask_ratio, g, x.device)  # (B, N)
        patches = self.backbone.patches(x)  # (B, N, P*P*3)
        student = self.backbone.transformer(torch.where(chosen[..., None], self.mask_patch.to(patches.dtype), patches))
        with torch.no_grad():
            teacher = self.teacher.tokens(x, ffn_outputs=True)
        return self.regress(student, teacher, chosen), mean_pool(student)
