"""Phones -> visemes -> ARKit mouth targets (the rule set documented in docs/visemes.md).

Pipeline
--------
1. Phone labels from any of the inventories we meet (espeak-ng IPA output or its ASCII phoneme
   mnemonics, festival's ``radio`` (US) and ``mrpa`` (UK) phone sets, CMU ARPAbet as used by
   pocketsphinx / cmudict) are normalised to one IPA-like representation by
   :func:`normalize_label`: plain IPA base letters, stress / length / tone marks and diacritics
   removed, silence as ``"sil"``. A label is split into segments (diphthongs, affricates, r-coloured
   vowels) by :func:`label_segments`.
2. Every segment gets a viseme (:func:`viseme_of`) and a key pose over ``MOUTH_CHANNELS``.
   Vowel poses are computed from the vowel's place in the IPA vowel chart (openness, backness,
   rounding); consonant poses come from the table ``CONSONANT_POSES``.
3. Coarticulation (:func:`phones_to_targets`): a Cohen-Massaro style dominance blend, run per
   channel group (jaw, lips, rounding, spreading, tongue), followed by hard constraints: lips meet
   inside every bilabial (p, b, m), the lower lip is tucked inside every labiodental (f, v), and
   the face reaches the rest pose within 100 ms of the start of any pause.

Everything here is numpy only and deterministic. Columns are looked up by name in
``facecast.schema.MOUTH_CHANNELS``.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from facecast.schema import MOUTH_CHANNELS

__all__ = [
    "Phone", "SILENCE", "PHONE_CLASSES", "INVENTORIES", "VISEMES", "UNKNOWN_LABELS",
    "normalize_label", "label_segments", "normalize_phones", "phone_class", "viseme_of",
    "key_pose", "phones_to_targets", "opening", "MOUTH_INDEX", "festival_features_ipa",
    "festival_phoneset_ipa", "FESTIVAL_PHONESET_FIXES",
]

#: Normalised label of every silence / pause phone.
SILENCE = "sil"

#: Coarse phone classes returned by :func:`phone_class` (used by the evaluation suite).
#: ``neutral`` is the class of a label no rule knows (it is also counted in UNKNOWN_LABELS).
PHONE_CLASSES: tuple[str, ...] = (
    "silence", "bilabial", "labiodental", "open_vowel", "rounded_vowel", "other_vowel",
    "other_consonant", "neutral",
)

#: Label inventories understood by :func:`normalize_label`.
INVENTORIES: tuple[str, ...] = ("auto", "ipa", "espeak", "radio", "mrpa", "arpabet")
_INVENTORY_ALIASES = {
    "festival": "radio", "cmu": "arpabet", "cmudict": "arpabet", "pocketsphinx": "arpabet",
    "espeak-ng": "espeak", "espeak_ipa": "ipa", "x-sampa": "espeak",
}

#: Labels no rule could interpret, with how often they were seen (reset it freely).
UNKNOWN_LABELS: Counter = Counter()

MOUTH_INDEX: dict[str, int] = {name: i for i, name in enumerate(MOUTH_CHANNELS)}
_NCH = len(MOUTH_CHANNELS)


@dataclass
class Phone:
    """One phone: ``start`` and ``end`` in seconds from the first audio sample, and its label."""

    start: float
    end: float
    label: str

    @property
    def duration(self) -> float:
        return self.end - self.start

    def as_list(self) -> list:
        return [self.start, self.end, self.label]


# ----------------------------------------------------------------------------------------------
# Inventories -> IPA
# ----------------------------------------------------------------------------------------------

_SILENCE_LABELS = {
    "", "sil", "sp", "spn", "pau", "h#", "#", "_", "_:", "_!", "_^", "_|", "||", "|", "<s>",
    "</s>", "brth", "sil0", "silence", "nsn", "+nsn+", "+spn+", "+sil+", "pause", "epi", "bsil",
}

# festival "radio" phone set (US voices kal_diphone, ked_diphone, cmu_us_*); cmudict uses the
# same names in upper case with stress digits (ARPAbet).
_RADIO = {
    "aa": "ɑ", "ae": "æ", "ah": "ʌ", "ao": "ɔ", "aw": "aʊ", "ax": "ə", "axr": "ɚ", "ay": "aɪ",
    "b": "b", "ch": "tʃ", "d": "d", "dh": "ð", "dx": "ɾ", "eh": "ɛ", "el": "əl", "em": "əm",
    "en": "ən", "er": "ɝ", "ey": "eɪ", "f": "f", "g": "g", "hh": "h", "hv": "h", "ih": "ɪ",
    "ix": "ɨ", "iy": "i", "jh": "dʒ", "k": "k", "l": "l", "m": "m", "n": "n", "ng": "ŋ",
    "nx": "ŋ", "ow": "oʊ", "oy": "ɔɪ", "p": "p", "q": "ʔ", "r": "ɹ", "s": "s", "sh": "ʃ",
    "t": "t", "th": "θ", "uh": "ʊ", "uw": "u", "ux": "ʉ", "v": "v", "w": "w", "wh": "ʍ",
    "y": "j", "z": "z", "zh": "ʒ", "ax-h": "ə",
}
# festival "mrpa" phone set (British English voices such as rab_diphone).
_MRPA = {
    "p": "p", "t": "t", "k": "k", "b": "b", "d": "d", "g": "g", "m": "m", "n": "n", "ng": "ŋ",
    "f": "f", "v": "v", "th": "θ", "dh": "ð", "s": "s", "z": "z", "sh": "ʃ", "zh": "ʒ",
    "h": "h", "ch": "tʃ", "jh": "dʒ", "l": "l", "r": "ɹ", "w": "w", "y": "j",
    "i": "ɪ", "ii": "i", "e": "ɛ", "a": "æ", "aa": "ɑ", "o": "ɒ", "oo": "ɔ", "u": "ʊ",
    "uu": "u", "uh": "ʌ", "@": "ə", "@@": "ɜ", "ei": "eɪ", "ai": "aɪ", "oi": "ɔɪ", "ou": "əʊ",
    "au": "aʊ", "i@": "ɪə", "e@": "ɛə", "u@": "ʊə",
}
# espeak-ng ASCII phoneme mnemonics (the notation of ``[[...]]`` input and of ``-x`` output).
# Mnemonics are defined per language in espeak-ng's phoneme tables; this table holds the
# language-independent reading (checked against espeak-ng 1.51's own IPA output for
# en, en-us, de, fr, es, pt, ru). Corpus labels use espeak-ng's IPA output instead.
_ESPEAK = {
    "p": "p", "b": "b", "m": "m", "f": "f", "v": "v", "t": "t", "d": "d", "n": "n", "s": "s",
    "z": "z", "S": "ʃ", "Z": "ʒ", "tS": "tʃ", "dZ": "dʒ", "ts": "ts", "dz": "dz", "k": "k",
    "g": "g", "N": "ŋ", "l": "l", "L": "ɫ", "l#": "ɬ", "r": "r", "R": "ʁ", "r-": "ɹ", "j": "j",
    "w": "w", "h": "h", "x": "x", "X": "χ", "T": "θ", "D": "ð", "n^": "ɲ", "l^": "ʎ", "C": "ç",
    "Q": "ɣ", "B": "β", "J": "ɟ", "c": "c", "z;": "ʑ", "s;": "ɕ", "?": "ʔ", "pf": "pf",
    "n-": "n", "m-": "m", "j;": "j", "t;": "t", "d;": "d", "r*": "ɾ", "*": "ɾ", "z.": "ʐ",
    "s.": "ʂ", "n.": "ɳ", "t.": "ʈ", "d.": "ɖ", "l.": "ɭ", "F": "ɱ", "W": "œ", "v#": "ʋ",
    "a": "a", "a#": "ɐ", "A": "ɑ", "A:": "ɑ", "A@": "ɑ", "&": "æ", "@": "ə", "@-": "ə",
    "@2": "ə", "@5": "ə", "@L": "əl", "3": "ɜ", "3:": "ɜ", "0": "ɒ", "0:": "ɒ", "V": "ʌ",
    "E": "ɛ", "E:": "ɛ", "E2": "ɛ", "E#": "ɛ", "e": "e", "e:": "e", "e@": "eə", "i": "i",
    "i:": "i", "I": "ɪ", "I#": "ɨ", "I2": "ɪ", "i@": "iə", "i@3": "ɪɹ", "o": "o", "o:": "o",
    "O": "ɔ", "O:": "ɔ", "O@": "ɔ", "O2": "ɔ", "oU": "oʊ", "OI": "ɔɪ", "o@": "ɔ", "u": "u",
    "u:": "u", "U": "ʊ", "U@": "ʊə", "u@": "ʊə", "y": "y", "y:": "y", "Y": "ø", "Y:": "ø",
    "W:": "œ", "aI": "aɪ", "aU": "aʊ", "eI": "eɪ", "@U": "əʊ", "aI@": "aɪə", "aU@": "aʊə",
    "aI3": "aɪɚ", "i#": "ɨ", "u#": "ʉ", "o#": "ɵ", "a:": "a",
}
_ESPEAK_KEYS = sorted(_ESPEAK, key=len, reverse=True)

# ----------------------------------------------------------------------------------------------
# IPA segments -> articulation
# ----------------------------------------------------------------------------------------------

# Vowels: (openness 0 close .. 1 open, backness 0 front .. 1 back, rounded) = their place in
# the IPA vowel chart (rows close, near-close, close-mid, mid, open-mid, near-open, open).
_VOWELS: dict[str, tuple[float, float, bool]] = {
    "i": (0.0, 0.0, False), "y": (0.0, 0.0, True), "ɨ": (0.0, 0.5, False),
    "ʉ": (0.0, 0.5, True), "ɯ": (0.0, 1.0, False), "u": (0.0, 1.0, True),
    "ɪ": (0.17, 0.1, False), "ʏ": (0.17, 0.1, True), "ʊ": (0.17, 0.9, True),
    "e": (0.33, 0.0, False), "ø": (0.33, 0.0, True), "ɘ": (0.33, 0.5, False),
    "ɵ": (0.33, 0.5, True), "ɤ": (0.33, 1.0, False), "o": (0.33, 1.0, True),
    "ə": (0.5, 0.5, False), "ɚ": (0.5, 0.5, False),
    "ɛ": (0.67, 0.0, False), "œ": (0.67, 0.0, True), "ɜ": (0.67, 0.5, False),
    "ɝ": (0.67, 0.5, False), "ɞ": (0.67, 0.5, True), "ʌ": (0.67, 1.0, False),
    "ɔ": (0.67, 1.0, True),
    "æ": (0.83, 0.0, False), "ɐ": (0.83, 0.5, False),
    "a": (1.0, 0.0, False), "ɶ": (1.0, 0.0, True), "ɑ": (1.0, 1.0, False),
    "ɒ": (1.0, 1.0, True),
}
_RHOTIC_VOWELS = {"ɚ", "ɝ"}
#: Openness from which a vowel counts as an open vowel (near-open and open rows).
OPEN_VOWEL_MIN_OPENNESS = 0.8

# Consonant visemes: every IPA consonant letter -> viseme name.
_CONSONANT_VISEME: dict[str, str] = {}
for _v, _chars in {
    "PP": "pbɓʙ",          # bilabial stops (and trill): full lip closure with pressure
    "MM": "m",             # bilabial nasal: full lip closure, light pressure
    "BB": "βɸ",            # bilabial fricatives / approximants: lips nearly, not fully, closed
    "FF": "fvɱʋ",          # labiodental: lower lip tucked under the upper teeth
    "TH": "θð",            # dental fricatives: tongue tip between the teeth
    "DD": "tdnlɾrɫɬɮɭɺʈɖɳɽɗ",  # alveolar / retroflex stops, nasals, laterals, taps, trills
    "SS": "szʦʣ",          # alveolar sibilants: teeth nearly together, lips slightly spread
    "SH": "ʃʒɕʑʂʐ",        # post-alveolar / alveolo-palatal sibilants: lips protruded, flared
    "JJ": "jçʝɲʎcɟ",       # palatal: spread lips, high tongue
    "KK": "kgŋxɣqɢɴχʁʀɰ",  # velar / uvular: jaw follows the neighbours
    "HH": "hɦʔħʕʜʢ",       # glottal / pharyngeal: no own lip gesture
    "WW": "wɥʍ",           # labial-velar / labial-palatal approximants: strong rounding
    "RR": "ɹɻ",            # (English) approximant r: slight rounding and protrusion
}.items():
    for _c in _chars:
        _CONSONANT_VISEME[_c] = _v

_VOWEL_VISEMES = ("AA", "OO", "UU", "YY", "II", "EE", "@@")

#: All viseme names (vowels get one of the vowel visemes for reporting; their pose is computed
#: from the vowel chart, see :func:`key_pose`).
VISEMES: tuple[str, ...] = (
    "sil", "PP", "MM", "BB", "FF", "TH", "DD", "SS", "SH", "JJ", "KK", "HH", "WW", "RR",
) + _VOWEL_VISEMES + ("neutral",)

# Affricates whose stop part shares the place of the fricative: one segment (the fricative).
_AFFRICATES = {
    "ts": "s", "dz": "z", "tʃ": "ʃ", "dʒ": "ʒ", "tɕ": "ɕ", "dʑ": "ʑ", "ʈʂ": "ʂ", "ɖʐ": "ʐ",
    "kx": "x", "tθ": "θ", "dð": "ð",
}

# Character clean-up for IPA strings.
_CHAR_MAP = {
    "ɡ": "g", "ᵻ": "ɨ", "ʦ": "ts", "ʣ": "dz", "ʧ": "tʃ", "ʤ": "dʒ", "ɚ": "ɚ", "ɑ": "ɑ",
    "ʋ": "ʋ", "ɩ": "ɪ", "ɷ": "ʊ", "ı": "i", "ʄ": "ɟ", "ɠ": "g", "ǃ": "", "ǀ": "", "ǁ": "",
    "ǂ": "", "ʘ": "p", "ε": "ɛ", "α": "ɑ", "ι": "ɪ", "ο": "o", "υ": "ʊ",
    "ⱱ": "v", "ꞎ": "ɬ", "ɧ": "ʃ", "ɿ": "ɨ", "ʅ": "ɨ", "ʮ": "ʉ", "ʯ": "ʉ",
}

# ----------------------------------------------------------------------------------------------
# Key poses
# ----------------------------------------------------------------------------------------------


def _pose(**values: float) -> np.ndarray:
    """A pose vector over MOUTH_CHANNELS; ``X`` without side stands for XLeft and XRight."""
    v = np.zeros(_NCH, np.float32)
    for name, value in values.items():
        names = [name] if name in MOUTH_INDEX else [name + "Left", name + "Right"]
        for n in names:
            if n not in MOUTH_INDEX:
                raise KeyError(f"unknown mouth channel {n!r}")
            v[MOUTH_INDEX[n]] = value
    return v


#: Consonant key poses (ARKit weights, 0..1). Rest = all zeros (jaw closed, lips together,
#: relaxed). For the lips to meet while the jaw is slightly open, mouthClose ~= jawOpen.
CONSONANT_POSES: dict[str, np.ndarray] = {
    "sil": _pose(),
    "PP": _pose(jawOpen=0.10, mouthClose=0.10, mouthPress=0.45, mouthRollLower=0.10,
                mouthRollUpper=0.06, mouthShrugLower=0.15, mouthShrugUpper=0.05,
                cheekPuff=0.04),
    "MM": _pose(jawOpen=0.08, mouthClose=0.08, mouthPress=0.25, mouthRollLower=0.06,
                mouthRollUpper=0.04, mouthShrugLower=0.08),
    "BB": _pose(jawOpen=0.08, mouthClose=0.05, mouthPress=0.10, mouthRollLower=0.15),
    "FF": _pose(jawOpen=0.08, mouthClose=0.02, mouthRollLower=0.50, mouthUpperUp=0.18,
                mouthShrugUpper=0.08),
    "TH": _pose(jawOpen=0.14, mouthLowerDown=0.10, mouthUpperUp=0.05, tongueOut=0.30),
    "DD": _pose(jawOpen=0.13, mouthLowerDown=0.08, mouthUpperUp=0.05, mouthStretch=0.05),
    "SS": _pose(jawOpen=0.05, mouthLowerDown=0.10, mouthUpperUp=0.10, mouthStretch=0.15,
                mouthSmile=0.10),
    "SH": _pose(jawOpen=0.08, mouthFunnel=0.45, mouthPucker=0.30, mouthLowerDown=0.15,
                mouthUpperUp=0.20),
    "JJ": _pose(jawOpen=0.10, mouthLowerDown=0.05, mouthStretch=0.25, mouthSmile=0.20),
    "KK": _pose(jawOpen=0.20, mouthLowerDown=0.10),
    "HH": _pose(jawOpen=0.25, mouthLowerDown=0.10),
    "WW": _pose(jawOpen=0.06, mouthPucker=0.80, mouthFunnel=0.35),
    "RR": _pose(jawOpen=0.12, mouthPucker=0.25, mouthFunnel=0.30, mouthUpperUp=0.10),
    "neutral": _pose(jawOpen=0.15, mouthLowerDown=0.05),
}


def _vowel_pose(openness: float, backness: float, rounded: bool, rhotic: bool) -> np.ndarray:
    h, b = openness, backness
    jaw = 0.06 + 0.52 * h
    if rounded:
        low = 0.5 * (0.05 + 0.30 * h)
        up = 0.05
        pucker = (0.10 + 0.75 * (1.0 - h)) * (0.85 + 0.15 * b)
        funnel = 0.25 + 0.45 * (1.0 - abs(h - 0.5) * 2.0)
        if b < 0.5:  # front rounded vowels: less protrusion than back ones
            pucker *= 0.9
            funnel *= 0.6
        return _pose(jawOpen=jaw, mouthLowerDown=low, mouthUpperUp=up, mouthPucker=pucker,
                     mouthFunnel=funnel)
    low = 0.05 + 0.30 * h
    up = 0.05 + 0.10 * h * (1.0 - b)
    stretch = 0.35 * (1.0 - b) * (1.0 - 0.5 * h)
    smile = 0.20 * (1.0 - b) * (1.0 - h)
    funnel = pucker = 0.0
    if rhotic:
        funnel, pucker = 0.20, 0.10
        stretch *= 0.5
        smile *= 0.5
    return _pose(jawOpen=jaw, mouthLowerDown=low, mouthUpperUp=up, mouthStretch=stretch,
                 mouthSmile=smile, mouthFunnel=funnel, mouthPucker=pucker)


_VOWEL_POSES = {v: _vowel_pose(h, b, r, v in _RHOTIC_VOWELS) for v, (h, b, r) in _VOWELS.items()}

# ----------------------------------------------------------------------------------------------
# Dominance (Cohen & Massaro 1993): D(t) = alpha inside the segment, alpha * 2**(-d / half)
# outside, d = distance to the segment (anticipatory half-life before it, carry-over after).
# One set per channel group.
# ----------------------------------------------------------------------------------------------

_GROUPS = ("jaw", "lips", "round", "spread", "tongue")
_GROUP_OF_CHANNEL: dict[str, str] = {}
for _name in MOUTH_CHANNELS:
    if _name.startswith(("jaw", "mouthLowerDown", "mouthUpperUp")):
        g = "jaw"
    elif _name.startswith(("mouthClose", "mouthPress", "mouthRoll", "mouthShrug", "cheekPuff")):
        g = "lips"
    elif _name.startswith(("mouthFunnel", "mouthPucker")):
        g = "round"
    elif _name.startswith("tongue"):
        g = "tongue"
    else:
        g = "spread"
    _GROUP_OF_CHANNEL[_name] = g
_CH_GROUP = np.array([_GROUPS.index(_GROUP_OF_CHANNEL[n]) for n in MOUTH_CHANNELS])

# alpha per group (jaw, lips, round, spread, tongue)
_DOMINANCE_ALPHA: dict[str, tuple[float, float, float, float, float]] = {
    "PP": (0.5, 1.0, 0.15, 0.15, 0.3),
    "MM": (0.5, 1.0, 0.15, 0.15, 0.3),
    "BB": (0.5, 0.9, 0.2, 0.2, 0.3),
    "FF": (0.6, 1.0, 0.15, 0.2, 0.3),
    "TH": (0.5, 0.3, 0.2, 0.3, 1.0),
    "DD": (0.5, 0.3, 0.1, 0.3, 0.5),
    "SS": (0.8, 0.3, 0.2, 0.6, 0.5),
    "SH": (0.6, 0.3, 0.9, 0.5, 0.5),
    "JJ": (0.5, 0.3, 0.2, 0.7, 0.5),
    "KK": (0.3, 0.2, 0.1, 0.2, 0.5),
    "HH": (0.1, 0.1, 0.1, 0.1, 0.3),
    "WW": (0.5, 0.4, 1.0, 0.6, 0.5),
    "RR": (0.4, 0.3, 0.6, 0.4, 0.5),
    "neutral": (0.3, 0.3, 0.3, 0.3, 0.3),
    "vowel": (1.0, 0.3, 0.5, 0.5, 0.5),
    "rounded_vowel": (1.0, 0.3, 0.9, 0.6, 0.5),
    "spread_vowel": (1.0, 0.3, 0.5, 0.7, 0.5),
}
#: default anticipatory / carry-over half-lives (s); rounding anticipates further.
HALF_LIFE_ANTICIPATORY = 0.030
HALF_LIFE_CARRYOVER = 0.035
HALF_LIFE_ROUNDING_ANTICIPATORY = 0.070
HALF_LIFE_SILENCE = 0.025
#: A pause of at least this length is a full rest (dominance 1); shorter ones fade to 0.15.
LONG_PAUSE = 0.12
#: Rest is reached this long after a long pause starts; it is left this long before speech.
REST_WITHIN = 0.100
REST_LEAVE = 0.060
#: Bilabial / labiodental constraint ramps: closing gesture before, release after (s).
CLOSURE_LEAD = 0.020
CLOSURE_RELEASE = 0.015
#: How strongly a labiodental / bilabial pulls the blend towards its key pose inside its
#: interval (before the exact lip closure of bilabials is imposed).
LABIODENTAL_PULL = 0.7
BILABIAL_PULL = 0.6

_WINDOW = 0.45  # seconds around a segment where its dominance is evaluated (2**-11 beyond)


# ----------------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------------

_ARPA_RE = re.compile(r"^([A-Z]{1,3})([012])?$")
_PAREN_RE = re.compile(r"\([^)]*\)")


def _clean_ipa(label: str) -> str:
    """Strip stress, length, tone marks and diacritics; map variant letters; NFC."""
    s = _PAREN_RE.sub("", label)  # espeak language-switch markers "(en)"
    s = unicodedata.normalize("NFD", s)
    out = []
    for ch in s:
        cat = unicodedata.category(ch)
        if cat == "Mn":
            if ch == "\u0327" and out and out[-1] == "c":  # keep ç
                out.append(ch)
            continue
        if cat in ("Lm", "Sk", "Nd", "No", "Po", "Pd", "Zs", "Cc", "Cf", "Ps", "Pe", "Pc",
                   "Pi", "Pf"):
            continue
        out.append(_CHAR_MAP.get(ch, ch))
    # inside one label, "h" after a stop or affricate is aspiration (espeak writes "ph", "tɕh")
    res: list[str] = []
    for ch in out:
        if ch == "h" and res and res[-1] in _ASPIRABLE:
            continue
        res.append(ch)
    return unicodedata.normalize("NFC", "".join(res))


_ASPIRABLE = set("pbtdkgcɟqʈɖʃʒɕʑʂʐsz")


def _espeak_to_ipa(label: str) -> str:
    s = label.replace("'", "").replace(",", "").replace("%", "").replace("=", "")
    out = []
    i = 0
    while i < len(s):
        for key in _ESPEAK_KEYS:
            if s.startswith(key, i):
                out.append(_ESPEAK[key])
                i += len(key)
                break
        else:
            ch = s[i]
            if ch in ":;#-_|/":  # length, palatalisation and variant marks
                pass
            else:
                out.append(ch)
            i += 1
    return "".join(out)


def _canonical_inventory(inventory: str) -> str:
    inv = _INVENTORY_ALIASES.get(inventory.lower(), inventory.lower())
    if inv not in INVENTORIES:
        raise ValueError(f"unknown phone inventory {inventory!r}; use one of {INVENTORIES}")
    return inv


def _guess_inventory(raw: str) -> str:
    if any(ord(c) > 127 for c in raw):
        return "ipa"
    if len(raw) > 1 and _ARPA_RE.match(raw) and raw.rstrip("012").lower() in _RADIO:
        return "arpabet"
    if len(raw) > 1 and raw in _RADIO:
        return "radio"
    if len(raw) == 1 and (raw in _VOWELS or raw in _CONSONANT_VISEME):
        return "ipa"
    if len(raw) == 1 and raw not in _ESPEAK and raw.lower() in _RADIO:
        return "arpabet"
    return "espeak"


def normalize_label(label: str, inventory: str = "auto") -> str:
    """One phone label -> the common IPA-like label (``"sil"`` for silence).

    ``inventory`` is one of ``INVENTORIES`` (aliases: ``festival``->radio, ``cmu``/
    ``pocketsphinx``->arpabet). ``auto`` guesses: IPA when the label has non-ASCII letters,
    ARPAbet for upper-case ARPAbet names, festival radio for its multi-letter names, otherwise an
    espeak-ng mnemonic; single ASCII letters are read as IPA. Pass the inventory explicitly where
    labels are ambiguous (``y``, ``S``, ``D`` mean different phones in different sets).
    Returns ``""`` for a label that carries no phone (a bare modifier such as espeak's ``ʲ``
    event); :func:`normalize_phones` merges those into the previous phone. Never raises on an
    unknown label: it comes back cleaned, and :func:`phone_class` reports it as ``neutral``.
    """
    inv = _canonical_inventory(inventory)
    raw = (label or "").strip()
    low = raw.lower()
    if low in _SILENCE_LABELS or raw in _SILENCE_LABELS:
        return SILENCE
    if inv == "auto":
        inv = _guess_inventory(raw)
    if inv == "arpabet":
        base = raw.rstrip("012").lower()
        ipa = _RADIO.get(base)
        if ipa is None:
            return _clean_ipa(raw.lower())
        return ipa
    if inv == "radio":
        ipa = _RADIO.get(low)
        return ipa if ipa is not None else _clean_ipa(low)
    if inv == "mrpa":
        ipa = _MRPA.get(low)
        return ipa if ipa is not None else _clean_ipa(low)
    if inv == "espeak":
        return _clean_ipa(_espeak_to_ipa(raw))
    cleaned = _clean_ipa(raw)
    if cleaned.lower() in _SILENCE_LABELS and cleaned:
        return SILENCE
    return cleaned


def _segment_chars(label: str) -> list[str]:
    if label == SILENCE:
        return [SILENCE]
    chars = list(label)
    segs: list[str] = []
    i = 0
    while i < len(chars):
        two = "".join(chars[i:i + 2])
        if two in _AFFRICATES:
            segs.append(_AFFRICATES[two])
            i += 2
            continue
        segs.append(chars[i])
        i += 1
    return segs


def label_segments(label: str) -> tuple[str, ...]:
    """The articulatory segments of a normalised label: ``"aɪ"`` -> ``("a", "ɪ")``,
    ``"tʃ"`` -> ``("ʃ",)`` (an affricate is one gesture), ``"pf"`` -> ``("p", "f")``."""
    return tuple(_segment_chars(label)) or (SILENCE,)


def _segment_viseme(seg: str) -> str:
    if seg == SILENCE:
        return "sil"
    if seg in _CONSONANT_VISEME:
        return _CONSONANT_VISEME[seg]
    if seg in _VOWELS:
        h, b, r = _VOWELS[seg]
        if h >= OPEN_VOWEL_MIN_OPENNESS:
            return "AA"
        if r:
            return "YY" if b < 0.5 else ("UU" if h < 0.25 else "OO")
        if b < 0.5 and h < 0.25:
            return "II"
        if b < 0.3:
            return "EE"
        return "@@"
    return "neutral"


def _count_unknown(label: str) -> None:
    UNKNOWN_LABELS[label] += 1


def viseme_of(label: str, inventory: str = "ipa") -> str:
    """Viseme name (one of ``VISEMES``) of a label's first segment."""
    norm = normalize_label(label, inventory)
    seg = label_segments(norm)[0]
    vis = _segment_viseme(seg)
    return vis


def phone_class(label: str, inventory: str = "ipa") -> str:
    """Coarse class of a phone label: one of ``PHONE_CLASSES``.

    ``inventory`` defaults to ``"ipa"``, i.e. labels in the common representation (what
    :func:`normalize_label` returns and the corpus manifest stores); pass ``"arpabet"``,
    ``"radio"``, ``"espeak"``... for raw engine labels.

    ``bilabial`` = lips fully closed (p, b, m and their variants; not β/ɸ, which do not close);
    ``labiodental`` = f, v, ɱ, ʋ; ``open_vowel`` = near-open and open vowels (a, ä, ɑ, æ, ɐ, ɒ, ɶ);
    ``rounded_vowel`` = rounded vowels from close to open-mid (u, ʊ, o, ɔ, y, ʏ, ø, œ, ʉ, ɵ, ɞ);
    other vowels -> ``other_vowel``; other consonants -> ``other_consonant``. A diphthong takes
    the class of its first element. An unknown label is ``neutral`` (and counted in
    ``UNKNOWN_LABELS``).
    """
    norm = normalize_label(label, inventory)
    if norm == SILENCE or norm == "":
        return "silence" if norm == SILENCE else "neutral"
    seg = label_segments(norm)[0]
    if seg in _CONSONANT_VISEME:
        v = _CONSONANT_VISEME[seg]
        if v in ("PP", "MM"):
            return "bilabial"
        if v == "FF":
            return "labiodental"
        return "other_consonant"
    if seg in _VOWELS:
        h, _, r = _VOWELS[seg]
        if h >= OPEN_VOWEL_MIN_OPENNESS:
            return "open_vowel"
        if r:
            return "rounded_vowel"
        return "other_vowel"
    _count_unknown(label)
    return "neutral"


def key_pose(segment: str) -> np.ndarray:
    """Key pose (float32 over MOUTH_CHANNELS) of one segment (see :func:`label_segments`)."""
    if segment in _VOWEL_POSES:
        return _VOWEL_POSES[segment].copy()
    return CONSONANT_POSES[_segment_viseme(segment)].copy()


def _as_phone(p) -> Phone:
    if isinstance(p, Phone):
        return p
    if isinstance(p, Mapping):
        return Phone(float(p["start"]), float(p["end"]), str(p["label"]))
    s, e, lab = p
    return Phone(float(s), float(e), str(lab))


def normalize_phones(phones: Iterable, inventory: "str | Callable[[str], str]" = "ipa",
                     merge_silence: bool = True) -> list[Phone]:
    """Normalise the labels of a phone list (``Phone`` or ``(start, end, label)``).

    ``inventory`` is an inventory name (see :func:`normalize_label`) or a function mapping a raw
    label to a normalised one.

    Labels that carry no phone (``""`` after normalisation, e.g. a bare palatalisation mark)
    are merged into the previous phone; zero-length phones are dropped; with
    ``merge_silence`` neighbouring silences become one.
    """
    out: list[Phone] = []
    pending_start: float | None = None
    norm = inventory if callable(inventory) else (lambda lab: normalize_label(lab, inventory))
    for p in map(_as_phone, phones):
        lab = norm(p.label)
        if p.end <= p.start:
            continue
        if lab == "":
            if out:
                out[-1] = Phone(out[-1].start, p.end, out[-1].label)
            else:
                pending_start = p.start if pending_start is None else pending_start
            continue
        start = p.start if pending_start is None else pending_start
        pending_start = None
        if merge_silence and out and lab == SILENCE and out[-1].label == SILENCE:
            out[-1] = Phone(out[-1].start, p.end, SILENCE)
            continue
        out.append(Phone(start, p.end, lab))
    return out


# ----------------------------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------------------------


def opening(targets: np.ndarray) -> np.ndarray:
    """Mouth opening O = jawOpen + 0.25 * (mouthLowerDownLeft + mouthLowerDownRight) - mouthClose
    (the evaluation's definition), per frame."""
    t = np.asarray(targets)
    return (t[..., MOUTH_INDEX["jawOpen"]]
            + 0.25 * (t[..., MOUTH_INDEX["mouthLowerDownLeft"]]
                      + t[..., MOUTH_INDEX["mouthLowerDownRight"]])
            - t[..., MOUTH_INDEX["mouthClose"]])


def _subsegments(phones: Sequence[Phone], total: float
                 ) -> list[tuple[float, float, str, float, float]]:
    """Cover [0, total] with (start, end, segment, phone_start, phone_end): gaps become
    silence, labels with several segments are split inside their phone."""
    subs: list[tuple[float, float, str, float, float]] = []
    t = 0.0
    for p in sorted(phones, key=lambda q: (q.start, q.end)):
        s, e = max(p.start, t), p.end
        if s > t + 1e-9:
            subs.append((t, s, SILENCE, t, s))
        if e <= s:
            continue
        segs = label_segments(p.label)
        if len(segs) == 1:
            subs.append((s, e, segs[0], s, e))
        else:
            # first element 55 %, the rest share the remainder (diphthongs glide late)
            first = 0.55 if len(segs) == 2 else 1.0 / len(segs)
            shares = [first] + [(1.0 - first) / (len(segs) - 1)] * (len(segs) - 1)
            a = s
            for k, (seg, sh) in enumerate(zip(segs, shares)):
                b = e if k == len(segs) - 1 else a + sh * (e - s)
                subs.append((a, b, seg, s, e))
                a = b
        t = e
    if total > t + 1e-9:
        subs.append((t, total, SILENCE, t, total))
    merged: list[tuple[float, float, str, float, float]] = []
    for sub in subs:
        if merged and sub[2] == SILENCE and merged[-1][2] == SILENCE:
            merged[-1] = (merged[-1][0], sub[1], SILENCE, merged[-1][0], sub[1])
        else:
            merged.append(sub)
    return merged


def _dominance_params(seg: str, dur: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alpha, anticipatory half-life, carry-over half-life), each per group."""
    ha = np.full(len(_GROUPS), HALF_LIFE_ANTICIPATORY)
    hc = np.full(len(_GROUPS), HALF_LIFE_CARRYOVER)
    if seg == SILENCE:
        a = 0.15 + 0.85 * min(max((dur - 0.05) / (LONG_PAUSE - 0.05), 0.0), 1.0)
        alpha = np.full(len(_GROUPS), a)
        ha[:] = HALF_LIFE_SILENCE
        hc[:] = HALF_LIFE_SILENCE
        return alpha, ha, hc
    if seg in _VOWELS:
        h, b, r = _VOWELS[seg]
        if r:
            key = "rounded_vowel"
            ha[_GROUPS.index("round")] = HALF_LIFE_ROUNDING_ANTICIPATORY
        elif b < 0.5 and h < 0.5:
            key = "spread_vowel"
        else:
            key = "vowel"
        return np.array(_DOMINANCE_ALPHA[key]), ha, hc
    vis = _segment_viseme(seg)
    if vis == "WW":
        ha[_GROUPS.index("round")] = HALF_LIFE_ROUNDING_ANTICIPATORY
    return np.array(_DOMINANCE_ALPHA[vis]), ha, hc


def _ramp_weight(times: np.ndarray, s: float, e: float, lead: float, release: float) -> np.ndarray:
    w = np.zeros_like(times)
    inside = (times >= s) & (times <= e)
    w[inside] = 1.0
    before = (times < s) & (times > s - lead)
    w[before] = 1.0 - (s - times[before]) / lead
    after = (times > e) & (times < e + release)
    w[after] = 1.0 - (times[after] - e) / release
    return w


def phones_to_targets(phones: Iterable, fps: float, n_frames: int,
                      inventory: str = "ipa") -> np.ndarray:
    """ARKit mouth targets for a phone sequence.

    ``phones``: ``Phone`` objects or ``(start, end, label)`` (seconds). Labels are in the common
    representation by default (the manifest's); give ``inventory`` for raw engine labels (see
    :func:`normalize_label`). Frame ``i`` is sampled at ``i / fps`` seconds. Returns float32
    of shape ``(n_frames, len(MOUTH_CHANNELS))`` in ``MOUTH_CHANNELS`` order, values in 0..1.
    Time not covered by any phone is silence. Deterministic.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    n_frames = int(n_frames)
    out = np.zeros((max(n_frames, 0), _NCH), np.float32)
    if n_frames <= 0:
        return out
    plist = normalize_phones(phones, inventory)
    times = np.arange(n_frames, dtype=np.float64) / float(fps)
    total = max(times[-1] + 1.0 / fps, plist[-1].end if plist else 0.0)
    subs = _subsegments(plist, total)

    ngr = len(_GROUPS)
    num = np.zeros((n_frames, _NCH), np.float64)
    den = np.zeros((n_frames, ngr), np.float64)
    for s, e, seg, _, _ in subs:
        target = key_pose(seg).astype(np.float64)
        alpha, ha, hc = _dominance_params(seg, e - s)
        i0 = max(int(math.floor((s - _WINDOW) * fps)), 0)
        i1 = min(int(math.ceil((e + _WINDOW) * fps)) + 1, n_frames)
        if i1 <= i0:
            continue
        t = times[i0:i1]
        d_before = np.clip(s - t, 0.0, None)[:, None]
        d_after = np.clip(t - e, 0.0, None)[:, None]
        dom = alpha[None, :] * np.exp2(-d_before / ha[None, :] - d_after / hc[None, :])
        den[i0:i1] += dom
        num[i0:i1] += dom[:, _CH_GROUP] * target[None, :]
    den = np.maximum(den, 1e-12)
    x = num / den[:, _CH_GROUP]

    # hard constraints: lips meet inside bilabials, lower lip tucked inside labiodentals
    jaw = MOUTH_INDEX["jawOpen"]
    close = MOUTH_INDEX["mouthClose"]
    lows = [MOUTH_INDEX["mouthLowerDownLeft"], MOUTH_INDEX["mouthLowerDownRight"]]
    ups = [MOUTH_INDEX["mouthUpperUpLeft"], MOUTH_INDEX["mouthUpperUpRight"]]
    funnel = MOUTH_INDEX["mouthFunnel"]
    cb = np.zeros(n_frames)
    cf = np.zeros(n_frames)
    pose_b = np.zeros((n_frames, _NCH))
    pose_f = CONSONANT_POSES["FF"].astype(np.float64)
    for s, e, seg, ps, pe in subs:
        vis = _segment_viseme(seg)
        if vis not in ("PP", "MM", "FF"):
            continue
        w = _ramp_weight(times, s, e, CLOSURE_LEAD, CLOSURE_RELEASE)
        # a gesture shorter than a frame still shows on the frame nearest its centre, chosen
        # inside its phone when the phone holds a frame
        mid = 0.5 * (s + e)
        centre = int(round(mid * fps))
        lo, hi = int(math.ceil(ps * fps - 1e-9)), int(math.ceil(pe * fps - 1e-9)) - 1
        if lo <= hi:
            centre = min(max(centre, lo), hi)
        if 0 <= centre < n_frames:
            w[centre] = 1.0
        if vis == "FF":
            cf = np.maximum(cf, w)
        else:
            upd = w > cb
            pose_b[upd] = CONSONANT_POSES[vis]
            cb = np.maximum(cb, w)
    if cf.any():
        k = (LABIODENTAL_PULL * cf)[:, None]
        x = (1.0 - k) * x + k * pose_f[None, :]
    if cb.any():
        k = (BILABIAL_PULL * cb)[:, None]
        x = (1.0 - k) * x + k * pose_b
        x[:, lows] *= (1.0 - cb)[:, None]
        x[:, ups] *= (1.0 - 0.5 * cb)[:, None]
        x[:, funnel] *= 1.0 - 0.5 * cb
        need = cb * (x[:, jaw] + 0.25 * x[:, lows].sum(axis=1))
        x[:, close] = np.maximum(x[:, close], need)

    # rest within REST_WITHIN of the start of a long pause, left REST_LEAVE before speech
    r = np.ones(n_frames)
    for s, e, seg, _, _ in subs:
        if seg != SILENCE or (e - s) < LONG_PAUSE:
            continue
        m = (times >= s) & (times <= e)
        if not m.any():
            continue
        t = times[m]
        hold = 0.2 * REST_WITHIN
        down = np.clip(1.0 - (t - s - hold) / (REST_WITHIN - hold), 0.0, 1.0)
        down = 0.5 - 0.5 * np.cos(np.pi * down)
        if e >= total - 1e-9:
            up = np.zeros_like(t)
        else:
            up = np.clip((t - (e - REST_LEAVE)) / REST_LEAVE, 0.0, 1.0)
            up = 0.5 - 0.5 * np.cos(np.pi * up)
        if s <= 1e-9:
            down = np.zeros_like(t)
        r[m] = np.minimum(r[m], np.maximum(down, up))
    x *= r[:, None]

    x = np.clip(x, 0.0, 1.0)
    # lips never pass through each other: mouthClose <= jawOpen + 0.25 * lowerDown (O >= 0)
    x[:, close] = np.minimum(x[:, close], x[:, jaw] + 0.25 * x[:, lows].sum(axis=1))
    out[:] = x
    return out


# ----------------------------------------------------------------------------------------------
# festival phone sets described by articulatory features -> IPA
# ----------------------------------------------------------------------------------------------

#: Consonant IPA by festival ``ctype`` (s stop, f fricative, a affricate, n nasal, l liquid,
#: r approximant) and ``cplace`` (l labial, b labiodental, d dental, a alveolar, p palatal /
#: post-alveolar, v velar, g glottal): (voiceless, voiced). Labial stops and nasals are always
#: p / b / m, so every bilabial closure is labelled as one.
_FEST_CONSONANTS: dict[tuple[str, str], tuple[str, str]] = {
    ("s", "l"): ("p", "b"), ("s", "b"): ("p", "b"), ("s", "d"): ("t", "d"),
    ("s", "a"): ("t", "d"), ("s", "p"): ("c", "ɟ"), ("s", "v"): ("k", "g"),
    ("s", "g"): ("ʔ", "ʔ"),
    ("n", "l"): ("m", "m"), ("n", "b"): ("ɱ", "ɱ"), ("n", "d"): ("n", "n"),
    ("n", "a"): ("n", "n"), ("n", "p"): ("ɲ", "ɲ"), ("n", "v"): ("ŋ", "ŋ"),
    ("f", "l"): ("ɸ", "β"), ("f", "b"): ("f", "v"), ("f", "d"): ("θ", "ð"),
    ("f", "a"): ("s", "z"), ("f", "p"): ("ʃ", "ʒ"), ("f", "v"): ("x", "ɣ"),
    ("f", "g"): ("h", "ɦ"),
    ("a", "l"): ("pf", "pf"), ("a", "b"): ("pf", "pf"), ("a", "d"): ("ts", "dz"),
    ("a", "a"): ("ts", "dz"), ("a", "p"): ("tʃ", "dʒ"), ("a", "v"): ("kx", "kx"),
    ("l", "l"): ("w", "w"), ("l", "b"): ("ʋ", "ʋ"), ("l", "d"): ("l", "l"),
    ("l", "a"): ("l", "l"), ("l", "p"): ("ʎ", "ʎ"), ("l", "v"): ("ɰ", "ɰ"),
    ("r", "l"): ("w", "w"), ("r", "b"): ("ʋ", "ʋ"), ("r", "d"): ("r", "r"),
    ("r", "a"): ("r", "r"), ("r", "p"): ("j", "j"), ("r", "v"): ("ɰ", "ɰ"),
    ("r", "g"): ("h", "h"),
}
_FEST_SILENCE_NAMES = {"pau", "#", "##", "sil", "h#", "brth"}


def _feature_level(value: str, declared: Sequence[str]) -> float | None:
    """Position 0..1 of a numeric feature value among the declared numeric values (``0`` is
    festival's "not applicable", not a level)."""
    levels = sorted(int(v) for v in declared if str(v).isdigit() and str(v) != "0")
    if not str(value).isdigit() or str(value) == "0" or len(levels) < 2:
        return None
    return (int(value) - levels[0]) / float(levels[-1] - levels[0])


def festival_features_ipa(name: str, feats: Mapping[str, str],
                          declared: Mapping[str, Sequence[str]] | None = None,
                          close_high: bool = False, voicing_inverted: bool = False) -> str:
    """IPA symbol (understood by :func:`normalize_label` / :func:`phone_class`) of one festival
    phone from its phone-set features; ``""`` when the features do not say.

    ``feats``: the phone's features (``vc``, ``vheight``, ``vfront``, ``vrnd``, ``ctype``,
    ``cplace``, ``cvox``); ``declared``: each feature's declared values (from
    ``PhoneSet.description``; the numeric ones give the scale, e.g. ``vheight (1 2 3)``),
    default ``1 2 3``. Vowels (``vc +``): height (1 = close unless ``close_high``, where the
    largest value is close) and frontness (1 = front) become a place in the IPA vowel chart, and
    the nearest chart vowel with the same rounding is taken (e.g. 3/2/- -> ɐ, 2/3/+ -> o,
    1/1/+ -> y). Consonants: ``ctype`` x ``cplace`` x ``cvox`` (``voicing_inverted`` where a
    phone set writes it backwards) through a fixed table (labial stop -> p/b, labial nasal -> m,
    labiodental fricative -> f/v, ...). A liquid whose name starts with ``r`` is ``r``. A
    non-vowel without a consonant type but with vowel features is a glide (front -> j, back
    rounded -> w). Silence names (``pau``, ``#``...) and phones with no features -> ``"sil"``.
    """
    decl = declared or {}
    get = lambda k: str(feats.get(k, "0"))  # noqa: E731
    if name in _FEST_SILENCE_NAMES:
        return SILENCE
    h = _feature_level(get("vheight"), decl.get("vheight", ("1", "2", "3")))
    f = _feature_level(get("vfront"), decl.get("vfront", ("1", "2", "3")))
    rnd = get("vrnd") == "+"
    if get("vc") == "+" and h is not None:
        openness = h if not close_high else 1.0 - h
        backness = f if f is not None else 0.5
        best, dist = "ə", 9.0
        for v, (vo, vb, vr) in _VOWELS.items():
            if vr != rnd or v in _RHOTIC_VOWELS:
                continue
            d = (vo - openness) ** 2 + (vb - backness) ** 2
            if d < dist - 1e-9:
                best, dist = v, d
        return best
    ctype, cplace = get("ctype"), get("cplace")
    voiced = get("cvox") == "+"
    if voicing_inverted and get("cvox") in ("+", "-"):
        voiced = not voiced
    if (ctype, cplace) in _FEST_CONSONANTS:
        if ctype in ("l", "r") and cplace in ("a", "d") and name.lower().startswith("r"):
            return "r"
        if ctype == "l" and cplace in ("a", "d"):
            return "l"
        return _FEST_CONSONANTS[(ctype, cplace)][1 if voiced else 0]
    if get("vc") == "-" and h is not None:  # glide described with vowel features
        return "w" if (rnd or (f is not None and f > 0.5)) else "j"
    if all(str(v) in ("0", "-", "") for v in feats.values()):
        return SILENCE
    return ""


_INDIC_NAMES = {"ih": "ɪ", "uh": "ʊ", "eh": "e", "ee": "e", "oh": "o", "th": "t", "tth": "t",
                "dh": "d", "ddh": "d", "y": "j", "r": "r", "R": "r", "N": "ɳ", "w": "w",
                "x": "x", "ksh": "kʃ", "sri": "ʃr"}

#: Per phone set: ``close_high`` / ``voicing_inverted`` conventions and the phones whose
#: features are missing or follow another convention (by name). Czech's phone set carries no
#: place or height features at all, so it is the one mapped by name throughout.
FESTIVAL_PHONESET_FIXES: dict[str, dict] = {
    "italian": {},
    "finnish": {},
    "upc_catalan-central": {
        "close_high": True, "voicing_inverted": True,
        # u / w are written unrounded, j / w as vowels
        "names": {"u": "u", "u1": "u", "w": "w", "j": "j"},
    },
    "msu_ru": {
        "close_high": True,
        # place "d" = dental (s, z), "a" = post-alveolar (sh, zh, ch), "p" = velar (k, g)
        "names": {"a": "ɐ", "s": "s", "ss": "s", "z": "z", "zz": "z", "sh": "ʂ", "zh": "ʐ",
                  "sch": "ɕ", "ch": "tɕ", "k": "k", "kk": "k", "g": "g", "gg": "g", "j": "j"},
    },
    # Indic NSK voices (Hindi, Marathi, Telugu; one phone set, three names): dental stops are
    # written as dental fricatives (th / tth / dh / ddh), y / r / R as affricates, short i / u
    # and e / o without their true height or rounding, the glide w as a vowel and x with no
    # features (it would read as a pause); anusvara and aspirates are read by the lexicon.
    "hindi": {"names": {**_INDIC_NAMES, "a": "ə", "@": "ə", "ay": "ɛ", "aw": "ɔ", "oo": "ɔ"}},
    "marathi": {"names": {**_INDIC_NAMES, "a": "ə", "@": "ə", "ay": "əi", "aw": "əu",
                          "oo": "ɔ"}},
    "telugu": {"names": {**_INDIC_NAMES, "a": "a", "aa": "a", "@": "ə", "ay": "aɪ",
                         "aw": "aʊ", "oo": "o"}},
    "czech": {
        "names": {"a": "a", "a:": "a", "e": "ɛ", "e:": "ɛ", "i": "ɪ", "i:": "i", "o": "o",
                  "o:": "o", "u": "u", "u:": "u", "b": "b", "p": "p", "m": "m", "f": "f",
                  "v": "v", "t": "t", "d": "d", "n": "n", "s": "s", "z": "z", "k": "k",
                  "g": "g", "h": "ɦ", "ch": "x", "j": "j", "l": "l", "r": "r", "c": "ts",
                  "dz": "dz", "c~": "tʃ", "dz~": "dʒ", "d~": "ɟ", "t~": "c", "n~": "ɲ",
                  "n*": "ŋ", "r~": "r", "r~*": "r", "s~": "ʃ", "z~": "ʒ", "_": "ʔ",
                  "#": SILENCE},
    },
}


def festival_phoneset_ipa(phoneset: str, declared: Mapping[str, Sequence[str]],
                          phones: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """IPA of every phone of a festival phone set: :func:`festival_features_ipa` with the
    set's conventions and name fixes from ``FESTIVAL_PHONESET_FIXES`` (``""`` = unknown)."""
    fix = FESTIVAL_PHONESET_FIXES.get(phoneset, {})
    names = fix.get("names", {})
    out: dict[str, str] = {}
    for name, feats in phones.items():
        if name in names:
            out[name] = names[name]
            continue
        out[name] = festival_features_ipa(name, feats, declared,
                                          close_high=fix.get("close_high", False),
                                          voicing_inverted=fix.get("voicing_inverted", False))
    return out
