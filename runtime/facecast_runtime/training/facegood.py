"""FACEGOOD Audio2Face data (../shared/data/facegood): real Mandarin speech with animator curves.

Five clips of one actress, 16 kHz wav, with a 116-control rig animated at exactly 30 fps.
Two facts matter (see ../shared/README.md):

* the name list is rotated by one against the columns: column ``i`` of ``bs_value_*.npy`` holds
  the control named at position ``i - 1`` of ``bsname.txt`` (without its leading count);
* only the mouth is animated, and ``Voice2Face_blendshape2ARkit.xlsx`` maps the rig to ARKit.

The mapping below is the sheet's "valid" rows, transcribed by name (``max`` over several rig
controls where the sheet says so). ARKit channels whose source control never moves in the data
(``mouthClose`` <- ``mouth_chew_c``, jaw sideways/forward, frown, dimple, shrug) are reported as
*not animated* so that training and evaluation mask them out instead of learning "always zero".
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FPS = 30
CLIPS = ("1114_2_01", "1114_2_02", "1114_2_03", "1114_2_04", "1114_2_05")
#: The clip kept out of training and used for the held-out evaluation.
HELDOUT_CLIP = "1114_2_05"

#: ARKit channel -> rig controls whose maximum gives it (from Voice2Face_blendshape2ARkit.xlsx).
ARKIT_FROM_RIG: dict[str, tuple[str, ...]] = {
    "jawForward": ("jaw_thrust_c",),
    "jawLeft": ("jaw_sideways_l",),
    "jawRight": ("jaw_sideways_r",),
    "jawOpen": ("mouth_stretch_c",),
    "mouthClose": ("mouth_chew_c",),
    "mouthFunnel": ("mouth_funnel_dl", "mouth_funnel_dr", "mouth_funnel_ul", "mouth_funnel_ur"),
    "mouthPucker": ("mouth_pucker_l", "mouth_pucker_r"),
    "mouthLeft": ("mouth_sideways_l",),
    "mouthRight": ("mouth_sideways_r",),
    "mouthSmileLeft": ("mouth_lipCornerPull_l",),
    "mouthSmileRight": ("mouth_lipCornerPull_r",),
    "mouthFrownLeft": ("mouth_lipCornerDepress_l", "mouth_lipCornerDepressFix_l"),
    "mouthFrownRight": ("mouth_lipCornerDepress_r", "mouth_lipCornerDepressFix_r"),
    "mouthDimpleLeft": ("mouth_dimple_l",),
    "mouthDimpleRight": ("mouth_dimple_r",),
    "mouthStretchLeft": ("mouth_lipStretch_l",),
    "mouthStretchRight": ("mouth_lipStretch_r",),
    "mouthRollLower": ("mouth_suck_dl", "mouth_suck_dr"),
    "mouthRollUpper": ("mouth_suck_ul", "mouth_suck_ur"),
    "mouthShrugLower": ("mouth_chinRaise_d",),
    "mouthShrugUpper": ("mouth_chinRaise_u",),
    "mouthPressLeft": ("mouth_press_l",),
    "mouthPressRight": ("mouth_press_r",),
    "mouthLowerDownLeft": ("mouth_lowerLipDepress_l",),
    "mouthLowerDownRight": ("mouth_lowerLipDepress_r",),
    "mouthUpperUpLeft": ("mouth_upperLipRaise_l",),
    "mouthUpperUpRight": ("mouth_upperLipRaise_r",),
}


@dataclass
class FacegoodClip:
    name: str
    samples: np.ndarray          # float32 mono, 16 kHz
    sample_rate: int
    curves: dict[str, np.ndarray]  # ARKit channel -> (T,) float32 at 30 fps, animated ones only
    fps: int = FPS

    @property
    def n_frames(self) -> int:
        return len(next(iter(self.curves.values())))


def facegood_dir(shared: Path) -> Path:
    return Path(shared) / "data" / "facegood"


def rig_names(root: Path) -> list[str]:
    lines = (root / "bsname.txt").read_text().split()
    count = int(lines[0])
    names = lines[1:]
    if len(names) != count:
        raise ValueError(f"{root / 'bsname.txt'}: header says {count} names, found {len(names)}")
    return names


def column_names(root: Path) -> list[str]:
    """Name of every column of bs_value_*.npy, with the documented rotation applied."""
    names = rig_names(root)
    return [names[i - 1] for i in range(len(names))]  # column 0 holds the last name


def load_clip(shared: Path, name: str, min_std: float = 1e-3) -> FacegoodClip:
    import soundfile as sf

    root = facegood_dir(shared)
    if name not in CLIPS:
        raise ValueError(f"unknown FACEGOOD clip {name!r}; expected one of {', '.join(CLIPS)}")
    samples, sr = sf.read(root / name / f"{name}.wav", dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    with warnings.catch_warnings():  # the files were written by Python 2's numpy
        warnings.simplefilter("ignore", UserWarning)
        values = np.load(root / name / f"bs_value_{name}.npy").astype(np.float32)
    cols = {n: i for i, n in enumerate(column_names(root))}
    curves: dict[str, np.ndarray] = {}
    for arkit, sources in ARKIT_FROM_RIG.items():
        missing = [s for s in sources if s not in cols]
        if missing:
            raise ValueError(f"FACEGOOD rig has no control {missing[0]!r} (for {arkit})")
        curve = np.max(np.stack([values[:, cols[s]] for s in sources]), axis=0)
        curves[arkit] = np.clip(curve, 0.0, 1.0)
    return FacegoodClip(name, samples, int(sr), curves)


def moving_channels(clips: "list[FacegoodClip]", min_std: float = 1e-3) -> list[str]:
    """ARKit channels that move (std > min_std) in at least one of these clips."""
    moving = {k for clip in clips for k, v in clip.curves.items() if float(v.std()) > min_std}
    return [k for k in ARKIT_FROM_RIG if k in moving]


def animated_channels(shared: Path, min_std: float = 1e-3) -> list[str]:
    """ARKit channels that actually move somewhere in the FACEGOOD data (all five clips)."""
    return moving_channels([load_clip(shared, name) for name in CLIPS], min_std)
