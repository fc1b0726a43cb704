"""The probe's test items never occur in what pretraining reads, for every data set: each test checks
it directly (not through leak_check alone), and shows that leak_check would see a leak if there were one."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from ssl_zoo.data.base import content_digests, stable_fraction
from ssl_zoo.data.image import ImageFolder, Shapes
from ssl_zoo.data.speech import AudioFolder, SpokenWords
from ssl_zoo.data.text import ICLMix, PythonStdlib, occur_in
from ssl_zoo.errors import UserError


def test_occur_in_finds_whole_token_runs_only():
    ids = np.array([1, 2, 3, 513, 7], dtype=np.uint16)  # 513 is the bytes 01 02: "1, 2" must not match inside it
    assert occur_in(ids, np.array([[1, 2], [3, 513], [2, 1], [7, 7]])).tolist() == [True, True, False, False]
    assert occur_in(np.array([513, 0], dtype=np.uint16), np.array([[2]])).tolist() == [False]


def test_python_stdlib_tests_on_files_the_corpus_never_reads(monkeypatch):
    data = PythonStdlib(max_chars=400_000, tokenizer="char", block_size=64, probe_length=32, probe_test_per_class=20)
    read = []
    original = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: read.append(self) or original(self, *a, **k))
    corpus = "".join(data.corpus_chunks())
    test_files = data.test_files()
    assert test_files and not test_files & set(read)  # split by file: no test file is read for the corpus
    for package, (train, test) in data.probe_files().items():
        assert train and test and not set(train) & set(test), package
    data.setup()
    splits = data.probe_splits()
    snippets = [data.tokenizer.decode(row.tolist()) for row in splits.test.inputs]
    assert len(snippets) == 200 and not any(s in corpus for s in snippets)  # char tokens: the text itself
    leak = data.leak_check()
    assert leak["in_pretraining"] == 0 and leak["test_items"] == 200 and leak["by"] == "file"
    assert sorted(leak["test_files"]) == sorted(data.packages)


def test_icl_mix_probe_tests_on_evaluation_words_the_corpus_never_holds():
    data = ICLMix(episodes=400, natural_chars=20_000, block_size=64, probe_length=16, probe_train_per_class=20,
                  probe_test_per_class=10)
    data.setup()
    test = data.probe_splits().test.inputs.numpy()
    assert not occur_in(data.train_ids, test).any() and not occur_in(np.asarray(data.train_ids), test[:, :12]).all()
    leak = data.leak_check()
    assert leak["in_pretraining"] == 0 and leak["dropped_before"] <= 0.05 * leak["test_items"]
    assert set(leak["families"].values()) == {"trained", "held_out"}


def test_shapes_test_images_are_not_pretraining_images():
    data = Shapes(num_train=3000, num_test=500, image_size=32)
    data.setup()
    seen = {img.numpy().tobytes() for img in data.pretrain_dataset().inputs}
    assert not any(img.numpy().tobytes() in seen for img in data.probe_splits().test.inputs)
    assert data.leak_check() == {"unit": data.leak_unit, "test_items": 500, "in_pretraining": 0}


def test_spoken_words_test_takes_are_not_pretraining_utterances():
    data = SpokenWords(words=["yes", "no"], num_voices=4, takes=4, test_takes=1)
    data.setup()
    pretrain, test = data.pretrain_dataset(), data.probe_splits().test
    assert not set(pretrain.indices) & set(test.indices)
    assert not set(content_digests(pretrain)) & set(content_digests(test))
    assert data.leak_check()["in_pretraining"] == 0


def write_images(root: Path, per_class: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, size=(24, 20 + i, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_image_folder_pretrains_on_the_train_part_only_and_a_copied_picture_is_caught(tmp_path):
    write_images(tmp_path / "pics", per_class=20)
    data = ImageFolder(path=str(tmp_path / "pics"), image_size=16)
    data.setup()
    pretrain, test = set(data.pretrain_dataset().files), set(data.probe_splits().test.files)
    assert test and not pretrain & test and len(pretrain) + len(test) == 40
    assert data.leak_check()["in_pretraining"] == 0
    same_split = ImageFolder(path=str(tmp_path / "pics"), image_size=16, seed=7)
    same_split.setup()
    assert set(same_split.probe_splits().test.files) == test  # by name: every seed tests on the same images

    # the same picture again under a name that the split puts in the pretraining part
    name = next(f"copy{i}.png" for i in range(100) if stable_fraction(f"cat/copy{i}.png") >= data.test_fraction)
    (tmp_path / "pics" / "cat" / name).write_bytes(next(iter(test)).read_bytes())
    leaky = ImageFolder(path=str(tmp_path / "pics"), image_size=16)
    leaky.setup()
    assert tmp_path / "pics" / "cat" / name in set(leaky.pretrain_dataset().files)
    assert leaky.leak_check()["in_pretraining"] == 1  # found by content, not by name


def test_image_folder_with_a_test_folder_of_its_own(tmp_path):
    write_images(tmp_path / "train", per_class=6)
    write_images(tmp_path / "test", per_class=3, seed=1)
    data = ImageFolder(path=str(tmp_path / "train"), test_path=str(tmp_path / "test"), image_size=16)
    data.setup()
    assert len(data.pretrain_dataset()) == 12 and len(data.probe_splits().test) == 6
    assert data.leak_check()["in_pretraining"] == 0
    for inside in (tmp_path / "train", tmp_path / "train" / "cat", tmp_path):
        with pytest.raises(UserError, match="data.test_path .* overlaps data.path .* give a folder apart"):
            ImageFolder(path=str(tmp_path / "train"), test_path=str(inside)).setup()


def test_audio_folder_split_by_file_and_identical_clips_are_caught(tmp_path):
    rng = np.random.default_rng(0)
    for word in ("yes", "no"):
        (tmp_path / word).mkdir()
        for i in range(10):
            soundfile.write(tmp_path / word / f"{i}.wav", rng.uniform(-0.5, 0.5, 4000).astype(np.float32), 16_000)
    data = AudioFolder(root=str(tmp_path))
    data.setup()
    assert data.leak_check()["in_pretraining"] == 0
    clips = data.clips()
    test_clip, train_clip = next(c for c in clips if c.test), next(c for c in clips if not c.test)
    same = rng.uniform(-0.5, 0.5, 4000).astype(np.float32)  # one recording filed twice, once in each split
    for clip in (test_clip, train_clip):
        soundfile.write(clip.path, same, 16_000)
    again = AudioFolder(root=str(tmp_path))
    again.setup()
    assert again.leak_check()["in_pretraining"] == 1  # found by its samples, whatever the names
