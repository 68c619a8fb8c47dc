"""The five field-device models, by the model name the site files use."""

from __future__ import annotations

from simulators.models.base import DeviceSim
from simulators.models.hn_bsd3 import HnBsd3Sim
from simulators.models.mfs_gw1 import MfsGw1Sim
from simulators.models.pt_nfc1 import PtNfc1Sim
from simulators.models.xs_fl200 import XsFl200Sim
from simulators.models.yk_fs8 import YkFs8Sim

MODELS: dict[str, type[DeviceSim]] = {
    cls.model: cls for cls in (XsFl200Sim, HnBsd3Sim, PtNfc1Sim, MfsGw1Sim, YkFs8Sim)
}

__all__ = ["MODELS", "DeviceSim"]
