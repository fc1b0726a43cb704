"""Autoregressive predictive coding (APC, Chung et al. 2019): a causal model predicts the log-mel
frame `shift` steps ahead of the one it has just read, so it must model what comes next rather than
copy a neighbour."""

from typing import Annotated

from ssl_zoo.errors import BadValue
from ssl_zoo.losses import masked_l1
from ssl_zoo.methods.speech import SpeechMethod
from ssl_zoo.nn.transformer import Transformer, mean_pool
from ssl_zoo.settings import Range


class APC(SpeechMethod):
    name = "apc"
    objective = "autoregressive"
    causal = True  # frame t attends to frames <= t only

    def __init__(self, backbone: Transformer, shift: Annotated[int, Range(1, whole=True)] = 3, **speech):
        super().__init__(backbone, **speech)
        if shift >= (frames := backbone.cfg.block_size):  # frames ahead: the clip must be longer than the shift
            raise BadValue("method.shift", f"method.shift={shift} is not shorter than the {frames} frames of a clip; give "
                           f"1..{frames - 1}")
        self.shift = shift
        self.head = self.prediction_head(hidden_layers=0)  # APC's linear postnet

    def ssl_step(self, waves):
        feats, mask = self.log_mel(waves)  # (B, T, F), (B, T)
        n = self.shift
        hidden = self.backbone(feats[:, :-n], mask[:, :-n])  # (B, T - n, C): reads frames 0 .. T-n-1
        # The prediction at t is compared with frame t + n, where that frame is real (nothing past the end).
        loss = masked_l1(self.head(hidden), feats[:, n:], mask[:, n:])
        return loss, mean_pool(hidden, mask[:, :-n])
