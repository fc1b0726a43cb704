import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_zoo.data.image import CIFAR, ImageFolder, Shapes, read_stl10
from ssl_zoo.data.shapes import SHAPES, make_shapes
from ssl_zoo.errors import UserError


def write_cifar10(root, per_batch=6):
    """The python version of CIFAR-10 as its pickled batches are laid out on disk."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, size=per_batch))
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": []}, f)
        batches[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    return batches


def test_cifar10_reads_pickled_batches(tmp_path):
    batches = write_cifar10(tmp_path)
    dm = CIFAR(root=str(tmp_path), classes=10, batch_size=4)
    dm.setup()
    train, test, num_classes, task = dm.probe_splits()
    assert (len(train), len(test), num_classes, task) == (30, 6, 10, "cifar10")
    data, labels = batches["data_batch_2"]
    x, y = train[6]  # the first image of the second batch
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x[1], torch.from_numpy(data[0, 1024:2048].reshape(32, 32)))  # green plane, row-major
    assert y.item() == labels[0]
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and labels.shape == (4,)


def test_cifar_missing_names_the_folder_and_the_download_option(tmp_path):
    with pytest.raises(UserError, match=r"cifar-10-batches-py.*data\.download=true"):
        CIFAR(root=str(tmp_path)).setup()


def test_cifar_corrupt_batch_is_named(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="test_batch"):
        CIFAR(root=str(tmp_path)).setup()


def write_folder(root, classes=("cat", "dog"), per_class=5, suffixes=(".png", ".jpg")):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            array = rng.integers(0, 256, size=(20 + i, 30, 3), dtype=np.uint8)
            Image.fromarray(array).save(root / c / f"{i}{suffixes[i % len(suffixes)]}")


def test_image_folder_labels_from_subfolders_png_and_jpeg(tmp_path):
    write_folder(tmp_path)
    dm = ImageFolder(path=str(tmp_path), image_size=16, batch_size=4, num_workers=0)
    dm.setup()
    assert dm.classes == ["cat", "dog"] and dm.num_classes == 2
    train, test, num_classes, task = dm.probe_splits()
    assert len(train) + len(test) == 10 and len(test) == 2 and num_classes == 2
    x, y = test[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8 and y in (0, 1)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 2, 3, 16, 16) and images.dtype == torch.uint8  # two crops of each picture, cut by the loader


def test_unlabelled_folder_pretrains_but_cannot_be_probed(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, size=(10, 10, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    dm = ImageFolder(path=str(tmp_path), image_size=8, batch_size=2)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 2, 3, 8, 8) and (labels == -1).all()
    with pytest.raises(UserError, match="class sub-folders"):
        dm.probe_splits()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: p, "holds no images"),
    ],
)
def test_image_folder_missing_or_empty(tmp_path, make, message):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match=message):
        ImageFolder(path=str(make(tmp_path))).setup()


def test_corrupt_image_is_named(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(UserError, match=r"corrupt image file .*broken\.jpg"):
        ImageFolder(path=str(tmp_path)).setup()


def test_stl10_binary_layout(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    images = np.random.default_rng(0).integers(0, 256, size=(3, 3, 96, 96), dtype=np.uint8)
    images.transpose(0, 1, 3, 2).tofile(folder / "train_X.bin")  # STL-10 stores images column-major
    np.array([1, 10, 5], dtype=np.uint8).tofile(folder / "train_y.bin")
    x, y = read_stl10(folder, "train")
    assert torch.equal(x, torch.from_numpy(images)) and y.tolist() == [0, 9, 4]


def test_shapes_are_deterministic_balanced_and_varied():
    a, la = make_shapes(200, 32, seed=5)
    b, lb = make_shapes(200, 32, seed=5)
    c, _ = make_shapes(200, 32, seed=6)
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, c)
    assert torch.bincount(la, minlength=len(SHAPES)).tolist() == [20] * len(SHAPES)
    assert a.shape == (200, 3, 32, 32) and a.dtype == torch.uint8
    assert a.float().std(dim=(1, 2, 3)).min() > 10  # no blank images


def test_shapes_datamodule_probe_test_set_is_not_the_train_set():
    dm = Shapes(num_train=50, num_test=20, image_size=16, seed=0)
    train, test, num_classes, task = dm.probe_splits()
    assert (len(train), len(test), num_classes, task) == (50, 20, 10, "shape")
    assert not any(torch.equal(test[0][0], train[i][0]) for i in range(50))


def test_image_folder_pretraining_crops_come_from_the_whole_picture_not_its_centre(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    picture = np.zeros((40, 120, 3), dtype=np.uint8)  # wide: red | green | blue thirds; the centre square is green
    picture[:, :40, 0] = picture[:, 40:80, 1] = picture[:, 80:, 2] = 255
    for c in ("a", "b"):
        for i in range(3):
            Image.fromarray(picture).save(tmp_path / c / f"{i}.png")
    data = ImageFolder(path=str(tmp_path), image_size=16, verify=False)
    data.setup()
    probe_image, _ = data.probe_splits().test[0]
    assert probe_image[1].float().mean() > 240 and probe_image[[0, 2]].float().mean() < 10  # the probe reads the centre: green
    torch.manual_seed(0)
    crops = torch.cat([data.pretrain_dataset()[0][0] for _ in range(20)])  # (40, 3, 16, 16)
    red = (crops[:, 0].float().mean((1, 2)) > 128).sum()
    blue = (crops[:, 2].float().mean((1, 2)) > 128).sum()
    assert red > 0 and blue > 0  # crops reach the edges of the picture
    assert not torch.equal(crops[0], crops[1])  # each view its own crop
    none = ImageFolder(path=str(tmp_path), image_size=16, verify=False, pretrain_crops=0)
    none.setup()
    assert none.pretrain_dataset()[0][0].shape == (3, 16, 16)


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_image_methods_pretrain_on_the_loaders_crops_of_a_folder(method, tmp_path):
    from ssl_zoo import api

    write_folder(tmp_path / "pics", per_class=8)
    results = api.train(f"method={method}", "data=image_folder", f"data.path={tmp_path / 'pics'}", "data.image_size=16",
                        "data.batch_size=4", "data.num_workers=0", "trainer=debug", "trainer.max_steps=2", "probe.steps=5",
                        "probe.weight_decays=[0.0]", run_dir=tmp_path / "run")
    assert results["train"]["steps"] == 2 and results["probe"]["leak"]["in_pretraining"] == 0
    assert results["probe"]["diagnostics"]["alignment"] >= 0


def test_a_crafted_cifar_batch_never_runs_its_code(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # what a malicious batch file does: call a function while it is read
            import os

            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Payload(), b"labels": [0]}, f)
    with pytest.raises(UserError, match=r"cannot read the CIFAR-10 batch file .*data_batch_1 \(it names posix.system, which is "
                                        r"not CIFAR data and was not run\)"):
        CIFAR(root=str(tmp_path)).setup()
    assert not marker.exists()
