"""MAM-E text prompts: the vocabularies of its fine-tunes and the prompt builder (MAM-E §3.2, table 2).

Template (the "fusion" model): "a {vendor} mammogram in {view} view with {area} area and {density} density";
unknown parts are left out, e.g. "a mammogram in CC view with small area".
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional, Union

from MammoSynthLogic.errors import MammoSynthError

if TYPE_CHECKING:
    from MammoSynthLogic.dicom_io import MammogramImage

DENSITIES = ("very low", "low", "high", "very high")  # BI-RADS density A, B, C, D (MAM-E table 2b)
AREAS = ("small", "medium", "big")  # breast pixel ratio < 0.4, < 0.6, else (MAM-E table 2a)
AREA_LIMITS = (0.4, 0.6)
VIEWS = ("CC", "MLO")
INPAINT_PROMPT = "a mammogram with a lesion"


def density_phrase(value: Union[str, int]) -> str:
    """BI-RADS density A–D, 1–4 or the words themselves → MAM-E's words ("very low" … "very high")."""
    key = str(value).strip().lower().replace("_", " ").replace("-", " ")
    key = re.sub(r"\s+", " ", key).removeprefix("density ").removeprefix("birads ").removeprefix("bi rads ")
    for i, word in enumerate(DENSITIES):
        if key in (word, "abcd"[i], str(i + 1)):
            return word
    raise MammoSynthError(f"density {value!r}", "unknown value; choose A, B, C, D (or 1-4, or "
                                                + ", ".join(f'"{w}"' for w in DENSITIES) + ")")


def area_phrase(fraction: float) -> str:
    """Breast area word from the fraction of the image the breast covers: < 0.4 small, < 0.6 medium, else big."""
    if not 0.0 <= fraction <= 1.0:
        raise MammoSynthError(f"breast area fraction {fraction}", "must lie between 0 and 1")
    return AREAS[sum(fraction >= limit for limit in AREA_LIMITS)]


def checked_area(value: str) -> str:
    """An area word given by the user, validated."""
    key = str(value).strip().lower()
    if key not in AREAS:
        raise MammoSynthError(f"area {value!r}", f"unknown value; choose {', '.join(AREAS)}")
    return key


def checked_view(value: str) -> str:
    """CC or MLO, any case."""
    key = str(value).strip().upper()
    if key not in VIEWS:
        raise MammoSynthError(f"view {value!r}", f"unknown value; choose {' or '.join(VIEWS)}")
    return key


def vendor_phrase(manufacturer: Optional[str]) -> Optional[str]:
    """The vendor word MAM-E uses: the manufacturer's first word in lower case ("HOLOGIC, Inc." → "hologic")."""
    from MammoSynthLogic.dicom_io import MANUFACTURER

    words = re.findall(r"[a-z0-9]+", str(manufacturer or "").lower())
    if not words or manufacturer == MANUFACTURER:  # our own synthetic images name no real vendor
        return None
    return words[0]


def build_prompt(vendor: Optional[str] = None, view: Optional[str] = None, area: Optional[str] = None,
                 density: Optional[Union[str, int]] = None) -> str:
    """MAM-E's prompt from whatever is known; missing parts are dropped cleanly."""
    text = "a " + (f"{vendor_phrase(vendor)} " if vendor_phrase(vendor) else "") + "mammogram"
    if view:
        text += f" in {checked_view(view)} view"
    traits = ([f"{checked_area(area)} area"] if area else []) + ([f"{density_phrase(density)} density"]
                                                                  if density not in (None, "") else [])
    return text + (" with " + " and ".join(traits) if traits else "")


def prompt_for_image(image: MammogramImage, *, vendor: Optional[str] = None, view: Optional[str] = None,
                     area: Optional[str] = None, density: Optional[Union[str, int]] = None) -> str:
    """The prompt describing a real mammogram (vendor, view, breast area from its mask); user choices win."""
    from MammoSynthLogic.breast_mask import breast_area_fraction

    own_view = image.view if image.view in VIEWS else None
    return build_prompt(vendor=vendor or image.dataset.get("Manufacturer"), view=view or own_view,
                        area=area or area_phrase(breast_area_fraction(image.pixels)), density=density)
