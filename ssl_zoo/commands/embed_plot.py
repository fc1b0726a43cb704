"""`ssl-zoo embed-plot`: 2-D t-SNE maps of a saved run's probe features beside those of its
random-init encoder, coloured by label: <run dir>/embeddings.png (embeddings_<data>[_<task>].png
for other data)."""

from pathlib import Path

from omegaconf import DictConfig

from ssl_zoo.atomic import check_can_write
from ssl_zoo.build import random_init
from ssl_zoo.errors import UserError
from ssl_zoo.eval.probe import extract_features, standardise, subsample
from ssl_zoo.plots import embedding_maps
from ssl_zoo.run.probe import beside_run, load_for_probe
from ssl_zoo.settings import PATH, PATH_OR_NULL, Range

EMBED_PLOT = {"max_points": Range(2, whole=True), "perplexity": Range(0, above=True),  # t-SNE's points and perplexity
              "checkpoint": PATH, "out": PATH_OR_NULL}


def embed_plot(cfg: DictConfig) -> Path:
    from sklearn.manifold import TSNE

    if cfg.split not in ("train", "test"):
        raise UserError(f"split must be train or test, got '{cfg.split}'")
    method, train_cfg, run_cfg, datamodule = load_for_probe(cfg, **{"": EMBED_PLOT})
    path = Path(cfg.out) if cfg.get("out") else beside_run(cfg.checkpoint, train_cfg, run_cfg, "embeddings", ".png")
    check_can_write(path, "out")  # before the t-SNE, not after
    check_image_format(path)
    datamodule.setup()
    splits = datamodule.probe_splits()
    if splits is None:
        raise UserError(f"data '{run_cfg.data.name}' has no labels to colour the map by; pick data with a probe task (data=...)")
    dataset = subsample(splits.test if cfg.split == "test" else splits.train, cfg.max_points, cfg.seed)
    maps = {}
    for name, encoder in (("pretrained", method), ("random init", random_init(run_cfg).to(method.device))):
        encoder.eval()
        features, labels = extract_features(encoder.embed, dataset, cfg.probe.batch_size, method.device)
        [features] = standardise(features.flatten(1))  # a layer mix's (N, L, D): every layer side by side
        perplexity = min(cfg.perplexity, (len(features) - 1) / 3)
        points = TSNE(2, perplexity=perplexity, init="pca", random_state=cfg.seed).fit_transform(features.numpy())
        maps[f"{train_cfg.method.name}: {name}"] = (points, labels.numpy())
        print(f"t-SNE of {len(features)} {cfg.split} items, {name} encoder: done")
    title = f"{train_cfg.method.name} ({train_cfg.model.name}) on {run_cfg.data.name}: probe task '{splits.task}', t-SNE"
    return embedding_maps(maps, [str(c) for c in datamodule.classes], title, path)


def check_image_format(path: Path) -> None:
    """A file name whose suffix matplotlib can write (it would say so only after the t-SNE)."""
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise UserError(f"out={path}: matplotlib cannot write '{path.suffix or 'no suffix'}' images; end the name in one of "
                        f"{', '.join('.' + f for f in sorted(formats))} (e.g. .png)")


def run(cfg: DictConfig) -> None:
    print(f"written: {embed_plot(cfg)}")
