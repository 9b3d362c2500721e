"""MAM-E prompt vocabularies and builder (MAM-E §3.2, table 2)."""
from __future__ import annotations

import pytest

from dicom_factory import mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.breast_mask import breast_area_fraction
from MammoSynthLogic.cli import main
from MammoSynthLogic.dicom_io import MANUFACTURER, read_mammogram
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.prompts import (INPAINT_PROMPT, area_phrase, build_prompt, checked_area, checked_view,
                                     density_phrase, prompt_for_image, vendor_phrase)


@pytest.mark.parametrize("value, word", [("A", "very low"), ("b", "low"), (3, "high"), ("4", "very high"),
                                         ("Very High", "very high"), ("very_low", "very low"), ("density C", "high"),
                                         ("low", "low")])
def test_density_vocabulary(value, word):
    assert density_phrase(value) == word


@pytest.mark.parametrize("fraction, word", [(0.0, "small"), (0.39, "small"), (0.4, "medium"), (0.59, "medium"),
                                            (0.6, "big"), (1.0, "big")])
def test_area_thresholds(fraction, word):
    assert area_phrase(fraction) == word


def test_full_and_partial_prompts():
    assert build_prompt("SIEMENS", "mlo", "small", "D") == \
        "a siemens mammogram in MLO view with small area and very high density"
    assert build_prompt(view="CC", area="small") == "a mammogram in CC view with small area"
    assert build_prompt(view="MLO", density="D") == "a mammogram in MLO view with very high density"
    assert build_prompt(area="big", density=1) == "a mammogram with big area and very low density"
    assert build_prompt("hologic") == "a hologic mammogram"
    assert build_prompt() == "a mammogram"
    assert INPAINT_PROMPT == "a mammogram with a lesion"


def test_vendor_words():
    assert vendor_phrase("SIEMENS") == "siemens"
    assert vendor_phrase("HOLOGIC, Inc.") == "hologic"
    assert vendor_phrase("GE MEDICAL SYSTEMS") == "ge"
    assert vendor_phrase(MANUFACTURER) is None and vendor_phrase("") is None and vendor_phrase(None) is None


@pytest.mark.parametrize("call, allowed", [(lambda: density_phrase("E"), "A, B, C, D"),
                                           (lambda: checked_area("huge"), "small, medium, big"),
                                           (lambda: checked_view("ML"), "CC or MLO"),
                                           (lambda: area_phrase(1.5), "between 0 and 1")])
def test_unknown_values_name_the_allowed_ones(call, allowed):
    with pytest.raises(MammoSynthError) as e:
        call()
    assert allowed in str(e.value) and "\n" not in str(e.value)


@pytest.fixture
def siemens_mlo(tmp_path):
    ds = mammogram_dataset(synthetic_breast(256, 192), ViewPosition="MLO", Manufacturer="SIEMENS")
    return read_mammogram(save(ds, tmp_path / "mlo.dcm"))


def test_prompt_from_metadata_and_user_choices(siemens_mlo):
    area = area_phrase(breast_area_fraction(siemens_mlo.pixels))
    assert prompt_for_image(siemens_mlo) == f"a siemens mammogram in MLO view with {area} area"
    other = "big" if area != "big" else "small"
    assert prompt_for_image(siemens_mlo, vendor="Hologic", view="CC", area=other, density="B") == \
        f"a hologic mammogram in CC view with {other} area and low density"


def test_cli_unknown_density_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "x.dcm"
    assert main(["text2mammo", "--density", "E", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: density 'E'") and "A, B, C, D" in err and len(err.splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []
