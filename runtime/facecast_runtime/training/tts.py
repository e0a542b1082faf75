"""Multilingual TTS corpus generator: speech audio with exact phone timing.

Engines
-------
* **espeak-ng** through ``libespeak-ng.so.1`` (ctypes, no headers needed). The library is
  initialised with ``espeakINITIALIZE_PHONEME_EVENTS`` in synchronous mode; the synthesis
  callback receives the audio and, with it, one ``espeakEVENT_PHONEME`` per phone carrying the
  phone's name and its start as a sample position in the very audio stream we are handed
  (``event.sample``, 22050 Hz, counted from the start of the call). A phone ends where the next
  one starts; the last one ends at the end of the audio. Each utterance is spoken twice, in two
  forks of a process that has initialised the library but never spoken (:func:`speak_groups`):
  once with IPA event names (``espeakINITIALIZE_PHONEME_IPA``; this pass's audio is kept) and
  once with espeak mnemonics, which tell pauses from phones without an IPA name. Same state,
  same samples, same event positions. ``--pho`` output only works for MBROLA voices, so it is
  not used.
* **festival** (kal_diphone, ked_diphone, cmu_us_slt_arctic_hts): one ``festival -b`` process
  per batch runs a generated Scheme script that synthesises each text, saves the wave and writes
  every item of the ``Segment`` relation with its ``end`` feature (seconds in the saved wave).
* **festival voices of other languages**, built from recordings of real speakers (Italian
  lp_diphone / pc_diphone, Czech czech_dita / czech_ph / czech_krb / czech_machac, Finnish
  suo_fi_lj_diphone / hy_fi_mv_diphone, Catalan upc_ca_ona_hts, Russian msu_ru_nsh_clunits;
  ``FESTIVAL_FOREIGN_*_VOICES``, only those installed are used), rendered the same way, taking
  ``foreign_share`` of the utterances (``--foreign-share``, default 25 % of train and 20 % of
  held-out utterances, out of espeak-ng's part; the minutes per split are unchanged). Their
  Segment names are read through each voice's phone set: :func:`festival_phoneset` dumps
  ``(PhoneSet.description)`` once per process and :func:`visemes.festival_phoneset_ipa`
  maps every phone's articulatory features (vowel height / frontness / rounding, consonant
  type / place / voicing) to IPA, so labial stops and nasals are p / b / m. Texts are
  pseudo-words in each language's own spelling (:func:`orthographic_phrase`), written into
  the script in the encoding the voice's front end reads (``FESTIVAL_TEXT_ENCODING``).

Every utterance is built from 1-4 *groups* synthesised separately (each group holds 1-3
phrases joined by punctuation, which gives the engine's own short pauses), joined with
inserted silences of 0.3-1.5 s, plus leading and trailing silence. Audio is resampled to
16 kHz (polyphase, zero phase, so timing is unchanged) and saved as int16 WAV.

Alignment is verified for every utterance (:func:`check_alignment`): phones must be monotonic
and tile ``[0, duration]`` exactly, and every silence of 60 ms or more must be quiet in the audio
(RMS at least 30 dB under the utterance's speech RMS, or else steady room tone: no louder than
the utterance's noise floor + 6 dB, no 10 ms frame above the boundary checks' sound level, floor
at most -20 dB) - which fails if the timing were shifted or stretched. Failing utterances are
dropped and counted (``stats.json``: ``rejected`` and ``rejected_by_voice``).

Texts (no network): English words from the CMU dictionary shipped with pocketsphinx; number,
year and digit readings by espeak-ng in each language; day, month, language and country names
from the system's glibc locale sources (``/usr/share/i18n/locales``); and random pronounceable
syllables in espeak-ng's phoneme input notation ``[[...]]`` built from each language's own
phoneme table (probed through the library), biased towards bilabials, rounded and open vowels.

Held-out split: voices never used in training (espeak-ng variants ``f5`` and ``m7``, festival
``cmu_us_slt_arctic_hts``, and of the festival voices of other languages one per language that
has two or more: ``pc_diphone`` (it), ``czech_machac`` (cs), ``hy_fi_mv_diphone`` (fi); Catalan
and Russian have one voice each, used in training only), languages never used in training (hu, eu, ta, yue) next to trained
ones, and texts never used in training (a disjoint English word pool; syllable strings only for
other languages). ``manifest.jsonl`` marks every entry's ``split``.

CLI: ``python -m facecast_runtime.training.tts --out work_data/tts --minutes 60 --seed 0``.
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .visemes import (SILENCE, festival_phoneset_ipa, normalize_label, normalize_phones,
                      phone_class)

SAMPLE_RATE = 16000
ESPEAK_LIBRARY = "libespeak-ng.so.1"
LOCALE_DIR = Path("/usr/share/i18n/locales")

#: espeak-ng voices trained on, with a sampling weight (major languages twice as often).
#: English voices (en-us, en, en-gb-scotland, en-029) are drawn separately (``english_share``).
TRAIN_LANGUAGES: dict[str, float] = {
    "de": 2, "fr": 2, "es": 2, "it": 2, "pt": 1, "pt-br": 2, "nl": 2,
    "pl": 2, "ru": 2, "cs": 1, "sv": 1.5, "fi": 1.5, "tr": 2, "hi": 2, "ja": 2, "cmn": 2,
    "ko": 2, "ar": 2, "vi": 2, "id": 2, "sw": 1.5, "el": 1, "uk": 1, "da": 1, "nb": 1,
    "ro": 1, "fa": 1, "th": 1, "bn": 1, "ca": 1, "sk": 1, "hr": 1, "bg": 1, "ms": 1,
    "af": 1, "et": 1, "lv": 1, "sl": 1, "sr": 1, "ka": 1, "hy": 1, "am": 1, "ur": 1,
    "es-419": 1,
}
#: espeak-ng voices of the held-out split: some trained languages plus unseen ones.
HELDOUT_LANGUAGES: dict[str, float] = {
    "en-us": 1, "de": 1, "fr": 1, "es": 1, "ru": 1, "cmn": 1, "ja": 1, "ar": 1, "hi": 1,
    "pt-br": 1, "sw": 1, "hu": 1.5, "eu": 1.5, "ta": 1.5, "yue": 1.5,
}
#: espeak-ng voice variants used for training (voices/!v); "" = the language's default voice.
TRAIN_VARIANTS: tuple[str, ...] = (
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m8", "f1", "f2", "f3", "f4", "klatt", "klatt2",
    "klatt3", "klatt4", "Andy", "Annie", "aunty", "belinda", "boris", "david", "gustave",
    "iven", "john", "linda", "max", "michel", "norbert", "pablo", "paul", "quincy", "rob",
    "robert", "steph", "travis", "zac", "Alex", "Jacky", "Lee", "Mike", "grandpa", "adam",
    "edward", "benjamin", "antonio", "shelby", "victor", "marcelo", "Michael", "Mario", "Gene",
    "ed",
)
#: espeak-ng variants only ever used in the held-out split.
HELDOUT_VARIANTS: tuple[str, ...] = ("f5", "m7")
FESTIVAL_TRAIN_VOICES: tuple[str, ...] = ("kal_diphone", "ked_diphone")
FESTIVAL_HELDOUT_VOICES: tuple[str, ...] = ("cmu_us_slt_arctic_hts",)
#: festival voices built from recordings of real speakers in other languages -> language.
#: Where a language has two or more voices, one is held out.
FESTIVAL_FOREIGN_TRAIN_VOICES: dict[str, str] = {
    "lp_diphone": "it", "czech_dita": "cs", "czech_ph": "cs", "suo_fi_lj_diphone": "fi",
    "upc_ca_ona_hts": "ca", "msu_ru_nsh_clunits": "ru", "czech_krb": "cs",
}
FESTIVAL_FOREIGN_HELDOUT_VOICES: dict[str, str] = {
    "pc_diphone": "it", "czech_machac": "cs", "hy_fi_mv_diphone": "fi",
}
#: The Indic NSK diphone voices (festvox-hi-nsk / -mr-nsk / -te-nsk; native script only) are
#: mapped (phone set, spelling) but not used by default: their pause units carry a loud,
#: fluctuating noise (about -20 dB re speech, 10 ms frames 15-20 dB above its own floor), so
#: every utterance fails the quiet-pause check. Pass them in ``festival_foreign_*_voices`` to
#: try them (hi / mr as training, te as an unseen held-out language).
FESTIVAL_NSK_VOICES: dict[str, str] = {
    "hindi_NSK_diphone": "hi", "marathi_NSK_diphone": "mr", "telugu_NSK_diphone": "te",
}
#: text encoding each language's festival front end reads (its Scheme strings are bytes)
FESTIVAL_TEXT_ENCODING: dict[str, str] = {
    "en-us": "ascii", "it": "latin-1", "cs": "iso-8859-2", "fi": "latin-1", "ca": "latin-1",
    "ru": "utf-8", "hi": "utf-8", "mr": "utf-8", "te": "utf-8",
}
FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")

#: glibc locale source per espeak-ng language (day / month / language / country names).
LOCALES: dict[str, str] = {
    "de": "de_DE", "fr": "fr_FR", "es": "es_ES", "es-419": "es_MX", "it": "it_IT",
    "pt": "pt_PT", "pt-br": "pt_BR", "nl": "nl_NL", "pl": "pl_PL", "ru": "ru_RU",
    "cs": "cs_CZ", "sv": "sv_SE", "fi": "fi_FI", "tr": "tr_TR", "hi": "hi_IN", "ko": "ko_KR",
    "ar": "ar_EG", "vi": "vi_VN", "id": "id_ID", "sw": "sw_KE", "el": "el_GR", "uk": "uk_UA",
    "da": "da_DK", "nb": "nb_NO", "ro": "ro_RO", "fa": "fa_IR", "th": "th_TH", "bn": "bn_IN",
    "ca": "ca_ES", "sk": "sk_SK", "hr": "hr_HR", "bg": "bg_BG", "ms": "ms_MY", "af": "af_ZA",
    "et": "et_EE", "lv": "lv_LV", "sl": "sl_SI", "sr": "sr_RS", "ka": "ka_GE", "hy": "hy_AM",
    "am": "am_ET", "ur": "ur_PK", "hu": "hu_HU", "eu": "eu_ES", "ta": "ta_IN",
}

# espeak-ng API constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_PHONEMES_INPUT = 0x100
_EVENT_PHONEME = 7
_EVENT_LIST_TERMINATED = 0
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 2, 3, 4, 7

ProgressFn = Callable[[dict], None]

#: An utterance is rejected when sound starts more than this before the labelled end of a
#: pause, or goes on more than this after its labelled start (echo delay added for voices with
#: an echo effect). Measured: espeak-ng <= 3 ms, festival <= 14 ms (HTS has 5 ms frames).
MAX_BOUNDARY_ERROR_MS = 25.0


# ----------------------------------------------------------------------------------------------
# Spec
# ----------------------------------------------------------------------------------------------


@dataclass
class CorpusSpec:
    """What to generate. ``minutes`` / ``heldout_minutes`` are audio minutes per split."""

    minutes: float = 60.0
    heldout_minutes: float = 10.0
    workers: int = 2
    festival: bool = True
    train_languages: dict = field(default_factory=lambda: dict(TRAIN_LANGUAGES))
    heldout_languages: dict = field(default_factory=lambda: dict(HELDOUT_LANGUAGES))
    train_variants: tuple = TRAIN_VARIANTS
    heldout_variants: tuple = HELDOUT_VARIANTS
    festival_train_voices: tuple = FESTIVAL_TRAIN_VOICES
    festival_heldout_voices: tuple = FESTIVAL_HELDOUT_VOICES
    #: festival voices of other languages (voice -> language) and their share of utterances
    #: per split (taken from espeak-ng's share; 0 = the corpus as before these voices)
    festival_foreign_train_voices: dict = field(
        default_factory=lambda: dict(FESTIVAL_FOREIGN_TRAIN_VOICES))
    festival_foreign_heldout_voices: dict = field(
        default_factory=lambda: dict(FESTIVAL_FOREIGN_HELDOUT_VOICES))
    foreign_share: float = 0.25
    foreign_heldout_share: float = 0.2
    #: share of utterances from festival, and from espeak-ng English voices, per split
    festival_share: float = 0.18
    festival_heldout_share: float = 0.25
    english_share: float = 0.12
    #: inserted pause between groups (s) and leading / trailing silence ranges (s)
    pause_range: tuple = (0.3, 1.5)
    lead_range: tuple = (0.05, 0.6)
    trail_range: tuple = (0.15, 0.8)
    #: a silence of at least this length must be this quiet (dB re speech RMS)
    silence_check_min: float = 0.06
    silence_max_db: float = -30.0
    batch_seconds: float = 300.0

    @classmethod
    def from_any(cls, spec: "CorpusSpec | Mapping | None") -> "CorpusSpec":
        if spec is None:
            return cls()
        if isinstance(spec, CorpusSpec):
            return spec
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(spec) - names
        if unknown:
            raise ValueError(f"unknown corpus spec keys: {sorted(unknown)}")
        return cls(**dict(spec))


# ----------------------------------------------------------------------------------------------
# espeak-ng through ctypes
# ----------------------------------------------------------------------------------------------


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_Event))


def espeak_available() -> bool:
    """True when libespeak-ng can be loaded."""
    try:
        ctypes.CDLL(ESPEAK_LIBRARY)
        return True
    except OSError:
        return False


class EspeakEngine:
    """One libespeak-ng instance (one per process; the library keeps global state)."""

    def __init__(self) -> None:
        try:
            self._lib = ctypes.CDLL(ESPEAK_LIBRARY)
        except OSError as exc:
            raise RuntimeError(f"espeak-ng library {ESPEAK_LIBRARY} not found: {exc}") from exc
        lib = self._lib
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._cb = _SynthCallback(self._on_audio)
        self._mode: str | None = None
        self.sample_rate = 0
        #: phoneme events whose sample position disagreed with their ms position
        self.position_fallbacks = 0
        self._voice: tuple | None = None
        self._init("ipa")

    def _init(self, mode: str, force: bool = False) -> None:
        """(Re)initialise the library; ``mode`` 'ipa' or 'mnemonic' names the phoneme events.

        libespeak-ng 1.51 fixes the event naming at initialisation, so asking for the other
        naming means initialising again (a few ms)."""
        if self._mode == mode and not force:
            return
        flags = _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT
        if mode == "ipa":
            flags |= _INIT_PHONEME_IPA
        sr = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, flags)
        if sr <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self.sample_rate = int(sr)
        self._lib.espeak_SetSynthCallback(self._cb)
        self._mode = mode
        if self._voice is not None:
            self.set_voice(*self._voice)

    def _on_audio(self, wav, n, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "ignore")
                # ``sample`` is the exact sample position (``audio_position`` is the same in
                # whole ms); fall back to the ms value should the two ever disagree.
                pos = int(ev.sample)
                if self.sample_rate and abs(pos * 1000.0 / self.sample_rate
                                            - ev.audio_position) > 2.0:
                    pos = int(round(ev.audio_position * self.sample_rate / 1000.0))
                    self.position_fallbacks += 1
                self._events.append((pos, name))
            i += 1
        return 0

    def set_voice(self, voice: str, rate: int = 175, pitch: int = 50, pitch_range: int = 50,
                  wordgap: int = 0) -> None:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng voice {voice!r} not available")
        self._voice = (voice, rate, pitch, pitch_range, wordgap)
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch),
                             (_PARAM_RANGE, pitch_range), (_PARAM_WORDGAP, wordgap),
                             (_PARAM_VOLUME, 100)):
            self._lib.espeak_SetParameter(param, int(value), 0)

    def _run(self, text: str) -> tuple[np.ndarray, list[tuple[int, str]]]:
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        rc = self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0,
                                    _CHARS_UTF8 | _PHONEMES_INPUT, None, None)
        if rc != 0:
            raise RuntimeError(f"espeak_Synth failed ({rc}) for {text!r}")
        audio = (np.concatenate(self._chunks).astype(np.float32) / 32768.0
                 if self._chunks else np.zeros(0, np.float32))
        return audio, list(self._events)

    @staticmethod
    def _tile(n: int, sr: float, events: Sequence[tuple[int, str]]
              ) -> list[tuple[float, float, str]]:
        """Phones tiling [0, n) from event start positions (a leading gap is a pause)."""
        marks = [(min(max(pos, 0), n), lab) for pos, lab in events]
        if not marks or marks[0][0] > 0:
            marks.insert(0, (0, ""))
        phones: list[tuple[float, float, str]] = []
        for k, (a, lab) in enumerate(marks):
            b = marks[k + 1][0] if k + 1 < len(marks) else n
            if b > a:
                phones.append((a / sr, b / sr, lab))
        return phones

    def events(self, text: str, mode: str = "ipa") -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Speak ``text`` (``[[...]]`` phoneme input allowed) with the current voice: (float32
        samples at ``sample_rate``, phoneme events ``(sample position, name)``); names are IPA
        (``mode='ipa'``) or espeak-ng mnemonics (``mode='mnemonic'``)."""
        self._init(mode)
        return self._run(text)

    def synth(self, text: str) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
        """Speak ``text``; returns (samples, phones ``(start_s, end_s, ipa)`` tiling the audio).
        A pause - and a phone without an IPA name - is ``""``; :func:`speak_groups` tells the
        two apart."""
        audio, ev = self.events(text, "ipa")
        return audio, self._tile(len(audio), float(self.sample_rate), ev)

    def phonemes_of(self, voice: str, text: str) -> list[str]:
        """IPA labels (no pauses) espeak-ng speaks for ``text`` with ``voice``."""
        self.set_voice(voice)
        _, phones = self.synth(text)
        return [lab for _, _, lab in phones if lab]


def _merge_event_names(ipa: Sequence[tuple[int, str]], mnem: Sequence[tuple[int, str]]
                       ) -> list[tuple[int, str]]:
    """Pair the events of the IPA pass with those of the mnemonic pass by sample position."""
    if len(ipa) == len(mnem) and all(a[0] == b[0] for a, b in zip(ipa, mnem)):
        return [(a[0], espeak_label(a[1], b[1])) for a, b in zip(ipa, mnem)]
    out, j = [], 0
    for pos, m in mnem:
        name = ""
        if j < len(ipa) and ipa[j][0] == pos:
            name = ipa[j][1]
            j += 1
        out.append((pos, espeak_label(name, m)))
    return out


def speak_groups(voice: str, groups: Sequence[str], rate: int = 175, pitch: int = 50,
                 pitch_range: int = 50, wordgap: int = 0
                 ) -> tuple[int, list[tuple[np.ndarray, list[tuple[float, float, str]]]]]:
    """Speak each text of ``groups`` with an espeak-ng voice; returns (sample rate, [(samples,
    phones)]) where phones ``(start_s, end_s, label)`` tile each group's audio.

    Two passes run in two forks of this process, which has initialised the library but never
    spoken: one names the phoneme events in IPA and keeps the audio, the other names them with
    espeak-ng mnemonics. Both start from the same library state, so they produce the same
    samples and the same event positions, and the names can be paired exactly. The mnemonics
    tell a pause (``_``, ``_:``, ``_!``) from a phone that has no IPA name. Labels are as in
    :func:`espeak_label`.
    """
    eng = _espeak()
    params = (voice, rate, pitch, pitch_range, wordgap)

    def run(mode: str):
        def go():
            eng._init(mode, force=True)
            eng.set_voice(*params)
            return [eng._run(text) for text in groups]
        return go

    first = _in_forked_child(run("ipa"))
    second = _in_forked_child(run("mnemonic"))
    for res in (first, second):
        if isinstance(res, tuple) and len(res) == 2 and res[0] is None:
            raise RuntimeError(str(res[1]))
    out = []
    sr = eng.sample_rate
    for (audio, ev_ipa), (audio2, ev_mn) in zip(first, second):
        if len(audio) != len(audio2):
            raise RuntimeError("espeak-ng passes differ in length")
        merged = _merge_event_names(ev_ipa, ev_mn)
        out.append((audio, EspeakEngine._tile(len(audio), float(sr), merged)))
    return sr, out


def espeak_label(ipa: str, mnemonic: str) -> str:
    """One espeak-ng phone from its IPA and mnemonic event names: the IPA name when there is
    one; else ``""`` (a pause) for the pause mnemonics (``_``, ``_:``, ``_!``...); else
    ``"|" + mnemonic``, read later through the espeak table of :mod:`visemes` (markers such as
    ``;`` normalise to ``""`` and merge into the previous phone)."""
    if ipa:
        return ipa
    if mnemonic.startswith("_") or not mnemonic:
        return ""
    return "|" + mnemonic


def espeak_phone_label(label: str) -> str:
    """Normalised label of a phone produced by :meth:`EspeakEngine.synth` (``""`` = a marker
    to merge into the previous phone)."""
    if label == "":
        return SILENCE
    if label.startswith("|"):
        return normalize_label(label[1:], "espeak")
    return normalize_label(label, "ipa")


def festival_phone_label(label: str) -> str:
    """Normalised label of a festival Segment name (radio phone set)."""
    return normalize_label(label, "radio")


def festival_voice_available(voice: str) -> bool:
    """True when festival has the voice installed (``voices/<language>/<voice>``)."""
    return shutil.which("festival") is not None and any(
        FESTIVAL_VOICE_DIR.glob(f"*/{voice}"))


def _parse_sexp(text: str) -> Any:
    """The first s-expression of festival's printed output (lists and atoms as str)."""
    stack: list[list] = [[]]
    for tok in re.findall(r"\(|\)|[^\s()]+", text):
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                break
            done = stack.pop()
            stack[-1].append(done)
            if len(stack) == 1:
                break
        else:
            stack[-1].append(tok)
    if not stack[0]:
        raise ValueError("no s-expression in festival output")
    return stack[0][0]


@lru_cache(maxsize=None)
def festival_phoneset(voice: str) -> tuple[str, dict, dict]:
    """(phone set name, declared feature values, {phone: {feature: value}}) of a festival
    voice, dumped from ``(PhoneSet.description)`` after selecting the voice (cached per
    process)."""
    script = (f"(voice_{voice})\n(print (list (PhoneSet.description '(name)) "
              f"(PhoneSet.description '(features)) (PhoneSet.description '(phones))))\n")
    proc = subprocess.run(["festival", "--pipe"], input=script, capture_output=True,
                          text=True, timeout=120)
    out = proc.stdout
    start = out.find("(((name")
    if start < 0:
        raise RuntimeError(f"festival voice {voice!r} gave no phone set: "
                           f"{(proc.stderr or out).strip()[-300:]}")
    (name_d,), (feat_d,), (phones_d,) = _parse_sexp(out[start:])
    name = str(name_d[1])
    declared = {str(f[0]): [str(v) for v in f[1]] for f in feat_d[1]}
    order = list(declared)
    phones = {}
    for ph in phones_d[1]:
        phones[str(ph[0])] = {k: str(v) for k, v in zip(order, ph[1:])}
    return name, declared, phones


@lru_cache(maxsize=None)
def festival_phone_table(voice: str) -> dict[str, str]:
    """{festival phone name: IPA} for a voice, from its phone-set features
    (:func:`visemes.festival_phoneset_ipa`)."""
    name, declared, phones = festival_phoneset(voice)
    return festival_phoneset_ipa(name, declared, phones)


def festival_voice_label(voice: str) -> Callable[[str], str]:
    """Label normaliser for the Segment names of a festival voice of another language."""
    table = festival_phone_table(voice)

    def label(name: str) -> str:
        if name in ("pau", "#", "##") or name == "":
            return SILENCE
        ipa = table.get(name)
        if ipa is None or ipa == "":
            return normalize_label(name, "ipa")
        return normalize_label(ipa, "ipa")
    return label


_ENGINE: EspeakEngine | None = None


def _espeak() -> EspeakEngine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = EspeakEngine()
    return _ENGINE


# ----------------------------------------------------------------------------------------------
# Text sources
# ----------------------------------------------------------------------------------------------

_CONSONANT_CANDIDATES = ("p b m f v t d n s z S Z tS dZ ts k g N l r R j w h x T D n^ l^ C "
                         "B J c X L").split()
_VOWEL_CANDIDATES = ("a A & E e i I o O u U y Y W 0 @ V 3 a: e: i: o: u: aI aU oU eI OI "
                     "A: O: y: Y:").split()


@lru_cache(maxsize=None)
def english_words() -> tuple[tuple[str, float], ...]:
    """(word, weight) from the CMU dictionary shipped with pocketsphinx. Weight favours words
    with bilabials, rounded and open vowels."""
    import pocketsphinx  # optional dependency, only for English texts

    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    words: list[tuple[str, float]] = []
    cls_of: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="ignore") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 2:
                continue
            w = parts[0]
            if not re.fullmatch(r"[a-z]{2,12}", w):
                continue
            score = 1.0
            for p in parts[1:]:
                c = cls_of.get(p)
                if c is None:
                    c = cls_of[p] = phone_class(p, "arpabet")
                if c == "bilabial":
                    score += 1.5
                elif c in ("rounded_vowel", "open_vowel"):
                    score += 1.0
                elif c == "labiodental":
                    score += 0.5
            words.append((w, score))
    return tuple(words)


def _text_split(text: str) -> str:
    """'train' or 'heldout' for a text item (a stable hash; about 10 % held out)."""
    h = int(hashlib.md5(text.encode("utf-8")).hexdigest()[:8], 16)
    return "heldout" if h % 10 == 0 else "train"


@lru_cache(maxsize=None)
def _english_pool(split: str) -> tuple[tuple[str, ...], np.ndarray]:
    words = [(w, s) for w, s in english_words() if _text_split(w) == split]
    names = tuple(w for w, _ in words)
    p = np.array([s for _, s in words], np.float64)
    return names, p / p.sum()


def _decode_locale_string(s: str) -> str:
    return re.sub(r"<U([0-9A-Fa-f]{4,6})>", lambda m: chr(int(m.group(1), 16)), s)


@lru_cache(maxsize=None)
def locale_words(locale: str, _depth: int = 0) -> tuple[str, ...]:
    """Day, month, language and country names (and yes/no words) from a glibc locale source."""
    path = LOCALE_DIR / locale
    if not path.is_file() or _depth > 3:
        return ()
    text = path.read_text(encoding="utf-8", errors="ignore")
    lines = text.splitlines()
    found: dict[str, list[str]] = {}
    copies: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*(day|mon|alt_mon|lang_name|country_name|yesstr|nostr)\s+(.*)$", line)
        if m:
            body = m.group(2)
            while body.rstrip().endswith("/") and i + 1 < len(lines):
                i += 1
                body = body.rstrip()[:-1] + lines[i]
            found.setdefault(m.group(1), []).extend(re.findall(r'"([^"]*)"', body))
        else:
            c = re.match(r'^\s*copy\s+"([^"]+)"', line)
            if c:
                copies.append(c.group(1))
        i += 1
    words: list[str] = []
    for key in ("day", "mon", "alt_mon", "lang_name", "country_name", "yesstr", "nostr"):
        for s in found.get(key, []):
            s = _decode_locale_string(s).strip()
            for w in s.split():
                if w and not re.search(r"[0-9%<>/\\]", w):
                    words.append(w.strip(".,;"))
    if "day" not in found:
        for c in copies:
            if c not in ("i18n", "iso14651_t1", "translit_combining") and c != locale:
                words.extend(locale_words(c, _depth + 1))
    return tuple(dict.fromkeys(w for w in words if w))


@dataclass
class LanguageInventory:
    """espeak-ng phoneme mnemonics usable in ``[[...]]`` input for one language."""

    language: str
    consonants: list[str]
    consonant_weights: list[float]
    vowels: list[str]
    vowel_weights: list[float]
    ipa: dict[str, str]


def probe_inventory(language: str, engine: EspeakEngine | None = None) -> LanguageInventory:
    """Which mnemonics the language's espeak-ng phoneme table knows, and what they sound as.

    A vowel mnemonic counts when ``[[t'V]]`` yields exactly two phones; a consonant when
    ``[[t'aCa]]`` yields four *and* its IPA also occurs in the language's own reading of
    numbers and locale words (so foreign consonants of the shared base table stay out); p, b
    and m are always kept. Weights favour bilabials (x3), labiodentals (x1.5), rounded and open
    vowels (x2.5 each).
    """
    eng = engine or _espeak()
    eng.set_voice(language)
    native: set[str] = set()
    words = locale_words(LOCALES.get(language, ""))[:40]
    sample = "1234567 89 2024 1999 365 4815 " + " ".join(words)
    _, phones = eng.synth(sample)
    native.update(lab for _, _, lab in phones if lab)
    cons, cw, vows, vw, ipa = [], [], [], [], {}
    seen_ipa: set[str] = set()
    for c in _CONSONANT_CANDIDATES:
        _, ph = eng.synth(f"[[t'a{c}a]]")
        labs = [lab for _, _, lab in ph if lab]
        if len(labs) != 4 or not labs[2]:
            continue
        lab = labs[2]
        cls = phone_class(lab, "ipa")
        if cls == "neutral" or lab in seen_ipa:
            continue
        if c not in ("p", "b", "m") and lab not in native:
            continue
        seen_ipa.add(lab)
        cons.append(c)
        ipa[c] = lab
        cw.append(3.0 if cls == "bilabial" else 1.5 if cls == "labiodental" else 1.0)
    for v in _VOWEL_CANDIDATES:
        _, ph = eng.synth(f"[[t'{v}]]")
        labs = [lab for _, _, lab in ph if lab]
        if len(labs) != 2 or not labs[1]:
            continue
        lab = labs[1]
        cls = phone_class(lab, "ipa")
        if cls == "neutral" or lab in seen_ipa or cls in ("bilabial", "other_consonant"):
            continue
        seen_ipa.add(lab)
        vows.append(v)
        ipa[v] = lab
        vw.append(2.5 if cls in ("rounded_vowel", "open_vowel") else 1.0)
    if not vows:
        vows, vw = ["a", "o", "u", "i", "e"], [2.5, 2.5, 2.5, 1.0, 1.0]
    return LanguageInventory(language, cons, cw, vows, vw, ipa)


def _pick(rng: np.random.Generator, items: Sequence[str], weights: Sequence[float]) -> str:
    w = np.asarray(weights, np.float64)
    return items[int(rng.choice(len(items), p=w / w.sum()))]


def syllable_phrase(rng: np.random.Generator, inv: LanguageInventory) -> str:
    """2-6 pseudo-words of 1-3 syllables ((C)V(C)) in espeak-ng ``[[...]]`` notation."""
    words = []
    stops = [c for c in inv.consonants if c in ("p", "b", "m", "n", "t", "k", "s", "l", "N")]
    for _ in range(int(rng.integers(2, 7))):
        nsyl = int(rng.integers(1, 4))
        stress = int(rng.integers(0, nsyl))
        sylls = []
        for k in range(nsyl):
            s = ""
            if rng.random() < 0.9 or k == 0:
                s += _pick(rng, inv.consonants, inv.consonant_weights)
            s += _pick(rng, inv.vowels, inv.vowel_weights)
            if stops and rng.random() < 0.2:
                s += stops[int(rng.integers(len(stops)))]
            sylls.append(("'" if k == stress and nsyl > 1 else "") + s)
        words.append("".join(sylls))
    return "[[" + " ".join(words) + "]]"


_DEVANAGARI: dict = {
    "c": [("प", 3), ("ब", 3), ("म", 3), ("व", 1.5), ("फ", 1), ("त", 1), ("द", 1), ("न", 1),
          ("स", 1), ("ल", 1), ("र", 1), ("क", 1), ("ग", .5), ("च", .5), ("ज", .5), ("श", .5),
          ("ह", .5), ("य", .5), ("ट", .5), ("ड", .5)],
    "v": [("", 1), ("ा", 2.5), ("ो", 2.5), ("ू", 2.5), ("ु", 1), ("ि", 1), ("ी", 1),
          ("े", 1), ("ै", .5), ("ौ", .5)],
    "V": {"": "अ", "ा": "आ", "ो": "ओ", "ू": "ऊ", "ु": "उ", "ि": "इ", "ी": "ई",
          "े": "ए", "ै": "ऐ", "ौ": "औ"},
    "k": [("ं", 1), ("न्", 1), ("ल्", 1), ("स्", 1)],
}

#: Pseudo-word letters per language for festival voices of other languages (near-phonemic
#: spellings only): consonant onsets, vowels, and optional syllable codas. Weights as in
#: :func:`probe_inventory`: bilabials x3, labiodentals x1.5, rounded and open vowels x2.5.
_ORTHOGRAPHY: dict[str, dict[str, list[tuple[str, float]]]] = {
    "it": {"c": [("p", 3), ("b", 3), ("m", 3), ("f", 1.5), ("v", 1.5), ("t", 1), ("d", 1),
                 ("n", 1), ("s", 1), ("l", 1), ("r", 1), ("gn", .5), ("z", .5)],
           "v": [("a", 2.5), ("o", 2.5), ("u", 2.5), ("e", 1), ("i", 1)],
           "k": [("n", 1), ("l", 1), ("r", 1), ("m", 1)]},
    "cs": {"c": [("p", 3), ("b", 3), ("m", 3), ("f", 1.5), ("v", 1.5), ("t", 1), ("d", 1),
                 ("n", 1), ("s", 1), ("z", .5), ("l", 1), ("r", 1), ("k", 1), ("h", .5),
                 ("j", .5), ("č", .5), ("š", .5), ("ž", .5), ("ř", .5),
                 ("ch", .5)],
           "v": [("a", 2.5), ("o", 2.5), ("u", 2.5), ("e", 1), ("i", 1), ("á", 2.5),
                 ("ú", 1), ("í", .5)],
           "k": [("m", 1), ("n", 1), ("l", 1), ("s", 1), ("k", 1)]},
    "fi": {"c": [("p", 3), ("b", 1), ("m", 3), ("v", 1.5), ("t", 1), ("d", .5), ("n", 1),
                 ("s", 1), ("l", 1), ("r", 1), ("k", 1), ("h", .5), ("j", .5)],
           "v": [("a", 2.5), ("o", 2.5), ("u", 2.5), ("e", 1), ("i", 1), ("y", 2.5),
                 ("ä", 2.5), ("ö", 2.5), ("aa", 1), ("oo", 1), ("uu", 1)],
           "k": [("n", 1), ("l", 1), ("s", 1), ("t", 1)]},
    "ca": {"c": [("p", 3), ("b", 3), ("m", 3), ("f", 1.5), ("t", 1), ("d", 1), ("n", 1),
                 ("s", 1), ("l", 1), ("r", 1), ("ny", .5), ("ll", .5)],
           "v": [("a", 2.5), ("o", 2.5), ("u", 2.5), ("e", 1), ("i", 1), ("à", 1),
                 ("ò", 1)],
           "k": [("n", 1), ("l", 1), ("s", 1), ("r", 1)]},
    "ru": {"c": [("п", 3), ("б", 3), ("м", 3), ("ф", 1.5),
                 ("в", 1.5), ("т", 1), ("д", 1), ("н", 1),
                 ("с", 1), ("з", .5), ("л", 1), ("р", 1),
                 ("к", 1), ("г", .5), ("ш", .5), ("ж", .5)],
           "v": [("а", 2.5), ("о", 2.5), ("у", 2.5), ("э", 1),
                 ("ы", 1), ("и", 1)],
           "k": [("н", 1), ("л", 1), ("с", 1), ("м", 1)]},
    # Devanagari / Telugu script (the NSK voices read nothing else): consonant letters carry
    # the inherent vowel (""), "v" are vowel signs, "V" the independent vowel letter of each
    # sign (a syllable without an onset), codas a consonant + virama or the anusvara (read m)
    "hi": _DEVANAGARI,
    "mr": {**_DEVANAGARI, "c": _DEVANAGARI["c"] + [("ळ", .5)]},
    "te": {"c": [("ప", 3), ("బ", 3), ("మ", 3), ("వ", 1.5), ("త", 1), ("ద", 1), ("న", 1),
                 ("స", 1), ("ల", 1), ("ర", 1), ("క", 1), ("గ", .5), ("చ", .5), ("జ", .5),
                 ("శ", .5), ("య", .5), ("ట", .5), ("డ", .5)],
           "v": [("", 2.5), ("ా", 2.5), ("ొ", 2.5), ("ో", 2.5), ("ు", 2.5),
                 ("ూ", 1), ("ి", 1), ("ీ", .5), ("ె", 1), ("ే", .5),
                 ("ై", .5), ("ౌ", .5)],
           "V": {"": "అ", "ా": "ఆ", "ొ": "ఒ", "ో": "ఓ", "ు": "ఉ", "ూ": "ఊ",
                 "ి": "ఇ", "ీ": "ఈ", "ె": "ఎ", "ే": "ఏ", "ై": "ఐ", "ౌ": "ఔ"},
           "k": [("ం", 1), ("న్", 1), ("ల్", 1)]},
}


def orthographic_phrase(rng: np.random.Generator, language: str) -> str:
    """2-6 pronounceable pseudo-words of 1-3 (C)V(C) syllables in the language's own
    spelling (a key of ``_ORTHOGRAPHY``), for festival voices that read text."""
    o = _ORTHOGRAPHY[language]
    cons, cw = zip(*o["c"])
    vows, vw = zip(*o["v"])
    codas = [c for c, _ in o["k"]]
    words = []
    for _ in range(int(rng.integers(2, 7))):
        w = ""
        for k in range(int(rng.integers(1, 4))):
            onset = rng.random() < 0.9 or k == 0
            if onset:
                w += _pick(rng, cons, cw)
            v = _pick(rng, vows, vw)
            w += v if onset or "V" not in o else o["V"][v]
            if rng.random() < 0.15:
                w += codas[int(rng.integers(len(codas)))]
        words.append(w)
    return " ".join(words)


def number_phrase(rng: np.random.Generator) -> str:
    kind = rng.random()
    if kind < 0.3:
        return str(int(rng.integers(0, 1000)))
    if kind < 0.55:
        return str(int(rng.integers(1000, 100000)))
    if kind < 0.8:
        return str(int(rng.integers(1800, 2100)))
    return " ".join(str(int(rng.integers(0, 100))) for _ in range(int(rng.integers(2, 4))))


def english_phrase(rng: np.random.Generator, split: str) -> str:
    names, p = _english_pool(split)
    n = int(rng.integers(2, 6))
    idx = rng.choice(len(names), size=n, p=p)
    words = [names[i] for i in idx]
    if split == "train" and rng.random() < 0.2:
        words.insert(int(rng.integers(0, len(words) + 1)), number_phrase(rng))
    return " ".join(words)


def _join_phrases(rng: np.random.Generator, phrases: Sequence[str]) -> str:
    out = ""
    for k, ph in enumerate(phrases):
        out += ph
        if k < len(phrases) - 1:
            out += str(rng.choice([", ", ", ", ", ", ". ", ". ", "? "]))
        else:
            out += str(rng.choice([".", ".", ".", "?", "!"]))
    return out


# ----------------------------------------------------------------------------------------------
# Planning
# ----------------------------------------------------------------------------------------------


def _finish_job(job: dict, rng: np.random.Generator, spec: "CorpusSpec", groups: list[str],
                kinds: list[str]) -> dict:
    """Lead, inter-group and trailing silences and the peak level of a planned utterance."""
    lead = float(rng.uniform(*spec.lead_range)) if rng.random() < 0.9 else float(
        rng.uniform(0.0, spec.lead_range[0]))
    pauses = [round(lead, 4)]
    pauses += [round(float(rng.uniform(*spec.pause_range)), 4) for _ in range(len(groups) - 1)]
    pauses.append(round(float(rng.uniform(*spec.trail_range)), 4))
    job.update(groups=groups, pauses=pauses, text_kinds=sorted(set(kinds)),
               peak=round(float(rng.uniform(0.35, 0.9)), 3))
    return job


def _plan_job(rng: np.random.Generator, split: str, index: int, spec: CorpusSpec,
              inventories: Mapping[str, LanguageInventory]) -> dict:
    heldout = split == "heldout"
    fshare = spec.festival_heldout_share if heldout else spec.festival_share
    fvoices = spec.festival_heldout_voices if heldout else spec.festival_train_voices
    xvoices = (spec.festival_foreign_heldout_voices if heldout
               else spec.festival_foreign_train_voices)
    xshare = (spec.foreign_heldout_share if heldout else spec.foreign_share) \
        if spec.festival and xvoices else 0.0
    r = rng.random()
    job: dict[str, Any] = {"id": f"{'ho' if heldout else 'tr'}{index:06d}", "split": split}
    if spec.festival and xvoices and fshare <= r < fshare + xshare:
        # a festival voice of another language (drawn after the English festival band, so a
        # zero share leaves every other plan as it was)
        names = sorted(xvoices)
        voice = names[int(rng.integers(len(names)))]
        lang = str(xvoices[voice])
        job.update(engine="festival", voice=voice, variant="", language=lang,
                   params={"stretch": round(float(rng.uniform(0.8, 1.3)), 3)})
        groups, kinds = [], []
        n_phrases = int(rng.integers(2, 6))
        n_groups = min(n_phrases, int(rng.choice([1, 2, 2, 3, 3, 4])))
        cuts = sorted(rng.choice(np.arange(1, n_phrases), size=n_groups - 1, replace=False)) \
            if n_groups > 1 else []
        for size in np.diff([0, *cuts, n_phrases]):
            groups.append(_join_phrases(rng, [orthographic_phrase(rng, lang)
                                              for _ in range(int(size))]))
            kinds.append("syllables")
        return _finish_job(job, rng, spec, groups, kinds)
    if spec.festival and fvoices and r < fshare:
        voice = str(fvoices[int(rng.integers(len(fvoices)))])
        job.update(engine="festival", voice=voice, variant="", language="en-us",
                   params={"stretch": round(float(rng.uniform(0.8, 1.35)), 3),
                           "f0_mean": int(rng.integers(85, 140)),
                           "f0_std": int(rng.integers(8, 28))})
        lang = "en-us"
    else:
        if not heldout and rng.random() < spec.english_share / max(1e-9, 1.0 - fshare
                                                                    - xshare):
            lang = str(rng.choice(["en-us", "en", "en-us", "en-gb-scotland", "en-029"]))
        else:
            table = spec.heldout_languages if heldout else spec.train_languages
            langs = sorted(table)
            w = np.array([table[k] for k in langs], np.float64)
            lang = langs[int(rng.choice(len(langs), p=w / w.sum()))]
        variants = spec.heldout_variants if heldout else spec.train_variants
        variant = str(variants[int(rng.integers(len(variants)))])
        fast = rng.random()
        rate = int(rng.integers(90, 130)) if fast < 0.1 else int(rng.integers(130, 270))
        job.update(engine="espeak-ng", voice=lang + (f"+{variant}" if variant else ""),
                   variant=variant, language=lang,
                   params={"rate": rate, "pitch": int(rng.integers(20, 81)),
                           "range": int(rng.integers(20, 91)),
                           "wordgap": 0 if rng.random() < 0.8 else int(rng.integers(1, 5))})
    english = lang.startswith("en")
    base_lang = lang
    groups, kinds = [], []
    n_phrases = int(rng.integers(2, 6))
    n_groups = min(n_phrases, int(rng.choice([1, 2, 2, 3, 3, 4])))
    cuts = sorted(rng.choice(np.arange(1, n_phrases), size=n_groups - 1, replace=False)) \
        if n_groups > 1 else []
    sizes = np.diff([0, *cuts, n_phrases])
    for size in sizes:
        phrases = []
        for _ in range(int(size)):
            if english:
                phrases.append(english_phrase(rng, split))
                kinds.append("words")
                continue
            inv = inventories[base_lang]
            words = locale_words(LOCALES.get(base_lang, "")) if not heldout else ()
            x = rng.random()
            if heldout or x < 0.55:
                phrases.append(syllable_phrase(rng, inv))
                kinds.append("syllables")
            elif x < 0.8 or not words:
                phrases.append(number_phrase(rng))
                kinds.append("numbers")
            else:
                k = int(rng.integers(1, 4))
                ws = [words[int(i)] for i in rng.integers(0, len(words), size=k)]
                if rng.random() < 0.5:
                    ws.append(number_phrase(rng))
                phrases.append(" ".join(ws))
                kinds.append("locale_words")
        groups.append(_join_phrases(rng, phrases))
    return _finish_job(job, rng, spec, groups, kinds)


# ----------------------------------------------------------------------------------------------
# Rendering (runs in worker processes)
# ----------------------------------------------------------------------------------------------


def _resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    if sr_in == sr_out:
        return x.astype(np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def _assemble(parts: Sequence[tuple[np.ndarray, list]], pauses: Sequence[float], sr: int,
              silence_label: str) -> tuple[np.ndarray, list, list]:
    """Join group audio with inserted silences; returns (samples, raw phones, group spans)."""
    chunks: list[np.ndarray] = []
    phones: list[tuple[float, float, str]] = []
    spans = []
    pos = 0

    def add_silence(sec: float) -> None:
        nonlocal pos
        n = int(round(sec * sr))
        if n <= 0:
            return
        chunks.append(np.zeros(n, np.float32))
        phones.append((pos / sr, (pos + n) / sr, silence_label))
        pos += n

    add_silence(pauses[0])
    for k, (audio, ph) in enumerate(parts):
        n = len(audio)
        t0 = pos / sr
        dur = n / sr
        for s, e, lab in ph:
            s = min(s, dur)
            e = min(e, dur)
            if e > s:
                phones.append((t0 + s, t0 + e, lab))
        if ph and ph[-1][1] < dur - 1e-9:  # audio longer than the last phone: a pause
            phones.append((t0 + ph[-1][1], t0 + dur, silence_label))
        chunks.append(audio.astype(np.float32))
        spans.append((t0, t0 + dur))
        pos += n
        add_silence(pauses[k + 1])
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return samples, phones, spans


def variant_echo_delay(variant: str) -> float:
    """Echo delay (s) of an espeak-ng voice variant (its ``echo`` line), 0 when none."""
    if not variant:
        return 0.0
    for base in ("/usr/lib/x86_64-linux-gnu/espeak-ng-data", "/usr/share/espeak-ng-data",
                 "/usr/lib/espeak-ng-data"):
        path = Path(base) / "voices" / "!v" / variant
        if path.is_file():
            for line in path.read_text(errors="ignore").splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "echo":
                    try:
                        return float(parts[1]) / 1000.0 if float(parts[2]) > 0 else 0.0
                    except ValueError:
                        return 0.0
            return 0.0
    return 0.0


#: Noise-floor route of the quiet-pause check (:func:`check_alignment`): a pause louder than
#: ``silence_max_db`` re speech RMS still passes when it is the voice's steady room tone.
#: ``floor`` = this percentile of the 10 ms frame levels over all labelled pauses of the
#: utterance (digitally silent frames, below ``_DIGITAL_SILENCE_DB``, left out), from at least
#: ``NOISE_FLOOR_MIN_FRAMES`` frames.
NOISE_FLOOR_PERCENTILE = 20.0
NOISE_FLOOR_MIN_FRAMES = 10
#: the floor itself must be at most this loud re speech RMS (else it is not a pause)
NOISE_FLOOR_MAX_DB = -20.0
#: a pause's RMS may exceed the floor by at most this much (steady: no extra energy) ...
NOISE_EXCESS_MAX_DB = 6.0
#: ... and none of its 10 ms frames may be *loud*: above ``max(onset_db, floor + this)``, the
#: same level from which the boundary checks take a frame for sound (no burst) ...
NOISE_BURST_MAX_DB = 10.0
#: ... and its RMS never above this, whatever the floor (absolute cap re speech RMS)
SILENCE_CAP_DB = -18.0
_DIGITAL_SILENCE_DB = -100.0


def _frame_db(x: np.ndarray, win: int, ref: float) -> np.ndarray:
    """Levels (dB re ``ref``) of consecutive non-overlapping ``win``-sample frames."""
    n = len(x) // win
    if n <= 0:
        return np.zeros(0)
    fr = x[:n * win].reshape(n, win)
    return 20 * np.log10(np.maximum(np.sqrt(np.mean(fr ** 2, axis=1)) / ref, 1e-6))


def check_alignment(samples: np.ndarray, sr: int, phones: Sequence,
                    min_silence: float = 0.06, margin: float = 0.01,
                    tail: float = 0.0, onset_db: float = -20.0,
                    silence_max_db: float = -30.0) -> dict:
    """Alignment checks of one utterance.

    Returns ``{"monotonic", "covers", "silence_ok", "silence_db_max", "silence_count",
    "noise_floor_db", "silence_excess_db_max", "silence_burst_db_max", "onset_lead_ms",
    "offset_overhang_ms", "vowel_db_median"}``; levels are dB re the RMS of all speech
    phones.

    * Structure: phones must be ordered, contiguous and tile [0, duration].
    * Quiet pauses: every silence phone of at least ``min_silence`` s is measured on its inner
      part (``margin`` trimmed on both sides, and ``tail`` more at the start: the echo of voices
      with an echo effect): its RMS, and its 10 ms frame levels. The utterance's *noise floor*
      is the ``NOISE_FLOOR_PERCENTILE``-th percentile of the frame levels over all its pauses
      (digitally silent frames - the inserted silences - left out; ``-120`` when fewer than
      ``NOISE_FLOOR_MIN_FRAMES`` frames remain, i.e. the voice's pauses are clean). A pause
      passes when its RMS is at most ``silence_max_db`` (the plain rule), or when it is steady
      room tone: the floor is at most ``NOISE_FLOOR_MAX_DB``, the pause's RMS is at most
      ``NOISE_EXCESS_MAX_DB`` above the floor and at most ``SILENCE_CAP_DB`` in absolute terms,
      and none of its 10 ms frames is *loud* (above ``max(onset_db, floor +
      NOISE_BURST_MAX_DB)``, the boundary checks' sound level below). Speech sound inside a
      labelled pause (phone times that do not match the audio) is a burst well above any
      steady floor and raises the pause's RMS, so it still fails; so does a "floor" at nearly
      speech level. Clean voices (floor under ``silence_max_db - NOISE_EXCESS_MAX_DB``) are
      judged by the plain rule alone, exactly as before. ``silence_ok`` is the verdict;
      ``silence_db_max`` the loudest pause RMS, ``silence_excess_db_max`` /
      ``silence_burst_db_max`` the largest RMS / loudest-frame excess over the floor among
      pauses that fail the plain rule (``None`` when none does).
    * Boundaries: ``onset_lead_ms`` is how long before the labelled end of a pause (>= 100 ms)
      sound already starts (worst case; positive = audio before its phone), and
      ``offset_overhang_ms`` how long after the labelled start of a pause sound goes on (5 ms
      RMS windows, 1 ms hop; *sound* = above ``max(onset_db, floor + NOISE_BURST_MAX_DB)``, so
      weaker breath / diphone noise and a steady room tone are not taken for speech, while the
      threshold never drops under ``onset_db``).
    """
    x = np.asarray(samples, np.float64)
    dur = len(x) / sr
    ph = [(float(p[0]), float(p[1]), str(p[2])) if not hasattr(p, "label")
          else (p.start, p.end, p.label) for p in phones]
    mono = all(s < e for s, e, _ in ph) and all(
        abs(ph[i][1] - ph[i + 1][0]) < 1e-6 for i in range(len(ph) - 1))
    covers = bool(ph) and abs(ph[0][0]) < 1e-6 and abs(ph[-1][1] - dur) <= 1.5 / sr
    speech = np.zeros(len(x), bool)
    for s, e, lab in ph:
        if lab != SILENCE:
            speech[int(round(s * sr)):int(round(e * sr))] = True
    ref = math.sqrt(float(np.mean(x[speech] ** 2))) if speech.any() else 0.0
    ref = max(ref, 1e-9)
    fwin = max(1, round(0.01 * sr))
    pauses: list[tuple[float, np.ndarray]] = []  # (RMS dB, 10 ms frame dB) per checked pause
    vowel_db = []
    for s, e, lab in ph:
        a, b = int(round((s + margin) * sr)), int(round((e - margin) * sr))
        if lab == SILENCE and s > 0:
            a = int(round((s + margin + tail) * sr))
        if lab == SILENCE and e - s >= min_silence and b > a:
            rms = math.sqrt(float(np.mean(x[a:b] ** 2)))
            pauses.append((20 * math.log10(max(rms / ref, 1e-6)),  # floor -120 dB
                           _frame_db(x[a:b], fwin, ref)))
        elif lab != SILENCE and phone_class(lab, "ipa") in ("open_vowel", "rounded_vowel",
                                                             "other_vowel") and b > a:
            rms = math.sqrt(float(np.mean(x[a:b] ** 2))) + 1e-12
            vowel_db.append(20 * math.log10(rms / ref))
    frames = np.concatenate([f for _, f in pauses]) if pauses else np.zeros(0)
    frames = frames[frames > _DIGITAL_SILENCE_DB]
    floor = (float(np.percentile(frames, NOISE_FLOOR_PERCENTILE))
             if len(frames) >= NOISE_FLOOR_MIN_FRAMES else -120.0)
    worst = max((r for r, _ in pauses), default=-120.0)
    loud_db = max(onset_db, floor + NOISE_BURST_MAX_DB)  # "sound", here and at boundaries
    silence_ok = True
    excess_max = burst_max = None
    for rms_db, f in pauses:
        if rms_db <= silence_max_db:
            continue
        excess = rms_db - floor
        top = float(f.max()) if len(f) else rms_db
        burst = top - floor
        excess_max = excess if excess_max is None else max(excess_max, excess)
        burst_max = burst if burst_max is None else max(burst_max, burst)
        if not (floor <= NOISE_FLOOR_MAX_DB and rms_db <= SILENCE_CAP_DB
                and excess <= NOISE_EXCESS_MAX_DB and top <= loud_db):
            silence_ok = False
    # energy onsets / offsets at pause boundaries (5 ms RMS, 1 ms hop; "loud" = above onset_db
    # re speech, or above the noise floor plus NOISE_BURST_MAX_DB where that is higher)
    lead_ms, over_ms = [], []
    win, hop = int(0.005 * sr), max(1, int(0.001 * sr))
    if len(x) > win:
        frames5 = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
        env = np.sqrt(np.mean(frames5 ** 2, axis=1)) / ref
        loud = env > 10 ** (loud_db / 20)
        centre = (np.arange(len(env)) * hop + win / 2) / sr
        quiet_run = int(round(0.03 / (hop / sr)))  # 30 ms of quiet marks a real pause
        kernel = np.ones(quiet_run)
        # q[i]: frames i .. i+quiet_run-1 are all quiet
        q = np.convolve((~loud).astype(float), kernel, mode="valid") >= quiet_run - 0.5
        for k in range(len(ph)):
            s, e, lab = ph[k]
            if lab != SILENCE or e - s < 0.1:
                continue
            if k > 0:  # speech before the pause: where does sound stop?
                idx = np.nonzero(q & (centre[:len(q)] >= s - 0.25) & (centre[:len(q)] <= e))[0]
                if len(idx):
                    over_ms.append(1000 * (centre[idx[0]] - s))
            if k + 1 < len(ph):  # speech after the pause: where does sound start?
                last = q & (centre[:len(q)] >= s) & (centre[:len(q)] + 0.03 <= e + 0.25)
                idx = np.nonzero(last)[0]
                if len(idx):
                    lead_ms.append(1000 * (e - centre[idx[-1] + quiet_run - 1]))
    return {"monotonic": bool(mono), "covers": bool(covers), "silence_ok": bool(silence_ok),
            "silence_db_max": round(worst, 2), "silence_count": len(pauses),
            "noise_floor_db": round(floor, 2),
            "silence_excess_db_max": None if excess_max is None else round(excess_max, 2),
            "silence_burst_db_max": None if burst_max is None else round(burst_max, 2),
            "onset_lead_ms": round(max(lead_ms), 1) if lead_ms else None,
            "offset_overhang_ms": round(max(over_ms), 1) if over_ms else None,
            "vowel_db_median": round(float(np.median(vowel_db)), 2) if vowel_db else None}


def _finish(job: dict, out_dir: Path, parts: list, silence_label: str,
            inventory: Callable[[str], str],
            spec_checks: tuple[float, float]) -> tuple[dict | None, str]:
    samples, raw, spans = _assemble(parts, job["pauses"], SAMPLE_RATE, silence_label)
    if len(samples) == 0:
        return None, "empty audio"
    peak = float(np.max(np.abs(samples)))
    if peak <= 1e-6:
        return None, "silent audio"
    samples = samples * (job["peak"] / peak)
    phones = normalize_phones(raw, inventory)
    dur = len(samples) / SAMPLE_RATE
    if phones:  # tile exactly: the normaliser may drop zero-length or marker phones
        phones[0].start = 0.0
        phones[-1].end = dur
        for a, b in zip(phones, phones[1:]):
            b.start = a.end
    echo = variant_echo_delay(job["variant"]) if job["engine"] == "espeak-ng" else 0.0
    tail = echo + 0.03 if echo > 0 else 0.0
    checks = check_alignment(samples, SAMPLE_RATE, phones, spec_checks[0], tail=tail,
                             silence_max_db=spec_checks[1])
    checks["echo_tail"] = round(tail, 3)
    if not (checks["monotonic"] and checks["covers"]):
        return None, "phone structure"
    if not checks["silence_ok"]:
        return None, "silence not quiet"
    if (checks["onset_lead_ms"] or 0.0) > MAX_BOUNDARY_ERROR_MS:
        return None, "sound before its phone"
    if (checks["offset_overhang_ms"] or 0.0) > MAX_BOUNDARY_ERROR_MS + 1000.0 * tail:
        return None, "sound after its phone"
    classes = Counter(phone_class(p.label, "ipa") for p in phones)
    if classes["bilabial"] == 0 or classes["open_vowel"] + classes["rounded_vowel"] == 0:
        return None, "no bilabial / open / rounded phones"
    import soundfile as sf

    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)
    sf.write(str(out_dir / f"{job['id']}.wav"), pcm, SAMPLE_RATE, subtype="PCM_16")
    entry = {
        "id": job["id"], "split": job["split"], "engine": job["engine"], "voice": job["voice"],
        "variant": job["variant"], "language": job["language"],
        "text": " ".join(job["groups"]),
        "groups": [{"text": t, "start": round(a, 6), "end": round(b, 6)}
                   for t, (a, b) in zip(job["groups"], spans)],
        "text_kinds": job["text_kinds"], "params": job["params"],
        "sample_rate": SAMPLE_RATE, "duration": round(dur, 6),
        "phones": [[round(p.start, 6), round(p.end, 6), p.label] for p in phones],
        "phones_raw": [[round(s, 6), round(e, 6), lab] for s, e, lab in raw],
        "checks": checks,
    }
    return entry, ""


def _in_forked_child(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked copy of this process and return its (pickled) result.

    libespeak-ng carries state from one synthesis to the next (pitch flutter / wave phase), so
    the same text spoken twice in one process comes out a few samples to several ms apart.
    Speaking every utterance from a fork of a process that has initialised the library but
    never spoken makes each utterance depend only on its own job: the corpus is reproducible,
    and two passes (IPA and mnemonic event names) give identical audio. A crash in the child
    costs that one utterance only.
    """
    if not hasattr(os, "fork"):
        return fn()
    import pickle

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 0
        try:
            data = pickle.dumps(fn())
        except BaseException as exc:  # report, never raise out of the child
            data = pickle.dumps((None, f"espeak error: {exc}"))
            code = 1
        with os.fdopen(w, "wb") as fh:
            fh.write(data)
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    if not data:
        return None, "espeak crashed"
    return pickle.loads(data)


def _render_espeak(jobs: Sequence[dict], out_dir: Path, checks: tuple[float, float]) -> list:
    _espeak()  # initialise (without speaking) before forking
    import scipy.signal  # noqa: F401  (import once here, not in every child)
    import soundfile  # noqa: F401

    results = []
    for job in jobs:
        try:
            p = job["params"]
            sr, spoken = speak_groups(job["voice"], job["groups"], p["rate"], p["pitch"],
                                      p["range"], p["wordgap"])
            parts = [(_resample(audio, sr), phones) for audio, phones in spoken]
            results.append(_finish(job, out_dir, parts, "", espeak_phone_label, checks))
        except Exception as exc:  # one bad utterance must not stop the corpus
            results.append((None, f"espeak error: {exc}"))
    return results


_FESTIVAL_PRELUDE = r"""
(define (fc_dump utt fname)
  (let ((fd (fopen fname "w")))
    (mapcar (lambda (s) (format fd "%s %f\n" (item.name s) (item.feat s "end")))
            (utt.relation.items utt 'Segment))
    (fclose fd)))
(define (fc_say txt wav seg)
  (unwind-protect
    (let ((u (eval (list 'Utterance 'Text txt))))
      (utt.synth u)
      (utt.save.wave u wav 'riff)
      (fc_dump u seg))
    (format t "FCFAIL %s\n" wav)))
"""


def _scheme_string(s: str) -> str:
    s = re.sub(r"[^\w\s.,?!'-]", " ", s, flags=re.ASCII)
    return '"' + s.replace("\\", " ").replace('"', " ") + '"'


def _foreign_scheme_string(s: str) -> str:
    """A Scheme string of a pseudo-word text in any script (letters with their combining
    marks - Indic vowel signs, virama, anusvara -, spaces, punctuation)."""
    s = "".join(c if re.match(r"[\w\s.,?!'-]", c) or unicodedata.category(c).startswith("M")
                else " " for c in s)
    return '"' + s.replace("\\", " ").replace('"', " ") + '"'


def _render_festival(jobs: Sequence[dict], out_dir: Path, checks: tuple[float, float]) -> list:
    import soundfile as sf

    results: list = []
    with tempfile.TemporaryDirectory(prefix="fc_fest_") as tmp:
        lines = [_FESTIVAL_PRELUDE]
        encodings: dict[int, str] = {}  # line index -> encoding (default UTF-8)
        current = None
        for j, job in enumerate(jobs):
            if job["voice"] != current:
                lines.append(f"(voice_{job['voice']})")
                current = job["voice"]
            p = job["params"]
            if job["language"] != "en-us":
                enc = FESTIVAL_TEXT_ENCODING.get(job["language"], "utf-8")
                lines.append(f"(Parameter.set 'Duration_Stretch {p['stretch']})")
                for g, text in enumerate(job["groups"]):
                    base = os.path.join(tmp, f"{j}_{g}")
                    encodings[len(lines)] = enc
                    lines.append(f'(fc_say {_foreign_scheme_string(text)} "{base}.wav" '
                                 f'"{base}.seg")')
                continue
            if "diphone" in job["voice"]:
                lines.append(f"(Parameter.set 'Duration_Stretch {p['stretch']})")
                lines.append(f"(set! int_lr_params '((target_f0_mean {p['f0_mean']}) "
                             f"(target_f0_std {p['f0_std']}) (model_f0_mean 170) "
                             f"(model_f0_std 34)))")
            for g, text in enumerate(job["groups"]):
                base = os.path.join(tmp, f"{j}_{g}")
                lines.append(f'(fc_say {_scheme_string(text)} "{base}.wav" "{base}.seg")')
        script = os.path.join(tmp, "batch.scm")
        with open(script, "wb") as fh:
            fh.write(b"".join((line + "\n").encode(encodings.get(i, "utf-8"), "replace")
                              for i, line in enumerate(lines)))
        proc = subprocess.run(["festival", "-b", script], capture_output=True, text=True,
                              errors="replace", timeout=600)
        for j, job in enumerate(jobs):
            try:
                parts = []
                for g in range(len(job["groups"])):
                    base = os.path.join(tmp, f"{j}_{g}")
                    audio, sr = sf.read(base + ".wav", dtype="float32")
                    if audio.ndim > 1:
                        audio = audio.mean(axis=1)
                    phones, prev = [], 0.0
                    with open(base + ".seg") as fh:
                        for line in fh:
                            name, end = line.split()
                            end = float(end)
                            if end > prev:
                                phones.append((prev, end, name))
                                prev = end
                    audio16 = _resample(audio, sr)
                    parts.append((audio16, phones))
                labeller = (festival_phone_label if job["language"] == "en-us"
                            else festival_voice_label(job["voice"]))
                results.append(_finish(job, out_dir, parts, "pau", labeller, checks))
            except Exception as exc:
                msg = proc.stderr.strip().splitlines()[-1:] if proc.stderr else []
                results.append((None, f"festival error: {exc} {msg}"))
    return results


def _render_task(task: tuple[str, list, str, tuple[float, float]]) -> list:
    engine, jobs, out_dir, checks = task
    out = Path(out_dir)
    if engine == "festival":
        return _render_festival(jobs, out, checks)
    return _render_espeak(jobs, out, checks)


# ----------------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------------


def _tasks_for(jobs: Sequence[dict], out_dir: Path, checks) -> list:
    tasks = []
    esp = [j for j in jobs if j["engine"] == "espeak-ng"]
    fest = sorted((j for j in jobs if j["engine"] == "festival"), key=lambda j: j["voice"])
    for i in range(0, len(esp), 24):
        tasks.append(("espeak-ng", esp[i:i + 24], str(out_dir), checks))
    by_voice: dict[str, list] = defaultdict(list)
    for j in fest:
        by_voice[j["voice"]].append(j)
    for v in sorted(by_voice):
        js = by_voice[v]
        for i in range(0, len(js), 12):
            tasks.append(("festival", js[i:i + 12], str(out_dir), checks))
    # festival batches are slower: start them first so the pool stays balanced
    tasks.sort(key=lambda t: 0 if t[0] == "festival" else 1)
    return tasks


def corpus_stats(entries: Sequence[Mapping]) -> dict:
    """Minutes per split / language / voice / engine, and phones per class (count, seconds)."""
    st: dict[str, Any] = {"utterances": len(entries)}
    minutes: dict[str, Counter] = defaultdict(Counter)
    phones: dict[str, Counter] = defaultdict(Counter)
    phone_sec: dict[str, Counter] = defaultdict(Counter)
    for e in entries:
        sp = e["split"]
        d = e["duration"] / 60.0
        minutes["split"][sp] += d
        minutes[f"{sp}/language"][e["language"]] += d
        minutes[f"{sp}/voice"][f"{e['engine']}:{e['voice']}"] += d
        minutes[f"{sp}/engine"][e["engine"]] += d
        for s, en, lab in e["phones"]:
            c = phone_class(lab, "ipa")
            phones[sp][c] += 1
            phone_sec[sp][c] += en - s
    st["minutes"] = {k: {kk: round(vv, 3) for kk, vv in sorted(v.items(), key=lambda x: -x[1])}
                     for k, v in sorted(minutes.items())}
    st["phones"] = {k: dict(sorted(v.items())) for k, v in phones.items()}
    st["phone_seconds"] = {k: {kk: round(vv, 2) for kk, vv in sorted(v.items())}
                           for k, v in phone_sec.items()}
    sil = [e["checks"]["silence_db_max"] for e in entries if e["checks"]["silence_count"]]
    if sil:
        st["silence_db_max"] = {"median": round(float(np.median(sil)), 2),
                                "p99": round(float(np.percentile(sil, 99)), 2),
                                "max": round(float(np.max(sil)), 2)}
    train_texts = {g["text"] for e in entries if e["split"] == "train" for g in e["groups"]}
    held_texts = {g["text"] for e in entries if e["split"] == "heldout" for g in e["groups"]}
    st["heldout_texts_seen_in_train"] = len(train_texts & held_texts)
    tv = {e["voice"] for e in entries if e["split"] == "train"}
    st["heldout_voices_unseen_in_train"] = sorted(
        {e["voice"] for e in entries if e["split"] == "heldout"} - tv)
    tl = {e["language"] for e in entries if e["split"] == "train"}
    st["heldout_languages"] = sorted({e["language"] for e in entries if e["split"] == "heldout"})
    st["heldout_languages_unseen_in_train"] = sorted(set(st["heldout_languages"]) - tl)
    return st


def generate_corpus(out_dir: str | os.PathLike, spec: "CorpusSpec | Mapping | None" = None,
                    seed: int = 0, progress: ProgressFn | None = None) -> dict:
    """Generate the corpus into ``out_dir``: ``<id>.wav`` (16 kHz mono int16),
    ``manifest.jsonl`` (one JSON object per utterance, sorted by id) and ``stats.json``.

    Deterministic for a given ``seed`` and ``spec``. Utterances are planned in rounds until each
    split has its minutes of accepted audio. Returns the statistics (also in ``stats.json``).
    ``progress`` receives dicts ``{"stage", "split", "seconds", "target_seconds",
    "utterances", "rejected"}``.
    """
    t_start = time.time()
    spec = CorpusSpec.from_any(spec)
    if spec.festival:  # festival voices of other languages: only those installed
        spec = dataclasses.replace(
            spec,
            festival_foreign_train_voices={v: l for v, l in
                                           spec.festival_foreign_train_voices.items()
                                           if festival_voice_available(v)},
            festival_foreign_heldout_voices={v: l for v, l in
                                             spec.festival_foreign_heldout_voices.items()
                                             if festival_voice_available(v)})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    old = out / "manifest.jsonl"
    if old.exists():  # remove the previous run's files (only those it listed)
        for line in old.read_text().splitlines():
            try:
                (out / f"{json.loads(line)['id']}.wav").unlink(missing_ok=True)
            except (ValueError, KeyError):
                pass
        old.unlink()
    report = progress or (lambda _d: None)

    engine = _espeak()
    langs = sorted(set(spec.train_languages) | set(spec.heldout_languages))
    inventories = {}
    for lang in langs:
        inventories[lang] = probe_inventory(lang, engine)
        report({"stage": "inventory", "language": lang,
                "consonants": len(inventories[lang].consonants),
                "vowels": len(inventories[lang].vowels)})

    targets = {"train": spec.minutes * 60.0, "heldout": spec.heldout_minutes * 60.0}
    done = {k: 0.0 for k in targets}
    index = {k: 0 for k in targets}
    entries: list[dict] = []
    rejected: Counter = Counter()
    by_voice: dict[str, Counter] = defaultdict(Counter)  # engine:voice -> reason -> count
    checks = (spec.silence_check_min, spec.silence_max_db)
    ctx = __import__("multiprocessing").get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, spec.workers), mp_context=ctx) as pool:
        while True:
            jobs = []
            for split in ("train", "heldout"):
                remaining = targets[split] - done[split]
                if remaining <= 0:
                    continue
                n = int(math.ceil(min(remaining, spec.batch_seconds) / 8.0)) + 1
                for _ in range(n):
                    i = index[split]
                    index[split] += 1
                    rng = np.random.default_rng([seed, 0 if split == "train" else 1, i])
                    jobs.append(_plan_job(rng, split, i, spec, inventories))
            if not jobs:
                break
            tasks = _tasks_for(jobs, out, checks)
            for task, res in zip(tasks, pool.map(_render_task, tasks)):
                for (entry, reason), job in zip(res, task[1]):
                    if entry is None:
                        rejected[reason.split(":")[0]] += 1
                        by_voice[f"{job['engine']}:{job['voice']}"][reason.split(":")[0]] += 1
                        continue
                    entries.append(entry)
                    done[entry["split"]] += entry["duration"]
            for split in targets:
                report({"stage": "render", "split": split, "seconds": round(done[split], 1),
                        "target_seconds": targets[split],
                        "utterances": sum(e["split"] == split for e in entries),
                        "rejected": sum(rejected.values())})

    entries.sort(key=lambda e: e["id"])
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as fh:
        for e in entries:
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")
    stats = corpus_stats(entries)
    stats["rejected"] = dict(rejected)
    stats["rejected_by_voice"] = {v: dict(c) for v, c in sorted(by_voice.items())}
    stats["seed"] = seed
    stats["spec"] = {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in dataclasses.asdict(spec).items()}
    stats["inventories"] = {k: {"consonants": {c: v.ipa[c] for c in v.consonants},
                                "vowels": {c: v.ipa[c] for c in v.vowels}}
                            for k, v in inventories.items()}
    stats["generation_seconds"] = round(time.time() - t_start, 1)
    with open(out / "stats.json", "w", encoding="utf-8") as fh:
        json.dump(stats, fh, ensure_ascii=False, indent=1)
    return stats


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Entries of a ``manifest.jsonl`` (or of the one inside a corpus folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.jsonl"
    with open(p, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facecast_runtime.training.tts",
                                 description="Generate the multilingual TTS viseme corpus.")
    ap.add_argument("--out", default="work_data/tts", help="output folder")
    ap.add_argument("--minutes", type=float, default=60.0, help="train audio minutes")
    ap.add_argument("--heldout-minutes", type=float, default=10.0, help="held-out minutes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-festival", action="store_true", help="espeak-ng only")
    ap.add_argument("--foreign-share", type=float, default=CorpusSpec.foreign_share,
                    help="share of train utterances from festival voices of other languages")
    ap.add_argument("--foreign-heldout-share", type=float,
                    default=CorpusSpec.foreign_heldout_share,
                    help="share of held-out utterances from those voices")
    args = ap.parse_args(argv)
    if not espeak_available():
        print("espeak-ng library not found", file=sys.stderr)
        return 2
    festival = not args.no_festival and shutil.which("festival") is not None
    spec = CorpusSpec(minutes=args.minutes, heldout_minutes=args.heldout_minutes,
                      workers=args.workers, festival=festival,
                      foreign_share=args.foreign_share,
                      foreign_heldout_share=args.foreign_heldout_share)

    def show(d: dict) -> None:
        if d.get("stage") == "render":
            print(f"[{d['split']}] {d['seconds'] / 60:.1f}/{d['target_seconds'] / 60:.1f} min, "
                  f"{d['utterances']} utterances, {d['rejected']} rejected", file=sys.stderr)

    stats = generate_corpus(args.out, spec, args.seed, show)
    m = stats["minutes"]["split"]
    print(json.dumps({"out": str(args.out), "minutes": m, "utterances": stats["utterances"],
                      "rejected": stats["rejected"],
                      "seconds": stats["generation_seconds"]}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
