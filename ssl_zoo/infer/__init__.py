"""Inference: decoding, text from trained text models, continuous batching, the serving engine, prepacked
linear layers, and loading a text model in its inference dtype."""
