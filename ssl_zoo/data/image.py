"""Image data: the embedded `shapes`, CIFAR-10/100 and STL-10 in their on-disk formats, and any folder.

Pretraining batches are uint8 images (B, 3, H, W) with int64 labels (-1 where unknown); the methods
draw their random views from them on the device (see ssl_zoo/views.py).
"""

import pickle
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from ssl_zoo.data.base import BatchedTensors, ProbeSplits, SSLDataModule, content_digest, download, stable_fraction
from ssl_zoo.data.shapes import SHAPES, make_shapes
from ssl_zoo.device import gigabytes, memory_available
from ssl_zoo.errors import BadValue, UserError
from ssl_zoo.settings import Numbers, OneOf, Range

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


class ImageDataModule(SSLDataModule):
    modality = "image"
    leak_unit = "images, by their pixels (image folders: by their file's bytes)"
    # an encoder sees images at the size it was trained at, normalised as it was: other images probed are read so
    bound_to_encoder = ("image_size", "mean", "std")

    def __init__(self, image_size: Annotated[int | None, Range(1, whole=True, nullable=True)],
                 mean: Annotated[tuple, Numbers(Range(), length=3)] = (0.5, 0.5, 0.5),
                 std: Annotated[tuple, Numbers(Range(0, above=True), length=3)] = (0.25, 0.25, 0.25), **kwargs):
        super().__init__(**kwargs)
        self.image_size, self.mean, self.std = image_size, tuple(mean), tuple(std)


class Shapes(ImageDataModule):
    """Embedded: ten procedurally drawn shape classes (see shapes.py); pretraining and probe in one."""

    def __init__(self, num_train: Annotated[int, Range(1, whole=True)] = 20_000, num_test: Annotated[int, Range(1, whole=True)] = 2_000,
                 image_size: int = 32, **kwargs):
        super().__init__(image_size=image_size, **kwargs)
        self.num_train, self.num_test = num_train, num_test
        # uint8 images kept, and one chunk drawn at twice the size in float32 (shapes.py): refused before
        # drawing when this machine cannot hold them
        needed = (num_train + num_test) * 3 * image_size**2 + min(1024, num_train) * 3 * (2 * image_size) ** 2 * 4 * 3
        if needed > (free := memory_available()):
            raise BadValue("data.num_train", f"data.num_train={num_train} + data.num_test={num_test} images of "
                           f"data.image_size={image_size} px need about {gigabytes(needed)} of memory, and this machine has "
                           f"{gigabytes(free)} free; lower data.num_train or data.image_size")

    def prepare(self) -> None:
        self.train_set = BatchedTensors(*make_shapes(self.num_train, self.image_size, seed=self.seed))
        # The test images come from another seed: none of them is a pretraining image.
        self.test_set = BatchedTensors(*make_shapes(self.num_test, self.image_size, seed=self.seed + 1_000_003))
        self.classes = list(SHAPES)

    def pretrain_dataset(self) -> Dataset:
        return self.train_set

    def probe_splits(self) -> ProbeSplits:
        self.setup()
        return ProbeSplits(self.train_set, self.test_set, self.num_classes, "shape")


# --- CIFAR --------------------------------------------------------------------------------------
CIFAR_LAYOUT = {  # folder, train files, test files, label key, torchvision class for downloading
    10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", "CIFAR10"),
    100: ("cifar-100-python", ["train"], ["test"], b"fine_labels", "CIFAR100"),
}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


class CIFARUnpickler(pickle.Unpickler):
    """Reads a CIFAR batch without running code from it: a pickle may name any function to call, so
    only what the format holds (dicts, lists, bytes, ints, numpy arrays) can be built; any other name
    is refused before it is looked up."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
               ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which is not CIFAR data and was not run")
        return super().find_class(module, name)


def read_cifar(root: Path, classes: int, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The pickled batches of the python version of CIFAR: uint8 (N, 3, 32, 32), int64 (N,)."""
    folder, train_files, test_files, label_key, _ = CIFAR_LAYOUT[classes]
    images, labels = [], []
    for name in train_files if train else test_files:
        path = root / folder / name
        try:
            with open(path, "rb") as f:
                batch = CIFARUnpickler(f, encoding="bytes").load()
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[label_key])
        except Exception as e:
            raise UserError(f"cannot read the CIFAR-{classes} batch file {path} ({e}); delete it and download again") from None
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


class CIFAR(ImageDataModule):
    """CIFAR-10 or CIFAR-100 (python version, pickled batches) under `root`."""

    def __init__(self, root: str = "data", classes: Annotated[int, OneOf((10, 100))] = 10, download: bool = False, image_size: int = 32, **kwargs):
        super().__init__(image_size=image_size, **kwargs)
        if classes not in CIFAR_LAYOUT:
            raise UserError(f"data.classes must be 10 or 100, got {classes}")
        self.root, self.variant, self.download = Path(root).expanduser(), classes, download  # variant: 10 or 100

    def prepare(self) -> None:
        folder, *_, torchvision_name = CIFAR_LAYOUT[self.variant]
        if not (self.root / folder).is_dir():
            if not self.download:
                raise UserError(
                    f"CIFAR-{self.variant} is not in {self.root / folder}; set data.root to the folder that "
                    "holds it, or data.download=true to download it (needs internet)"
                )
            import torchvision

            fetch = getattr(torchvision.datasets, torchvision_name)
            download(f"CIFAR-{self.variant}", self.root, lambda: fetch(str(self.root), train=True, download=True))
        self.train_set = BatchedTensors(*read_cifar(self.root, self.variant, train=True))
        self.test_set = BatchedTensors(*read_cifar(self.root, self.variant, train=False))
        self.classes = CIFAR10_CLASSES if self.variant == 10 else [str(i) for i in range(100)]  # CIFAR-100: fine label ids

    def pretrain_dataset(self) -> Dataset:
        return self.train_set

    def probe_splits(self) -> ProbeSplits:
        self.setup()
        return ProbeSplits(self.train_set, self.test_set, self.num_classes, f"cifar{self.variant}")


# --- STL-10 -------------------------------------------------------------------------------------
def read_stl10(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """STL-10's binary files, memory-mapped: uint8 (N, 3, 96, 96) and labels 0..9 (-1 if unlabelled)."""
    x_path = folder / f"{split}_X.bin"
    if not x_path.is_file():
        raise UserError(f"STL-10 file {x_path} is missing; set data.root or data.download=true (needs internet)")
    raw = np.memmap(x_path, dtype=np.uint8, mode="c")  # copy-on-write: a writable view, read lazily
    if raw.size % (3 * 96 * 96):
        raise UserError(f"STL-10 file {x_path} is truncated ({raw.size} bytes); delete it and download again")
    images = torch.from_numpy(raw.reshape(-1, 3, 96, 96)).transpose(2, 3)  # stored column-major
    y_path = folder / f"{split}_y.bin"
    labels = torch.from_numpy(np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1) if y_path.is_file() else None
    return images, labels if labels is not None else torch.full((len(images),), -1)


class STL10(ImageDataModule):
    """STL-10: pretraining on train (+ the 100k unlabelled images), probe on the labelled train/test."""

    def __init__(self, root: str = "data", download: bool = False, unlabeled: bool = True, image_size: int = 96, **kwargs):
        super().__init__(image_size=image_size, **kwargs)
        self.root, self.download, self.unlabeled = Path(root).expanduser(), download, unlabeled

    def prepare(self) -> None:
        folder = self.root / "stl10_binary"
        if not folder.is_dir() and self.download:
            import torchvision

            download("STL-10", self.root, lambda: torchvision.datasets.STL10(str(self.root), split="train", download=True))
        if not folder.is_dir():
            raise UserError(
                f"STL-10 is not in {folder}; set data.root to the folder that holds stl10_binary/, "
                "or data.download=true to download it (needs internet)"
            )
        self.train_set = BatchedTensors(*read_stl10(folder, "train"))
        self.test_set = BatchedTensors(*read_stl10(folder, "test"))
        self.unlabeled_set = BatchedTensors(*read_stl10(folder, "unlabeled")) if self.unlabeled else None
        self.classes = STL10_CLASSES

    def pretrain_dataset(self) -> Dataset:
        if self.unlabeled_set is None:
            return self.train_set
        return BatchedTensors(
            torch.cat([self.train_set.inputs, self.unlabeled_set.inputs]),
            torch.cat([self.train_set.labels, self.unlabeled_set.labels]),
        )

    def probe_splits(self) -> ProbeSplits:
        self.setup()
        return ProbeSplits(self.train_set, self.test_set, self.num_classes, "stl10")


# --- any folder of images -----------------------------------------------------------------------
class ImageFiles(Dataset):
    """Image files decoded on access (in the loader's workers). By default resized (shorter side) and
    centre-cropped to size x size, as a probe reads them; with crops > 0, that many random resized crops
    (RandomResizedCrop of crop_scale, crop_ratio) of the full-resolution picture instead, (crops, 3,
    size, size): the views of pretraining, cut from the whole image and not from a small centre."""

    def __init__(self, files: list[Path], labels: list[int], size: int, crops: int = 0,
                 crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3)):
        self.files, self.labels, self.size = files, labels, size
        self.crops, self.crop_scale, self.crop_ratio = crops, tuple(crop_scale), tuple(crop_ratio)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from torchvision.io import ImageReadMode, decode_image
        from torchvision.transforms import v2
        from torchvision.transforms.v2 import functional as TF

        try:
            image = decode_image(str(self.files[i]), mode=ImageReadMode.RGB)
        except Exception as e:
            raise UserError(f"corrupt image file {self.files[i]} ({e}); remove or replace it") from None
        if self.crops:
            crop = v2.RandomResizedCrop(self.size, scale=self.crop_scale, ratio=self.crop_ratio, antialias=True)
            return torch.stack([crop(image) for _ in range(self.crops)]), self.labels[i]
        image = TF.center_crop(TF.resize(image, self.size, antialias=True), [self.size, self.size])
        return image, self.labels[i]

    def digests(self, indices) -> list[bytes]:
        return [content_digest(self.files[i].read_bytes()) for i in indices]  # the same picture twice is one


def check_image(path: Path) -> None:
    """Refuse a file whose image data cannot be decoded, naming it."""
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as e:
        raise UserError(f"corrupt image file {path} ({type(e).__name__}); remove or replace it") from None


class ImageFolder(ImageDataModule):
    """Any folder of images. Sub-folders name the classes (path/<class>/*.png); a folder with no
    sub-folders is unlabelled and serves pretraining only. Pretraining reads pretrain_crops random
    resized crops of each full-resolution picture, cut in the loader's workers (the methods' views
    then flip and colour them); the probe reads the resized centre. The probe's test images are either a
    folder of their own (test_path, with the same class sub-folders) or test_fraction of the labelled
    images, chosen by a hash of their names (the same whatever the seed); pretraining never reads them."""

    def __init__(
        self,
        path: str,
        image_size: Annotated[int, Range(1, whole=True)] = 64,
        test_fraction: Annotated[float, Range(0, 0.99)] = 0.2,
        test_path: str | None = None,
        pretrain_crops: Annotated[int, OneOf((0, 2))] = 2,  # two views (SimCLR, BYOL; the others read the first)
        crop_scale: Annotated[tuple[float, float], Numbers(Range(0, 1, above=True), length=2, ordered=True)] = (0.08, 1.0),
        verify: bool = True,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        **kwargs,
    ):
        super().__init__(image_size=image_size, mean=mean, std=std, **kwargs)
        self.path, self.test_fraction, self.verify = Path(path).expanduser(), test_fraction, verify
        self.test_path = Path(test_path).expanduser() if test_path else None
        self.pretrain_crops, self.crop_scale = pretrain_crops, tuple(crop_scale)

    def read_folder(self, path: Path, key: str, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
        """(files, labels, classes) of a folder of images; labels -1 where a file is not in a class
        sub-folder; with classes given (the test folder), its sub-folders must be among them."""
        if not path.is_dir():
            problem = "is a file, not a folder" if path.exists() else "does not exist"
            raise UserError(f"image folder {path} {problem}; set {key} to a folder of images (its sub-folders: the classes)")
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise UserError(f"image folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                            f"set {key} to a folder of images")
        if self.verify:
            for f in files:
                check_image(f)
        class_of = lambda f: f.relative_to(path).parts[0] if len(f.relative_to(path).parts) > 1 else None  # noqa: E731
        found = sorted({c for f in files if (c := class_of(f)) is not None})
        if classes is not None and (unknown := [c for c in found if c not in classes]):
            raise UserError(f"the test folder {path} has classes the training folder has not ({', '.join(unknown[:5])}); "
                            f"give {key} the class sub-folders of data.path")
        classes = found if classes is None else classes
        index = {c: i for i, c in enumerate(classes)}
        return files, [index.get(class_of(f), -1) for f in files], classes

    def prepare(self) -> None:
        files, labels, self.classes = self.read_folder(self.path, "data.path")
        if self.test_path is not None:
            train_dir, test_dir = self.path.resolve(), self.test_path.resolve()
            if train_dir == test_dir or train_dir in test_dir.parents or test_dir in train_dir.parents:
                raise UserError(f"data.test_path {self.test_path} overlaps data.path {self.path} (the same folder, or one "
                                "inside the other): the probe would test on pretraining images; give a folder apart")
            test_files, test_labels, _ = self.read_folder(self.test_path, "data.test_path", self.classes)
            self.test_images = ImageFiles(test_files, test_labels, self.image_size)
            self.train_images = ImageFiles(files, labels, self.image_size)
        else:
            is_test = [y >= 0 and stable_fraction(f.relative_to(self.path).as_posix()) < self.test_fraction
                       for f, y in zip(files, labels)]
            if self.test_fraction > 0 and not any(is_test) and any(y >= 0 for y in labels):
                is_test[labels.index(next(y for y in labels if y >= 0))] = True  # a small folder: still one test image
            self.test_images = ImageFiles([f for f, t in zip(files, is_test) if t], [y for y, t in zip(labels, is_test) if t],
                                          self.image_size)
            self.train_images = ImageFiles([f for f, t in zip(files, is_test) if not t],
                                           [y for y, t in zip(labels, is_test) if not t], self.image_size)

    def pretrain_dataset(self) -> Dataset:
        if not self.pretrain_crops:  # the resized centre of each picture; the views are cropped from it on the device
            return self.train_images
        images = self.train_images  # never the probe's test images
        return ImageFiles(images.files, images.labels, self.image_size, self.pretrain_crops, self.crop_scale)

    def probe_splits(self) -> ProbeSplits:
        self.setup()
        if self.num_classes < 2:
            raise UserError(
                f"image folder {self.path} has {self.num_classes} class sub-folders; labels (the probe's, embed-plot's "
                "colours) need at least 2 (path/<class>/<image>); to pretrain without them, train with probe.enabled=false"
            )
        if not len(self.test_images):
            raise UserError(f"image folder {self.path} leaves no test images for the probe; raise data.test_fraction "
                            "or give data.test_path")
        labelled = [i for i, y in enumerate(self.train_images.labels) if y >= 0]
        return ProbeSplits(Subset(self.train_images, labelled), self.test_images, self.num_classes, "folder_class")
