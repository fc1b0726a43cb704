"""Bad input over every command and modality: each case is answered with exit code 2 and one line,
`ssl-zoo: error: ...`, naming the key or the file (and the fix), no traceback, and no results.json,
checkpoint or plot left behind. Settings are refused at start-up (build.check_settings, cli.check_overrides),
before any data is built; a file is refused when it is read.

The cases run the command line's own entry point (`ssl_zoo.cli.main`) in this process, which is what
`ssl-zoo` runs, so that 100 cases cost seconds; three of them also run as real processes."""

import sys

import pytest
import torch

from conftest import TINY, compose_train, run_cli
from ssl_zoo import cli
from ssl_zoo.errors import UserError
from ssl_zoo.run.train import train

TINY_SPEECH = ["data=spoken_words", "data.words=[yes,no]", "data.num_voices=3", "data.takes=4", "data.test_takes=1",
               "data.batch_size=8", "model=transformer_nano", "trainer=debug"]
SPEECH = " ".join(TINY_SPEECH)

# (command line, or its words where one holds a space; what its one line must say). {gpt} {bert} {simclr} {speech}: checkpoints of tiny runs;
# {files}: a folder of bad files (see bad_files); {results}: a folder holding one run's results.json.
CASES = [
    # train, images
    ("train method.optim.lr=-1", "method.optim.lr=-1 is out of range; it must be a number above 0"),
    ("train method.optim.lr=abc", "method.optim.lr=abc is out of range; it must be a number above 0"),
    ("train method.optim.lr=0", "method.optim.lr=0 is out of range"),
    ("train method.optim.weight_decay=-0.1", "method.optim.weight_decay=-0.1 is out of range; it must be a number at least 0"),
    ("train +method.optim.momentum=1.5", "method.optim.momentum=1.5 is out of range; it must be a number between 0 and 1"),
    ("train method.optim.warmup=-1", "method.optim.warmup=-1 is out of range"),
    ("train method.optim.name=nope", "method.optim.name=nope is not one of: adamw, lars, sgd"),
    ("train method.optim.betas=[2,0.9]", "method.optim.betas is not a setting; the settings of method.optim are: name, lr"),
    ("train data.batch_size=0", "data.batch_size=0 is out of range; it must be a whole number at least 1"),
    ("train data.batch_size=2.5", "data.batch_size=2.5 is out of range; it must be a whole number at least 1"),
    ("train data.num_workers=-1", "data.num_workers=-1 is out of range; it must be a whole number at least 0"),
    ("train data.image_size=0", "data.image_size=0 is out of range; it must be a whole number at least 1"),
    ("train data.num_train=0", "data.num_train=0 is out of range"),
    ("train trainer.max_steps=-2", "trainer.max_steps=-2 is out of range; it must be a whole number at least -1"),
    ("train trainer.max_steps=0", "trainer.max_steps=0 trains nothing"),
    ("train trainer.max_steps=-1", "trainer.max_steps=-1 with trainer.max_epochs=-1 never ends"),
    ("train trainer.max_epochs=-3", "trainer.max_epochs=-3 is out of range"),
    ("train trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0 is out of range"),
    ("train trainer.precision=bf17 data.num_train=256", "trainer.precision=bf17 is not one of: auto, 32-true, 32, bf16-mixed"),
    ("train trainer=gpu trainer.accelerator=tpu data.num_train=256", "the trainer settings do not fit this machine"),
    *([] if torch.cuda.is_available() else [("train trainer=gpu data.num_train=256", "the trainer settings do not fit this machine")]),
    ("train probe.batch_size=0", "probe.batch_size=0 is out of range; it must be a whole number at least 1"),
    ("train probe.val_fraction=2", "probe.val_fraction=2 is out of range; it must be a number above 0 and at most 0.99"),
    ("train probe.val_fraction=0", "probe.val_fraction=0 is out of range"),
    ("train probe.knn_k=0", "probe.knn_k=0 is out of range; it must be a whole number at least 1"),
    ("train probe.knn_temperature=-1", "probe.knn_temperature=-1 is out of range; it must be a number above 0"),
    ("train probe.max_train=0", "probe.max_train=0 is out of range; it must be a whole number at least 2 (or null)"),
    ("train probe.steps=0", "probe.steps=0 is out of range"),
    ("train probe.solver=sgd", "probe.solver=sgd is not one of: lbfgs, adamw"),
    ("train probe.weight_decays=[-0.1]", "probe.weight_decays=[-0.1] must be a non-empty list of numbers at least 0"),
    ("train probe.weight_decays=[]", "probe.weight_decays=[] must be a non-empty list of numbers at least 0"),
    ("train probe.l2_low=0", "probe.l2_low=0 and probe.l2_high=1.0 are the ends of a log-spaced grid of L2 penalties: both must be numbers above 0"),
    ("train probe.l2_high=-1", "probe.l2_low=1e-06 and probe.l2_high=-1 are the ends of a log-spaced grid"),
    ("train probe.l2_low=1 probe.l2_high=0.01", "probe.l2_low=1 is above probe.l2_high=0.01; swap them"),
    ("train probe.l2_points=0", "probe.l2_points=0 must be a whole number of at least 2"),
    ("train probe.l2_points=1", "probe.l2_points=1 must be a whole number of at least 2"),
    ("train probe.finetune_steps=-5", "probe.finetune_steps=-5 is out of range"),
    ("train probe.finetune_lr=0", "probe.finetune_lr=0 is out of range"),
    ("train method.temperature=-1", "method.temperature=-1 is out of range; it must be a number above 0"),
    ("train method.temperature=0", "method.temperature=0 is out of range"),
    ("train method.projection_dim=0", "method.projection_dim is not a setting; the settings of method are: name, _target_, temperature"),
    ("train method=byol method.tau_base=2", "method.tau_base=2 is out of range; it must be a number between 0 and 1"),
    ("train seed=-3", "seed=-3 is out of range; it must be a whole number between 0 and 4294967295"),
    ("train seed=18446744073709551616", "seed=18446744073709551616 is out of range; it must be a whole number between 0 and 4294967295"),
    ("train =3", "'=3' has no key; write key=value"),
    ("train hydra.run.dir=/proc/ssl_zoo_nope/run", "cannot write /proc/ssl_zoo_nope/run: /proc"),
    ("train data.image_size=100000", "data.num_train=20000 + data.num_test=2000 images of data.image_size=100000 px need about"),
    ("train data.num_train=1000000000", "data.num_train=1000000000 + data.num_test=2000 images of data.image_size=32 px need about"),
    ("train method=gpt method.optim.betas=[0.9]", "method.optim.betas=[0.9] must be 2 numbers, each a number at least 0 and below 1"),
    ("train method=gpt method.optim.betas=[2,0.9]", "method.optim.betas=[2, 0.9] must be 2 numbers, each a number at least 0 and below 1"),
    ("train method.optim.weight_decay=inf", "method.optim.weight_decay=inf is out of range; it must be a number at least 0"),
    ("train method.optim.lr=nan", "method.optim.lr=nan is out of range; it must be a number above 0"),
    ("train ~method.optim.lr", "~method.optim.lr would remove a setting the run reads"),
    ("train +method.foo=1", "method.foo is not a setting of method=simclr; its settings are: online_probe, optim, projector_dim"),
    ("train method=gpt trainer.val_check_interval=0", "trainer.val_check_interval=0 is out of range; it must be a whole number of "
     "steps at least 1, or a fraction of an epoch above 0 and at most 1"),
    ("train trainer.max_epochs=0 trainer.max_steps=-1", "trainer.max_epochs=0 trains nothing"),
    ("train trainer.max_steps=99999999999999999999", "trainer.max_steps=99999999999999999999 is more than a run can count"),
    ("train trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1 is out of range; it must be a number at least 0 (or null)"),
    ("train model.widths=[0,0,0,0]", "model.widths=[0, 0, 0, 0] must be a list of one or more numbers, each a whole number at least 1"),
    ("train model.widths=[]", "model.widths=[] must be a list of one or more numbers"),
    ("train data.mean=[0.5]", "data.mean=[0.5] must be 3 numbers"),
    ("train data.std=[0,0,0]", "data.std=[0, 0, 0] must be 3 numbers, each a number above 0"),
    ("train method.views.crop_scale=[1.0,0.08]", "method.views.crop_scale=[1.0, 0.08] is not in order; give it low to high: [0.08, 1.0]"),
    ("train method.views.jitter_prob=2", "method.views.jitter_prob=2 is out of range; it must be a number between 0 and 1"),
    ("train method.projector_dim=0", "method.projector_dim=0 is out of range; it must be a whole number at least 1"),
    ("train method=gpt model.n_head=3", "model.n_head=3 does not divide model.n_embd=128"),
    ("train method=gpt model.n_embd=-8", "model.n_embd=-8 is out of range; it must be a whole number at least 1"),
    ("train method=gpt model.n_layer=0", "model.n_layer=0 is out of range; it must be a whole number at least 1"),
    ("train method=gpt model.dropout=2", "model.dropout=2 is out of range; it must be a number at least 0 and below 1"),
    ("train method=gpt data.max_chars=0", "data.max_chars=0 is out of range; it must be a whole number at least 1"),
    ("train method=gpt data.stride=0", "data.stride=0 is out of range; it must be a whole number at least 1 (or null)"),
    ("train method=gpt method.sample_tokens=-5", "method.sample_tokens=-5 is out of range; it must be a whole number between 0 and 100000"),
    ("train method=masked_speech method.zero_frac=2", "method.zero_frac=2 is out of range; it must be a number between 0 and 1"),
    ("train method=masked_speech method.freq_mask_width=1000", "method.freq_mask_width=1000 is wider than the 80 mel bins"),
    (["train", "method=apc", "data=audio_folder", "data.root={files}", "data.pattern='[0-9]+_x'", "data.task=digit"],
     "data.task=digit is not a named group of data.pattern (its named groups: none)"),
    # the ViT and the patch methods
    ("train method=mae data.image_size=30", "data.image_size=30 is not a multiple of model.patch_size=4"),
    ("train method=simclr model=vit_nano model.patch_size=5", "data.image_size=32 is not a multiple of model.patch_size=5"),
    ("train method=mae model.patch_size=0", "model.patch_size=0 is out of range; it must be a whole number at least 1"),
    ("train method=mae method.mask_ratio=0", "method.mask_ratio=0 is out of range; it must be a number above 0 and below 1"),
    ("train method=mae method.mask_ratio=1", "method.mask_ratio=1 is out of range; it must be a number above 0 and below 1"),
    ("train method=mae method.mask_ratio=1.5", "method.mask_ratio=1.5 is out of range"),
    ("train method=mae method.mask_ratio=abc", "method.mask_ratio=abc is out of range"),
    ("train method=mae data=python_stdlib", "method 'mae' is for image but data 'python_stdlib' is text"),
    ("train method=aim data=spoken_words", "method 'aim' is for image but data 'spoken_words' is speech"),
    ("train method=mae model=small_cnn data.num_train=256", "method=mae reads image patches: it needs a ViT encoder"),
    ("train method=aim model=small_cnn data.num_train=256", "method=aim reads image patches: it needs a ViT encoder"),
    ("train method=data2vec_image model=vit_nano", "method.top_k=3 is more than the model's 2 layers; set method.top_k=1..2"),
    ("train method=data2vec_text method.top_k=0", "method.top_k=0 is out of range; it must be a whole number at least 1"),
    ("train method=data2vec_text method.centre_positions=true data.batch_size=1", "method.centre_positions needs batches of 2 sequences or more, not 1"),
    ("train method=data2vec_text method.target_norm=batch", "method.target_norm=batch is not one of: null, instance, layer"),
    ("train method=data2vec_text method.centre_positions=abc", "method.centre_positions=abc is not one of: true, false"),
    ("train method=data2vec_text data=shapes", "method 'data2vec' is for text but data 'shapes' is image"),
    ("train method=data2vec_text model=vit_tiny", "model 'vit_tiny' reads image, but data 'python_stdlib' is text"),
    ("train method=data2vec_image model=small_cnn data.num_train=256", "method=data2vec_image reads image patches: it needs a ViT encoder"),
    ("train method=data2vec_text method.image_block=3", "method.image_block"),
    ("train method=simclr model=transformer_tiny", "model 'transformer_tiny' reads text or speech, but data 'shapes' is image"),
    ("train method=data2vec_image method.image_mask_ratio=1", "method.image_mask_ratio=1 is out of range"),
    ("train seed=[1", "cannot read 'seed=[1'"),
    ("train +seed=3", "Could not append to config. An item is already at 'seed'"),
    ("train ~nope", "Could not delete from config. 'nope' does not exist"),
    ("train hydra.run.nope=1", "hydra.run.nope is not a setting; the settings of hydra.run are: dir"),
    ("train checkpoint_every_n_steps=0", "checkpoint_every_n_steps=0 is out of range"),
    ("train knn_monitor_every_n_steps=-1", "knn_monitor_every_n_steps=-1 is out of range"),
    ("train method=nope", "unknown method 'nope'; choose one of: aim, apc, bert, byol, data2vec_image, data2vec_speech, data2vec_text, gpt, mae, masked_speech, simclr"),
    ("train data=nope", "unknown data 'nope'; choose one of:"),
    ("train model=nope", "unknown model 'nope'; choose one of:"),
    ("train trainer=nope", "unknown trainer 'nope'; choose one of:"),
    ("train probe=nope", "unknown probe 'nope'; choose one of: default, lightly"),
    ("train experiment=nope", "unknown experiment 'nope'; choose one of:"),
    ("train resume={files}/missing.ckpt", "checkpoint {files}/missing.ckpt does not exist; pass resume=auto"),
    ("train resume={files}/not_a_checkpoint.ckpt", "{files}/not_a_checkpoint.ckpt is not a readable checkpoint"),
    ("train hydra.run.dir={files}/a_file/run", "cannot write {files}/a_file/run: {files}/a_file is a file, not a folder; give hydra.run.dir="),
    ("train -m seed=0,1 hydra.sweep.dir={files}/a_file", "{files}/a_file is a file, not a folder; give hydra.sweep.dir="),
    ("train method=gpt data=shapes", "method 'gpt' is for text but data 'shapes' is image"),
    ("train data=image_folder data.path={files}/one_class", "image folder {files}/one_class has 1 class sub-folders; labels (the probe's, embed-plot's colours) need at least 2"),
    ("train data=image_folder data.path={files}/one_class probe.enabled=false", "items, fewer than one batch of 128; lower data.batch_size"),
    ("train data=image_folder data.path={files}/missing", "image folder {files}/missing does not exist"),
    ("train data=image_folder data.path={files}/no_images", "holds no images"),
    ("train data=image_folder", "data.path has no value"),
    ("train data=image_folder data.path={files}/one_class data.test_path={files}/one_class", "data.test_path {files}/one_class overlaps data.path"),
    ("train data=image_folder data.path={files}/one_class data.test_fraction=2", "data.test_fraction=2 is out of range"),
    ("train data=cifar10 data.root={files}/missing", "CIFAR-10 is not in {files}/missing/cifar-10-batches-py; set data.root"),
    # train, text
    ("train method=gpt data.block_size=0", "data.block_size=0 is out of range; it must be a whole number at least 1"),
    ("train method=gpt data.block_size=abc", "data.block_size=abc is out of range"),
    ("train method=gpt data.vocab_size=0", "data.vocab_size=0 is out of range; it must be a whole number at least 8"),
    ("train method=gpt data.val_fraction=1", "data.val_fraction=1 is out of range"),
    ("train method=gpt data.test_share=2", "data.test_share=2 is out of range"),
    ("train method=bert method.mask_prob=0", "method.mask_prob is not a setting; the settings of method are: name, _target_, select_prob"),
    ("train method=bert method.select_prob=1.5", "method.select_prob=1.5 is out of range; it must be a number above 0 and at most 1"),
    ("train method=bert method.mask_frac=-1", "method.mask_frac=-1 is out of range"),
    ("train method=bert method.mask_frac=0.8 method.random_frac=0.5", "method.mask_frac=0.8 + method.random_frac=0.5 is more than 1"),
    ("train method=gpt data=text_file", "data.path has no value; set it on the command line (data.path=...)"),
    ("train method=gpt data=text_file data.path={files}/missing.txt", "no text file at data.path={files}/missing.txt"),
    ("train method=gpt data=text_file data.path={files}/latin1.txt", "{files}/latin1.txt is not UTF-8 text (byte 5 is 0xff)"),
    ("train method=gpt data=text_file data.path={files}/binary.txt", "{files}/binary.txt looks binary (a NUL byte in its first 8 kB)"),
    ("train method=gpt data=text_file data.path={files}/empty.txt", "are empty; give a file with text in it"),
    ("train method=gpt data=text_file data.path={files}/empty.txt data.encoding_errors=nope", "data.encoding_errors must be strict or replace"),
    ("train method=gpt data.tokenizer=nope", "unknown tokenizer 'nope'; set data.tokenizer to one of: char, bpe"),
    ("train method=gpt method.probe_layer=9", "method.probe_layer=9 is out of range: this model has layers 0"),
    ("train method=bert +model.causal=true", "method=bert needs bidirectional attention, but model.causal=true"),
    ("train method=gpt data=icl_mix data.held_out=[reverse,nope]", "unknown task family nope"),
    ("train method=gpt data=icl_mix data.families=[reverse,upper] data.held_out=[upper]", "family upper both trained and held out"),
    ("train method=gpt data=icl_mix data.words=[cat,otter]", "data.words holds evaluation words (otter)"),
    # train, speech
    ("train method=masked_speech method.mask_prob=0", "method.mask_prob=0 is out of range; it must be a number above 0"),
    ("train method=masked_speech method.mask_prob=2", "method.mask_prob=2 is out of range"),
    ("train method=masked_speech method.span=0", "method.span=0 is out of range"),
    ("train method=masked_speech data.sample_rate=0", "data.sample_rate=0 is out of range"),
    ("train method=apc method.shift=0", "method.shift=0 is out of range; it must be a whole number at least 1"),
    ("train method=apc method.probe_layer=7", "method.probe_layer=7 is out of range"),
    ("train method=masked_speech data.max_seconds=0", "data.max_seconds=0 is out of range; it must be a number above 0"),
    ("train method=masked_speech data.max_seconds=0.01", "data.max_seconds=0.01 is shorter than one analysis window"),
    ("train method=apc data=fsdd", "data.root has no value"),
    ("train method=apc data=fsdd data.root={files}/missing", "audio folder {files}/missing does not exist; set data.root"),
    ("train method=masked_speech data=shapes", "method 'masked_speech' is for speech but data 'shapes' is image"),
    (f"train method=apc {SPEECH} data.task=gender", "data 'spoken_words' has no task 'gender'; set data.task to one of: voice, word"),
    ("train method=apc data.num_voices=99", "at most 60 voices can be made"),
    ("train method=apc data=audio_folder data.path={files}", "data.path is not a setting; the settings of data are: name, _target_, root"),
    ("train method=apc data=audio_folder data.root={files}/missing", "audio folder {files}/missing does not exist"),
    ("train method=apc data=audio_folder data.root={files}/one_class", "holds no .wav or .flac files"),
    # probe
    ("probe checkpoint={files}/missing.ckpt", "checkpoint {files}/missing.ckpt does not exist"),
    ("probe checkpoint={files}/not_a_checkpoint.ckpt", "is not a readable checkpoint"),
    ("probe checkpoint={files}/other.ckpt", "{files}/other.ckpt is not an ssl-zoo checkpoint"),
    ("probe", "give checkpoint=... (a saved run's last.ckpt), or encoder=hf:DIR / torchvision:NAME / timm:NAME"),
    # probe, encoders trained elsewhere
    ("probe encoder=hf:{files}/no_images data=python_stdlib", "encoder=hf:{files}/no_images is not a Hugging Face model folder"),
    ("probe encoder=onnx:model data=shapes", "encoder=onnx:model is not one of hf:DIR, torchvision:NAME, timm:NAME"),
    ("probe encoder=torchvision:resnet18", "encoder=torchvision:resnet18 needs the data to probe on: data=python_stdlib"),
    ("probe encoder=torchvision:resnet18 data=shapes", "encoder=torchvision:resnet18 needs its weights: weights=FILE"),
    ("probe encoder=torchvision:resnet18 weights={files}/r18.pth data=python_stdlib",
     "encoder=torchvision:... is an image network; data 'python_stdlib' is text"),
    ("probe encoder=torchvision:nonet weights={files}/r18.pth data=shapes", "torchvision has no model 'nonet'"),
    ("probe encoder=timm:nonet weights={files}/r18.pth data=shapes", "timm has no model 'nonet'"),
    ("probe encoder=torchvision:resnet50 weights={files}/r18.pth data=shapes data.num_train=64 data.num_test=64",
     "weights={files}/r18.pth do not fit encoder=torchvision:resnet50: 'layer1.0.conv1.weight' has shape (64, 64, 3, 3)"),
    ("probe encoder=torchvision:resnet18 weights={files}/crafted.ckpt data=shapes data.num_train=64 data.num_test=64",
     "weights={files}/crafted.ckpt cannot be read as weights"),
    ("probe encoder=torchvision:resnet18 weights={files}/missing.pth data=shapes data.num_train=64 data.num_test=64",
     "weights={files}/missing.pth does not exist"),
    ("probe checkpoint={simclr} probe.batch_size=0", "probe.batch_size=0 is out of range"),
    ("probe checkpoint={simclr} probe.knn_k=-1", "probe.knn_k=-1 is out of range"),
    ("probe checkpoint={simclr} probe.val_fraction=1.5", "probe.val_fraction=1.5 is out of range"),
    ("probe checkpoint={simclr} data=nope", "unknown data 'nope'"),
    ("probe checkpoint={simclr} data=python_stdlib", "method 'simclr' is for image but data 'python_stdlib' is text"),
    ("probe checkpoint={simclr} device=banana", "device=banana is not a device; give device=auto, cpu or cuda"),
    ("probe checkpoint={speech} probe.steps=0", "probe.steps=0 is out of range"),
    ("probe checkpoint={gpt} probe.max_train=0", "probe.max_train=0 is out of range"),
    ("probe encoder=hf:{files}/hf_pickle data=python_stdlib", "the weights in {files}/hf_pickle were not loaded: their pickle holds more than tensors"),
    ("train resume={simclr} method=byol", "is a checkpoint of method=simclr, not method=byol; resume it with method=simclr"),
    # generate
    ("generate checkpoint={gpt} max_new_tokens=-1", "max_new_tokens=-1 is out of range; it must be a whole number between 1 and 100000"),
    ("generate checkpoint={gpt} max_new_tokens=abc", "max_new_tokens=abc is out of range"),
    ("generate checkpoint={gpt} max_new_tokens=100000000", "max_new_tokens=100000000 is out of range; it must be a whole number between 1 and 100000"),
    ("generate checkpoint={gpt} temperature=-1", "temperature=-1 is out of range"),
    ("generate checkpoint={gpt} top_k=0", "top_k=0 is out of range"),
    ("generate checkpoint={gpt} top_p=1.5", "top_p=1.5 is out of range"),
    ("generate checkpoint={gpt} seed=-1", "seed=-1 is out of range"),
    ("generate checkpoint={gpt} device=cuda:7", "device=cuda:7: no such device on this machine"),
    ("generate checkpoint={gpt} precision=fp16", "precision=fp16 is not one of: auto, 32, bf16"),
    ("generate checkpoint={gpt} compile=maybe", "compile=maybe is not one of: true, false"),
    ("generate checkpoint={gpt} compile=1", "compile=1 is not one of: true, false"),
    (["generate", "checkpoint={gpt}", "compile='true'"], "compile='true' (a string) is not one of: true, false"),
    ("generate checkpoint={bert}", "holds a bert model, but `generate` needs a gpt checkpoint; use `ssl-zoo fill` with it"),
    ("generate checkpoint={simclr}", "holds a simclr model, but `generate` needs a gpt checkpoint"),
    ("generate checkpoint={files}/missing.ckpt", "checkpoint {files}/missing.ckpt does not exist"),
    (["generate", "checkpoint={gpt}", "prompt=the ☃ cat"], "never saw: '☃'"),
    # fill
    ("fill checkpoint={bert} text=hello", "the text has no [MASK]; write [MASK] where a token should be filled in"),
    ("fill checkpoint={bert} text=[MASK] top_k=0", "top_k=0 is out of range"),
    ("fill checkpoint={bert} text=[MASK] top_k=100000", "top_k=100000 is out of range; it must be a whole number between 1 and"),
    ("fill checkpoint={gpt} text=[MASK]", "holds a gpt model, but `fill` needs a bert checkpoint"),
    ("fill checkpoint={bert}", "text has no value; set it on the command line (text=...)"),
    # icl
    ("icl checkpoint={gpt} shots=[-1]", "shots must be a list of whole numbers >= 0, got [-1]"),
    ("icl checkpoint={gpt} num_queries=0", "num_queries=0 is out of range"),
    ("icl checkpoint={gpt} task=nope", "unknown ICL task 'nope'; choose a family"),
    ("icl checkpoint={gpt} labels=nope", "labels=nope is not one of: gold, random, flipped"),
    ("icl checkpoint={gpt} controls=[nope]", "unknown icl.labels 'nope'"),
    ("icl checkpoint={gpt} digits=0", "digits=0 is out of range; it must be a whole number between 1 and 3"),
    ("icl checkpoint={gpt} too_long=nope", "too_long=nope is not one of: skip, error"),
    ("icl checkpoint={gpt} task=reverse shots=[16] num_queries=3 too_long=error", "shots fit"),
    ("icl checkpoint={bert}", "holds a bert model, but `icl` needs a gpt checkpoint"),
    ("icl checkpoint=hf:{files}/a_file", "checkpoint=hf:{files}/a_file is not a Hugging Face model folder"),
    ("icl checkpoint={gpt} task={files}/missing.jsonl", "task file {files}/missing.jsonl does not exist"),
    ("icl checkpoint={gpt} task={files}/tasks.jsonl", "{files}/tasks.jsonl, line 1 is not a task example"),
    ("icl checkpoint={gpt} task={files}/typed.jsonl", '{files}/typed.jsonl, line 1 is not a task example ("input" and "output" must be strings)'),
    ("icl checkpoint={gpt} task=reverse shots=[100000] too_long=error", "task 'reverse' with 100000 shots needs prompts longer than this model's context"),
    ("icl checkpoint=hf:{files}/hf_pickle", "the weights in {files}/hf_pickle were not loaded: their pickle holds more than tensors"),
    # embed-plot
    ("embed-plot checkpoint={simclr} max_points=0", "max_points=0 is out of range; it must be a whole number at least 2"),
    ("embed-plot checkpoint={simclr} perplexity=-1", "perplexity=-1 is out of range; it must be a number above 0"),
    ("embed-plot checkpoint={simclr} split=nope", "split must be train or test, got 'nope'"),
    ("embed-plot checkpoint={simclr} out={files}/a_file/map.png", "cannot write {files}/a_file/map.png: {files}/a_file is a file, not a folder; give out="),
    ("embed-plot checkpoint={gpt} data=shapes", "method 'gpt' is for text but data 'shapes' is image"),
    ("embed-plot checkpoint={files}/missing.ckpt", "checkpoint {files}/missing.ckpt does not exist"),
    # serve
    ("serve checkpoint={gpt} port=99999", "port=99999 is out of range; it must be a whole number between 1 and 65535"),
    ("serve checkpoint={gpt} port=abc", "port=abc is out of range"),
    ("serve checkpoint={gpt} limits.max_concurrent=0", "limits.max_concurrent=0 is out of range"),
    ("serve checkpoint={gpt} limits.max_body_bytes=-1", "limits.max_body_bytes=-1 is out of range"),
    ("serve checkpoint={simclr}", "holds a simclr model, but `serve` needs a gpt or bert checkpoint"),
    ("serve checkpoint={files}/missing.ckpt", "checkpoint {files}/missing.ckpt does not exist"),
    # a crafted checkpoint, whose unpickling would run a command: refused by every command that reads one
    *[(command, "{files}/crafted.ckpt is not a readable checkpoint (Weights only load failed") for command in [
        "train resume={files}/crafted.ckpt", "probe checkpoint={files}/crafted.ckpt", "generate checkpoint={files}/crafted.ckpt",
        "fill checkpoint={files}/crafted.ckpt text=[MASK]", "icl checkpoint={files}/crafted.ckpt",
        "embed-plot checkpoint={files}/crafted.ckpt", "serve checkpoint={files}/crafted.ckpt"]],
    # compare
    ("compare {files}/missing", "{files}/missing does not exist; give folders of runs or results.json files"),
    ("compare {files}/bad_results", "no results.json read under {files}/bad_results: {files}/bad_results/results.json: skipped"),
    ("compare {results} --min-seeds 2", "has 1 seed(s) (0), fewer than the 2 asked for (an interval needs two)"),
    ("compare {results} --min-seeds 0", "compare: --min-seeds must be 1 or more, got 0"),
    ("compare {results} --nope", "compare: unrecognized arguments: --nope"),
    ("compare {results} --out {files}/a_file/out", "cannot write {files}/a_file/out: {files}/a_file is a file, not a folder; give --out="),
    # no command
    # flags take true or false only, lists of names refuse a plain string, and what plain annotations declare
    ("train method.optim.scale_lr=maybe", "method.optim.scale_lr=maybe is not one of: true, false"),
    ("train method.online_probe=maybe", "method.online_probe=maybe is not one of: true, false"),
    ("train model=resnet18 model.cifar_stem=maybe", "model.cifar_stem=maybe is not one of: true, false"),
    ("train method=mae model=vit_tiny method.norm_pix_loss=2", "method.norm_pix_loss=2 is not one of: true, false"),
    ("train method=gpt model.tie_weights=maybe", "model.tie_weights=maybe is not one of: true, false"),
    ("train probe.random_init_baseline=maybe", "probe.random_init_baseline=maybe is not one of: true, false"),
    ("train trainer.deterministic=maybe", "trainer.deterministic=maybe is not one of: true, false, warn, null"),
    ("train logger=wandb logger.wandb.offline=maybe", "logger.wandb.offline=maybe is not one of: auto, true, false"),
    ("train data=cifar10 data.download=maybe", "data.download=maybe is not one of: true, false"),
    ("train data=cifar10 data.classes=7", "data.classes=7 is not one of: 10, 100"),
    ("train method=gpt data.packages=json", "data.packages=json must be a list of names, e.g. data.packages=[json]"),
    ("train method=gpt data.packages=[json]", "data.packages=[json] must name at least 2"),
    ("train method=apc data.words=[yes,yes]", "data.words=[yes, yes] names yes more than once"),
    ("train method=apc data.num_voices=0", "data.num_voices=0 is out of range; it must be a whole number at least 1"),
    ("train method=gpt data=icl_mix data.families=[]", "data.families=[] must name at least 1"),
    ("train method=gpt data=icl_mix data.held_out=reverse", "data.held_out=reverse must be a list of names"),
    ("train method=gpt data=icl_mix data.digits=0", "data.digits=0 is out of range; it must be a whole number between 1 and 3"),
    ("train method=gpt data=icl_mix data.description_prob=2", "data.description_prob=2 is out of range"),
    ("train method=gpt data.val_windows=0", "data.val_windows=0 is out of range; it must be a whole number at least 1"),
    ("train method=gpt data.probe_train_per_class=0", "data.probe_train_per_class=0 is out of range"),
    # speech features, models and methods
    ("train method=apc data.features.hop_ms=0", "data.features.hop_ms=0 is out of range; it must be a number above 0"),
    ("train method=apc data.features.n_mels=0", "data.features.n_mels=0 is out of range"),
    ("train method=apc data.features.hop_ms=40", "data.features.hop_ms=40 gives frames 640 samples apart with windows of 400"),
    ("train method=apc data.sample_rate=100", "data.features.n_mels=80 leaves 80 mel filter(s) with no frequency of a 25.0 ms window at 100 Hz"),
    ("train method=apc data.max_seconds=nan", "data.max_seconds=nan is out of range"),
    ("train method=apc method.shift=1000", "method.shift=1000 is not shorter than the"),
    ("train method=masked_speech method.zero_frac=0.8 method.replace_frac=0.5", "method.zero_frac=0.8 + method.replace_frac=0.5 is more than 1"),
    ("train model=resnet18 model.depth=17", "model.depth=17 is not one of: 18, 50"),
    ("train method=mae model=vit_tiny method.decoder_heads=0", "method.decoder_heads=0 is out of range"),
    ("train method=mae model=vit_tiny method.decoder_heads=3", "method.decoder_heads=3 does not divide method.decoder_dim=64"),
    ("train method=mae model=vit_tiny +model.channels=1", "model.channels=1 is not one of: 3"),
    ("train method=data2vec_image model=vit_tiny method.tau_end=0.9", "method.tau_end=0.9 is below method.tau_base=0.99"),
    ("train method.views.size=0", "method.views.size=0 is out of range; it must be a whole number at least 1"),
    # the trainer's and the run's own settings
    ("train trainer.log_every_n_steps=0", "trainer.log_every_n_steps=0 is out of range"),
    ("train +trainer.limit_train_batches=0", "trainer.limit_train_batches=0 is out of range; it must be a whole number of batches"),
    ("train trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch=0 is out of range"),
    ("train trainer.devices=0", "trainer.devices=0 is out of range; it must be a number of devices at least 1"),
    ("train +trainer.max_time=abc", "trainer.max_time=abc is not a duration DD:HH:MM:SS"),
    ("train resume=true", "resume=true is out of range; it must be auto (the run folder's last checkpoint"),
    ("train hydra.run.dir=", "hydra.run.dir is empty"),
    ("train method.optim.lr=${{nope}}", "method.optim.lr: Interpolation key 'nope' not found"),
    ("train -m seed=0,-1 hydra.sweep.dir={files}/sweep", "seed=-1 is out of range"),
    ("train method=gpt +icl.tasks=[nope]", "unknown"),
    ("train +icl.shots=[1]", "icl=... scores a GPT in context after training, not simclr"),
    ("train method=gpt +icl.labels=nope", "icl.labels=nope is not one of: gold, random, flipped"),
    ("train hydra.job.chdir=maybe", "hydra.job.chdir=maybe is not a value hydra.job.chdir can take"),
    ("train +logger.foo._target_=nope.Nope", "logger.foo._target_=nope.Nope is not a class that can be imported"),
    ("train resume={results}", "is a folder, not a checkpoint file; give {simclr}"),
    # commands: keys they do not have, settings the chosen mode ignores, outputs checked before the work
    ("probe checkpoint={simclr} +foo=1", "foo is not a setting of this command"),
    ("probe checkpoint={simclr} weights={files}/r18.pth", "weights= is read with encoder=..."),
    ("probe checkpoint={simclr} encoder=torchvision:resnet18", "give checkpoint=<a run's last.ckpt> or encoder="),
    ("probe checkpoint={simclr} data.task=nope", "data.task is a setting of a chosen data; choose it first"),
    ("probe checkpoint={simclr} probe.max_train=1", "probe.max_train=1 is out of range; it must be a whole number at least 2"),
    ("generate checkpoint={gpt} top_k=1.5", "top_k=1.5 is out of range; it must be a whole number at least 1"),
    ("icl checkpoint={gpt} num_queries=1000000000", "num_queries=1000000000 is out of range"),
    ("icl checkpoint={gpt} task=[]", "task=[] must name at least 1"),
    ("icl checkpoint={gpt} describe=null", "describe=null is not one of: true, false"),
    ("icl checkpoint={gpt} out={files}/icl_out", "out={files}/icl_out is for checkpoint=hf:DIR"),
    ("icl checkpoint={gpt} task=reverse export_tasks={files}/a_file", "cannot write {files}/a_file: {files}/a_file is a file"),
    ("embed-plot checkpoint={simclr} out={files}/map.txt", "matplotlib cannot write '.txt' images"),
    ("export checkpoint={gpt} format=hf out=/proc/exp", "cannot write /proc/exp"),
    ("generate checkpoint={results}", "is a folder, not a checkpoint file; give {simclr}"),
    ("compare {results} {files}/missing", "{files}/missing does not exist"),
    ("train method=gpt data.cache_dir={files}/a_file", "cannot write {files}/a_file: {files}/a_file is a file, not a folder; give data.cache_dir="),
    ("train method=null", "method=null leaves the run without a method; choose one of:"),
    ("train seed=1,2", "seed=1,2 gives several values: add -m to run one job for each"),
    ("train -m seed=range(3,0) hydra.sweep.dir={files}/sweep", "seed=range(3,0) gives no value to run"),
    ("train method=gpt icl=reverse", "icl=reverse is a group of settings, not a value"),
    ("train method=gpt +icl.device=cpu", "icl.device is not a setting of icl; its settings are:"),
    ("train trainer.precision=64", "trainer.precision=64 is not one of: auto, 32-true"),
    ("train hydra.run.dir=${{oc.env:SSL_ZOO_NO_SUCH_VARIABLE}}", "hydra.run.dir: "),
    ("train method.optim.lr='1e-3'", "method.optim.lr='1e-3' is a string (quoted), not a number; give it unquoted"),
    ("train +trainer.gradient_clip_algorithm=nope", "trainer.gradient_clip_algorithm=nope is not one of: norm, value, null"),
    ("serve checkpoint={gpt} limits=5", "limits=5 is a group of settings, not a value"),
    ("probe checkpoint={simclr} probe.seed=-1", "probe.seed=-1 is out of range"),
    ("probe checkpoint={simclr} probe.name=[default]", "probe.name=[default] is not a name"),
    # the fifth survey's cases: relations, paths, settings ssl-zoo sets itself, unread settings
    ("train method=gpt data.block_size=null", "data.block_size=null is out of range; it must be a whole number at least 1"),
    ("train method=gpt data.vocab_size=null", "data.vocab_size=null is out of range"),
    ("train method=gpt data.probe_length=500", "data.probe_length=500 is longer than the model reads (data.block_size=128)"),
    ("probe checkpoint={gpt} data=python_stdlib data.probe_length=100", "data.probe_length=100 is longer than the model reads (data.block_size=48)"),
    ("train method=gpt data=icl_mix data.words=[able,about]", "data.words has 2 different word(s); an episode of up to data.max_shots=8"),
    ("train method=gpt data=icl_mix data.families=[reverse]", "data.families=[reverse] gives the probe (which family a line belongs to) 1 class(es)"),
    ("train method=gpt data=icl_mix data.families=[reverse,upper] data.context_share=0.5", "data.context_share=0.5 is the share of context"),
    (["train", "logger=mlflow", "logger.mlflow.experiment_name=''"], "logger.mlflow.experiment_name='' is not a name (a non-empty string)"),
    ("train trainer=ddp data.num_train=256 data.num_test=100", "trainer.sync_batchnorm=true needs GPUs, and this run is on the CPU"),
    ("generate checkpoint=[{gpt},{gpt}]", "is not a path (one, not empty)"),
    ("export checkpoint={gpt} format=hf out=[{files}/a,{files}/b]", "is not a path (one, not empty)"),
    (["icl", "checkpoint={gpt}", "task=reverse", "export_tasks=''"], "export_tasks='' is not a path (one, not empty)"),
    (["serve", "checkpoint={gpt}", "host=''"], "host='' is not a host name or address"),
    ("lm-eval --model ssl-zoo --model_args chekpoint={gpt} --tasks lambada_openai", "--model_args chekpoint=... is not a setting of --model ssl-zoo"),
    ("lm-eval --model ssl-zoo --model_args checkpoint={gpt},batch_size=abc --tasks lambada_openai", "--model_args batch_size=abc is not a whole number above 0"),
    ("lm-eval --model ssl-zoo --model_args checkpoint={gpt} --include_path {files}/missing --tasks x", "--include_path {files}/missing is not a folder"),
    (["train", "method=apc", "model=transformer_nano", "data=fsdd", "data.root={files}/no_images", "data.pattern='(?P<digit>[0-9]).wav'"],
     "has no group named index"),
    ("train method=apc data=audio_folder data.root={files}/a_file", "data.root={files}/a_file is a file; give the folder"),
    ("train method=masked_speech " + SPEECH + " data.features.win_ms=1000", "(data.features.win_ms); give a shorter window"),
    ("train method=masked_speech " + SPEECH.replace("data.words=[yes,no]", "data.words=[yes]") + " data.task=word", "has 1 class for data.task=word"),
    ("train model=vit_nano method.views.size=16 data.num_train=256 data.num_test=100", "method.views.size=16 is not the ViT's input size (model.image_size=32)"),
    ("train model=vit_nano model.image_size=null data.num_train=256 data.num_test=100", "model.image_size=null: a ViT needs the images' size"),
    ("train method=mae model=vit_small model.patch_size=32 data.num_train=256 data.num_test=100", "model.patch_size=32 cuts the 32 px images into 1 patch"),
    ("train data=cifar100 data.classes=10", "data.classes=10 is not what data=cifar100 is; choose data=cifar10"),
    ("train model=resnet50 model.depth=18", "model.depth=18 is not what model=resnet50 is; choose model=resnet18"),
    ("train method=gpt +model.vocab_size=100 data=text_file data.path={files}/words.txt", "model.vocab_size=100 is not the data's"),
    ("train probe.lrs=[0.5]", "probe.lrs=[0.5] is read only with probe.solver=adamw"),
    ("train probe.finetune_lr=0.5", "probe.finetune_lr=0.5 is read only with probe.finetune_steps > 0"),
    (["train", "method=gpt", "data.cache_dir=''"], "data.cache_dir='' names no folder"),
    (["compare", "{results}", "--out", ""], "--out '' names no folder"),
    ("embed-plot checkpoint={simclr} probe.knn_k=5", "embed-plot reads probe.batch_size only"),
    ("train method=apc " + SPEECH + " data.sample_rate=8000", "data.features.n_mels=80 leaves 1 mel filter(s) with no frequency"),
    ("train +trainer.default_root_dir={files}/elsewhere", "trainer.default_root_dir is set by ssl-zoo itself"),
    ("train +trainer.enable_checkpointing=false", "trainer.enable_checkpointing is set by ssl-zoo itself"),
    ("train +trainer.profiler=nope", "trainer.profiler=nope is not one of: simple, advanced, pytorch, null"),
    ("train +trainer.overfit_batches=1.5", "trainer.overfit_batches=1.5 is out of range"),
    ("probe checkpoint={gpt} data=text_file data.path={files}/words.txt", "data 'text_file' has no labels (no probe task)"),
    ("train method=[simclr,byol]", "method=[simclr,byol] names several methods for one run"),
    ("train +probe.foo=1", "probe.foo is not a setting of probe=default; its settings are: batch_size"),
    ("train trainer.precision=bf16-true", "trainer.precision=bf16-true is not one of: auto"),
    ("train +logger.csv.flush_logs_every_n_steps=10 data.num_train=256 data.num_test=100", "logger.csv is not a logger of this run"),
    ("probe encoder=torchvision:resnet18 weights={files}/empty.pth data=shapes", "weights={files}/empty.pth cannot be read as weights"),
    ("train +method.optim.schedule=linear", "method.optim.schedule is not a setting of method.optim; its settings are: betas"),
    ("train +trainer.barebones=true", "trainer.barebones is set by ssl-zoo itself"),
    ("train +trainer.detect_anomaly=maybe", "trainer.detect_anomaly=maybe is not one of: true, false"),
    ("train trainer.max_steps=4 +trainer.min_steps=10", "trainer.min_steps=10 is more than trainer.max_steps=4"),
    (["train", "logger=wandb", "logger.wandb.project=''"], "logger.wandb.project='' is not a name"),
    ("train experiment=[zoo_demo,grid]", "experiment=[zoo_demo,grid] names several experiments for one run"),
    ("probe checkpoint={simclr} probe.enabled=false", "probe.enabled is read by train"),
    ("train method=gpt data.tokenizer=bpe data.vocab_size=10", "data.vocab_size=10 is below what byte-level BPE starts from"),
    ("lm-eval --model ssl-zoo --model_args checkpoint={gpt} --tasks lambada_openai --limit -1", "--limit -1 is out of range"),
    ("lm-eval --model ssl-zoo --model_args checkpoint={gpt} --tasks lambada_openai --num_fewshot -1", "--num_fewshot -1 is out of range"),
    ("lm-eval --model ssl-zoo --model_args checkpoint={gpt} --tasks lambada_openai --output_path {files}/a_file/out",
     "cannot write {files}/a_file/out: {files}/a_file is a file"),
    ("train -m hydra/launcher=slurm hydra.sweep.dir={files}/sweep", "whose srun is not on this machine"),
    ("train method=gpt method.sample_prompt=null", "method.sample_prompt=null is not a string"),
    ("icl checkpoint={files}/hf_pickle", "checkpoint {files}/hf_pickle is a Hugging Face model folder; give checkpoint=hf:{files}/hf_pickle"),
    (["train", "logger=wandb", "logger.wandb.name=''"], "logger.wandb.name='' is not a name (a non-empty string)"),
    ("train method=data2vec_speech " + SPEECH + " method.speech_mask_prob=1.0", "method.speech_mask_prob=1.0 is out of range"),
    ("train method=masked_speech " + SPEECH + " method.mask_prob=1", "method.mask_prob=1 is out of range"),
    (["train", "hydra.job.name=''"], "hydra.job.name is empty"),
    (["train", "-m", "seed=0,1", "hydra.sweep.dir={files}/sweep", "hydra.sweep.subdir=''"], "would be the same folder for each of the 2 jobs"),
    ("serve checkpoint={gpt} checkpoint2={gpt}", "checkpoint {gpt} is given more than once"),
    ("train logger=mlflow logger.mlflow.tracking_uri=http://127.0.0.1:9", "logger.mlflow.tracking_uri=http://127.0.0.1:9 cannot be reached"),
    ("train data=image_folder data.path={files}/one_class data.pretrain_crops=1", "data.pretrain_crops=1 is not one of: 0, 2"),
    ("train +trainer.max_time=00:00:00:00", "trainer.max_time=00:00:00:00 is not a duration DD:HH:MM:SS above zero"),
    ("train logger=tensorboard +logger.tensorboard.save_dir={files}/a_file", "logger.tensorboard.save_dir"),
    ("lm-eval --model_args checkpoint={gpt} --tasks lambada_openai", "--model is not given"),
    ("lm-eval --model ssl-zoo --model_args checkpoint={gpt} --model_args device=cpu --tasks lambada_openai",
     "--model_args is given more than once"),
    ("lm-eval --model ssl-zoo --model_args checkpoint={gpt} --tasks lambada_openai --limit=0", "--limit 0 is out of range"),
    ("lm-eval --model ssl-zoo --model_args checkpoint={gpt} --tasks x --include_path={files}/missing",
     "--include_path {files}/missing is not a folder"),
    *([] if torch.cuda.is_available() else [("train trainer.accelerator=cuda data.num_train=256",
                                             "trainer.accelerator=cpu where the command line sets trainer.accelerator")]),
    (["train", "hydra.mode=MULTIRUN", "seed=0,1", "hydra.sweep.dir={files}/sweep", "hydra.sweep.subdir=''"],
     "would be the same folder for each of the 2 jobs"),
    (["train", "method=gpt", "data=text_file", "data.path={files}/words.txt", "data.block_size=16", "method.sample_prompt='☃ '"],
     "method.sample_prompt: the text has characters"),
    ("train method=bert method.mask_frac=0 method.random_frac=0", "hide none of the selected tokens"),
    ("train +trainer.min_epochs=3 trainer.max_epochs=1", "trainer.min_epochs=3 is more than trainer.max_epochs=1"),
    ("train +method.optim.momentum=0.5", "method.optim.momentum=0.5 is read only by sgd and lars"),
    ("train method.optim.name=sgd +method.optim.trust=0.02", "method.optim.trust=0.02 is read only by lars"),
    ("train method.optim=null", "method.optim=null would leave its settings to defaults"),
    ("train probe.weight_decays=[0.0,0.001] probe.l2_points=3", "probe.l2_points=3 is read only with probe.solver=lbfgs"),
    ("train hydra.run.dir={results}", "holds a run already (last.ckpt)"),
    ("serve checkpoint={gpt} limits.max_new_tokens=200000", "limits.max_new_tokens=200000 is out of range"),
    ("probe encoder=hf:{files}/hf_pickle weights={files}/r18.pth data=python_stdlib", "weights={files}/r18.pth is read for encoder=torchvision"),
    ("export checkpoint={gpt} format=hf out={files}/user_model", "is a folder with other files in it (notes.txt"),
    ("train method=gpt data=text_file data.path={files}/words.txt data.vocab_size=50", "data.vocab_size is read only with data.tokenizer=bpe"),
    ("train data=image_folder data.path={files}/one_class data.test_path={files}/one_class data.test_fraction=0.5",
     "data.test_fraction is read only with no data.test_path"),
    ("train data=image_folder data.path={files}/one_class data.pretrain_crops=0 data.crop_scale=[0.5,1.0]",
     "data.crop_scale is read only with data.pretrain_crops=2"),
    ("train data=image_folder data.path={files}/one_class method.views.crop_scale=[0.5,1.0]",
     "method.views.crop_scale is read only with data the views crop"),
    ("train +method.views.blur_sigma=[0.5,1.0]", "method.views.blur_sigma is read only with the views' blur_prob above 0"),
    ("train method.views=null", "method.views=null leaves the method without the views it trains on"),
    ("train method=byol method.view_b=null", "method.view_b=null leaves the method without the views"),
    ("train logger=tensorboard +logger.tensorboard.flush_secs=abc", "logger.tensorboard.flush_secs=abc is out of range"),
    ("train method=byol method.tau_schedule=null", "method.tau_schedule=null is not one of: cosine, linear, constant"),
    ("train data=image_folder data.path={files}/a_file", "image folder {files}/a_file is a file, not a folder"),
    ("train method.views.jitter_prob=0 method.views.brightness=0.8", "method.views.brightness is read only with the views' jitter_prob"),
    ("train method=masked_speech " + SPEECH + " method.zero_frac=0 method.replace_frac=0", "hide none of the masked frames"),
    ("export checkpoint={gpt} format=hf out={files}/export/model.safetensors", "names a file; an export is a folder of files"),
    ("train +trainer.gradient_clip_algorithm=value", "trainer.gradient_clip_algorithm is read only with trainer.gradient_clip_val"),
    (["train", "hydra.run.dir='~/ssl_zoo_run'"], "hydra.run.dir=~/ssl_zoo_run starts with ~, which is not expanded here"),
    ("train method._target_=ssl_zoo.methods.simclr.SimCLRX", "method._target_=ssl_zoo.methods.simclr.SimCLRX is not a class that can be"),
    ("lm-eval --model hf --model_args checkpoint={gpt} --tasks lambada_openai", "is read by --model ssl-zoo, not --model hf"),
    ("train --config-name=trian", "--config-name is not an option of ssl-zoo"),
    ("nope", "unknown command 'nope'; choose one of: train, probe"),
]


class RunsCode:
    """What a malicious checkpoint holds: an object whose unpickling calls a function (here: makes a file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """A folder of what a user may point a command at by mistake."""
    import torchvision
    from PIL import Image

    files = tmp_path_factory.mktemp("bad_files")
    (files / "latin1.txt").write_bytes(b"hello\xff\xfe world\n")
    (files / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (files / "empty.txt").write_text("")
    (files / "empty.pth").write_bytes(b"")
    (files / "words.txt").write_text("the cat sat on the mat and the dog ate the bone\n" * 200)
    (files / "a_file").write_text("a file where a folder is needed\n")
    (files / "not_a_checkpoint.ckpt").write_text("{not a checkpoint")
    torch.save({"weights": torch.zeros(2)}, files / "other.ckpt")  # a checkpoint, but not one of ours
    torch.save({"state_dict": RunsCode(files / "code_ran")}, files / "crafted.ckpt")
    (files / "tasks.jsonl").write_text("{not json\n")
    (files / "typed.jsonl").write_text('{"input": 3, "output": null}\n{"input": "a", "output": "b"}\n')
    (files / "hf_pickle").mkdir()  # a Hugging Face folder whose weights are a pickle that would run code
    (files / "hf_pickle" / "config.json").write_text('{"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 8, '
                                                      '"vocab_size": 50, "n_positions": 16}')
    torch.save({"wte.weight": RunsCode(files / "code_ran")}, files / "hf_pickle" / "pytorch_model.bin")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), files / "r18.pth")  # a torchvision encoder's weights
    (files / "no_images" / "cat").mkdir(parents=True)
    (files / "user_model").mkdir()  # a user's own model folder: not an earlier export to replace
    (files / "user_model" / "config.json").write_text("{}")
    (files / "user_model" / "notes.txt").write_text("mine\n")
    (files / "bad_results").mkdir()
    (files / "bad_results" / "results.json").write_text('{"method": 3, "probe": "x"}')
    (files / "one_class" / "only").mkdir(parents=True)
    for i in range(10):
        Image.new("RGB", (24, 24), (20 * i, 0, 0)).save(files / "one_class" / "only" / f"{i}.png")
    return files


@pytest.fixture(scope="module")
def paths(bad_files, gpt_run, bert_run, tmp_path_factory):
    simclr, speech = tmp_path_factory.mktemp("simclr"), tmp_path_factory.mktemp("speech")
    train(compose_train(*TINY, "method=simclr"), simclr)  # with its probe: compare reads its results.json
    train(compose_train("method=masked_speech", *TINY_SPEECH, "probe.enabled=false"), speech)
    checkpoint = "checkpoints/last.ckpt"
    return {"files": bad_files, "results": simclr, "simclr": simclr / checkpoint, "speech": speech / checkpoint,
            "gpt": gpt_run[0] / checkpoint, "bert": bert_run[0] / checkpoint}


def left_behind(folder) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name in ("results.json", "last.ckpt") or p.suffix == ".png"] if folder.exists() else []


@pytest.mark.parametrize("command, expected", CASES, ids=[" ".join(c[0])[:80] if isinstance(c[0], list) else c[0][:80] for c in CASES])
def test_bad_input_is_one_line_with_exit_code_2_and_nothing_left_behind(command, expected, paths, tmp_path, capfd, monkeypatch):
    args = [arg.format(**paths) for arg in (command.split() if isinstance(command, str) else command)]
    run_dir = tmp_path / "run"
    if args[0] == "train" and not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={run_dir}")
    before = {folder: left_behind(folder) for folder in (paths["files"], paths["results"])}
    monkeypatch.setattr(sys, "argv", ["ssl-zoo", *args])  # Hydra reads (and the command sets) sys.argv
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit:
        cli.main(args)
    stderr = capfd.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("ssl-zoo: error: ")]
    assert exit.value.code == 2 and "Traceback" not in stderr, stderr[-2000:]
    assert len(errors) == 1 and stderr.rstrip().endswith(errors[0]), stderr[-2000:]
    assert expected.format(**paths) in errors[0]
    assert left_behind(run_dir) == [] and left_behind(tmp_path) == []
    assert {folder: left_behind(folder) for folder in before} == before
    assert not (paths["files"] / "code_ran").exists()  # no code ran from a file


def test_there_are_enough_cases_over_every_command():
    commands = {command.split()[0] if isinstance(command, str) else command[0] for command, _ in CASES}
    assert len(CASES) >= 60 and commands >= {"train", "probe", "generate", "fill", "icl", "embed-plot", "serve", "compare"}


@pytest.mark.parametrize("args", [
    ["train", "method.optim.lr=-1", "data.num_train=100000000"],  # refused before 100M images would be drawn
    ["train", "method.projection_dim=0"],  # Hydra's own refusal, in our one line rather than Hydra's several
    ["embed-plot", "checkpoint=/no/such.ckpt", "max_points=0"],
])
def test_the_command_line_answers_a_bad_value_in_one_line_before_any_work(args, tmp_path):
    result = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}" if args[0] == "train" else "hydra.run.dir=.", cwd=tmp_path,
                     fresh_process=True)  # the console script's own start, from a new Python
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and lines[-1].startswith("ssl-zoo: error: ") and "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert not (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_an_image_folder_of_one_class_pretrains_when_no_probe_is_asked(paths, tmp_path):
    """One class is refused for the probe only: with probe.enabled=false it pretrains (no online probe)."""
    results = train(compose_train("trainer=debug", "data=image_folder", f"data.path={paths['files'] / 'one_class'}",
                                  "data.batch_size=4", "probe.enabled=false"), tmp_path)
    assert results["train"]["steps"] == 4 and results["probe"] is None
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_the_crafted_checkpoint_runs_its_code_when_unpickled_without_weights_only(paths):
    """So that the crafted cases above show the commands refusing it, not a harmless file."""
    marker = paths["files"] / "code_ran"
    torch.load(paths["files"] / "crafted.ckpt", weights_only=False)
    assert marker.exists()
    marker.unlink()


def test_a_key_given_twice_is_said_and_the_last_is_used(capfd):
    cli.check_overrides("train", ["seed=1", "trainer=debug", "seed=2"])
    assert "ssl-zoo: warning: seed is given twice (seed=1, then seed=2); the last is used" in capfd.readouterr().err


def test_an_experiments_settings_over_a_group_chosen_on_the_command_line_are_said(capfd):
    cli.check_overrides("train", ["experiment=gpt_shakespeare_char", "trainer=debug", "trainer.gradient_clip_val=0.5"])
    err = capfd.readouterr().err
    assert "warning: experiment=gpt_shakespeare_char sets trainer.max_steps=5000 over trainer=debug's" in err
    assert "trainer.gradient_clip_val" not in err  # given on the command line: the command line's


def test_weights_and_biases_online_without_a_key_is_refused_at_start(monkeypatch):
    from ssl_zoo.run import loggers

    monkeypatch.setattr(loggers, "wandb_key_set", lambda: False)
    with pytest.raises(UserError, match="logger.wandb.offline=false needs a Weights & Biases API key"):
        loggers.check_loggers(compose_train("logger=wandb", "logger.wandb.offline=false"))
    loggers.check_loggers(compose_train("logger=wandb"))  # offline=auto: offline without a key
