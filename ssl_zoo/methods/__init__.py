"""One LightningModule per method; each reads like its paper's pseudo-code."""
