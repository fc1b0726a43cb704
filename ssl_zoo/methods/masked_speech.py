"""Masked speech prediction (Mockingjay, Liu et al. 2020; TERA, Liu et al. 2021): a bidirectional
transformer reconstructs spans of log-mel frames that were hidden from it."""

from typing import Annotated

from ssl_zoo.losses import masked_l1
from ssl_zoo.masking import mask_frames
from ssl_zoo.methods.speech import SpeechMethod
from ssl_zoo.nn.transformer import Transformer, mean_pool
from ssl_zoo.settings import Range


class MaskedSpeech(SpeechMethod):
    name = "masked_speech"
    objective = "masked"
    causal = False  # every frame sees the whole utterance

    def __init__(self, backbone: Transformer, mask_prob: Annotated[float, Range(0, 1, above=True, below=True)] = 0.15,
                 span: Annotated[int, Range(1, whole=True)] = 7, zero_frac: Annotated[float, Range(0, 1)] = 0.8,
                 replace_frac: Annotated[float, Range(0, 1)] = 0.1, freq_mask_width: Annotated[int, Range(0, whole=True)] = 0, **speech):
        super().__init__(backbone, **speech)
        self.mask_prob, self.span, self.zero_frac, self.replace_frac = mask_prob, span, zero_frac, replace_frac
        self.freq_mask_width = freq_mask_width
        self.head = self.prediction_head(hidden_layers=1)

    def ssl_step(self, waves):
        feats, mask = self.log_mel(waves)  # (B, T, F), (B, T)
        inputs, masked = mask_frames(feats, mask, self.step_generator(), self.mask_prob, self.span, self.zero_frac,
                                     self.replace_frac, self.freq_mask_width)  # masked: (B, T, F) bool
        hidden = self.backbone(inputs, mask)  # (B, T, C)
        loss = masked_l1(self.head(hidden), feats, masked)  # reconstruct the original where it was masked
        return loss, mean_pool(hidden, mask)
