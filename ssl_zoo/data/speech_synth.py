"""Spoken words synthesised offline with eSpeak NG: the embedded speech source.

The `espeakng-loader` wheel ships libespeak-ng and its voice data; it is driven here through ctypes in
synchronous mode, with a callback that collects the 22,050 Hz samples. A "voice" is a base voice and
variant (eSpeak's `en+f3`, `en-us+m2`, ...) with its own pitch, speaking rate and loudness; every
take adds its own background noise (10-40 dB SNR) and drifts in pitch and rate, so that one vocabulary spoken by many voices gives two probe tasks: which word (keyword
spotting) and which voice (speaker identification). Every draw comes from the seed; a corpus is
synthesised in a fresh process (see `build_spoken_words`), so the same settings give the same audio,
bit for bit. The `spoken_words` datamodule (data/speech.py) reads the corpus.
"""

import ctypes
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio

from ssl_zoo.atomic import atomic_write
from ssl_zoo.errors import UserError

ESPEAK_RATE = 22_050  # what eSpeak NG synthesises at
_SYNCHRONOUS, _RATE, _PITCH = 0x02, 1, 3  # espeak_AUDIO_OUTPUT and espeak_PARAMETER values
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

SYNTH_VERSION = 2  # part of the corpus cache key: raise it when the synthesis changes, so old corpora are not reused
BASE_VOICES = ["en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029"]
VARIANTS = ["", "+f1", "+f2", "+f3", "+f4", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7"]


ESPEAK_MISSING = ("the embedded spoken words need eSpeak NG from the espeakng-loader package: pip install espeakng-loader "
                  "(folder datasets such as data=fsdd or data=audio_folder work without it)")


class ESpeak:
    """The eSpeak NG library, loaded once per process (it keeps global state)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            try:
                import espeakng_loader
            except ImportError:
                raise UserError(ESPEAK_MISSING) from None
            self = super().__new__(cls)
            self.lib = ctypes.cdll.LoadLibrary(str(espeakng_loader.get_library_path()))
            data_parent = str(Path(espeakng_loader.get_data_path()).parent)
            rate = self.lib.espeak_Initialize(_SYNCHRONOUS, 0, data_parent.encode(), 0)
            if rate != ESPEAK_RATE:
                raise UserError(f"eSpeak NG did not start (it answered {rate}); reinstall espeakng-loader")
            self._chunks = []
            self._callback = _CALLBACK(self._collect)  # kept alive: the library holds a pointer to it
            self.lib.espeak_SetSynthCallback(self._callback)
            cls._instance = self
        return cls._instance

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # 0: go on

    def say(self, text: str, voice: str, rate: int, pitch: int, seed: int = 0) -> np.ndarray:
        """int16 samples at 22,050 Hz. `seed` feeds eSpeak's own random numbers (some variants add
        random noise to the voice)."""
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed & 0x7FFF_FFFF))
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise UserError(f"eSpeak NG has no voice '{voice}'")
        self.lib.espeak_SetParameter(_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        self._chunks = []
        data = text.encode()
        self.lib.espeak_Synth(ctypes.c_char_p(data), len(data) + 1, 0, 0, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


@dataclass(frozen=True)
class Voice:
    name: str  # eSpeak voice and variant, e.g. "en-us+f3"
    pitch: int  # eSpeak's 0-99
    rate: int  # words per minute
    gain: float  # peak amplitude, 0-1

    @property
    def id(self) -> str:
        return f"{self.name}-p{self.pitch}-r{self.rate}"


def make_voices(count: int, seed: int = 0) -> list[Voice]:
    """count distinct voices: base voice x variant, each with its own pitch, rate and gain."""
    rng = random.Random(seed)
    names = [b + v for b in BASE_VOICES for v in VARIANTS]
    if count > len(names):
        raise UserError(f"at most {len(names)} voices can be made; lower data.num_voices")
    return [Voice(name, rng.randint(25, 80), rng.randint(130, 210), round(rng.uniform(0.3, 0.9), 3))
            for name in rng.sample(names, count)]


def stable_seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def speak(word: str, voice: Voice, take: int, seed: int = 0, sample_rate: int = 16_000,
          snr_db: tuple[float, float] = (10.0, 40.0)) -> torch.Tensor:
    """One take of a word by a voice: float32 (samples,) at sample_rate, peak at the voice's gain, plus
    background noise at a signal-to-noise ratio drawn from snr_db for this take (the room, not the
    speaker). Takes differ in rate and pitch too, as a speaker's repetitions do."""
    rng = np.random.default_rng(stable_seed(seed, word, voice.id, take, "noise"))
    rate = voice.rate + int(rng.integers(-20, 21))
    pitch = int(np.clip(voice.pitch + rng.integers(-8, 9), 0, 99))
    snr = rng.uniform(*snr_db)
    utterance_seed = stable_seed(seed, word, voice.id, take)
    audio = torch.from_numpy(ESpeak().say(word, voice.name, rate, pitch, utterance_seed).astype(np.float32) / 32768.0)
    if sample_rate != ESPEAK_RATE:
        audio = torchaudio.functional.resample(audio, ESPEAK_RATE, sample_rate)
    audio = audio / audio.abs().max().clamp_min(1e-6) * voice.gain
    noise_rms = audio.pow(2).mean().sqrt() / (10 ** (snr / 20))
    audio = audio + noise_rms * torch.from_numpy(rng.standard_normal(len(audio)).astype(np.float32))
    return audio.clamp(-1.0, 1.0)


# --- a cached corpus of spoken words -------------------------------------------------------------
# eSpeak NG carries state from one utterance to the next inside the library: the same call sequence
# in a fresh process gives the same samples, the same call repeated later in a process does not. So
# a corpus is always synthesised in one fixed order by a fresh Python process.

MANIFEST = "manifest.csv"


def synthesise_corpus(root: str | Path, words: list[str], num_voices: int, takes: int, seed: int = 0,
                      sample_rate: int = 16_000) -> Path:
    """Write every (word, voice, take) as a 16-bit WAV under root, then manifest.csv listing them
    (path, word, voice, take). Each file is written atomically and the manifest last: a corpus is
    complete once its manifest exists, and one cut short is synthesised again."""
    import csv
    import io

    import soundfile

    root = Path(root)
    rows = []
    for v, voice in enumerate(make_voices(num_voices, seed)):
        for word in words:
            for take in range(takes):
                rel = f"{word}/{v:02d}_{take}.wav"
                audio = speak(word, voice, take, seed, sample_rate).numpy()
                atomic_write(root / rel, lambda f: soundfile.write(f, audio, sample_rate, subtype="PCM_16", format="WAV"))
                rows.append({"path": rel, "word": word, "voice": f"{v:02d}:{voice.id}", "take": take})
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["path", "word", "voice", "take"])
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(root / MANIFEST, table.getvalue())


def build_spoken_words(root: str | Path, words: list[str], num_voices: int, takes: int, seed: int = 0,
                       sample_rate: int = 16_000) -> Path:
    """synthesise_corpus in a fresh Python process (see above), unless root already holds the corpus."""
    import json
    import subprocess
    import sys

    import importlib.util

    root = Path(root)
    if (root / MANIFEST).is_file():
        return root / MANIFEST
    if importlib.util.find_spec("espeakng_loader") is None:
        raise UserError(ESPEAK_MISSING)
    spec = json.dumps({"root": str(root), "words": list(words), "num_voices": num_voices, "takes": takes,
                       "seed": seed, "sample_rate": sample_rate})
    done = subprocess.run([sys.executable, "-m", "ssl_zoo.data.speech_synth", spec], capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise UserError(f"synthesising the spoken words failed: {lines[-1] if lines else done.returncode}")
    return root / MANIFEST


if __name__ == "__main__":
    import json
    import sys

    synthesise_corpus(**json.loads(sys.argv[1]))
