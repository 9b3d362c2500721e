"""Every command-line option has a test that fails when the option is ignored or wired to the wrong thing.

`COVERAGE` maps each option, as enumerated from the argparse parsers, to the test that covers it; an option added
to a parser without an entry here fails `test_every_option_has_a_covering_test`. The tests below cover the options
shared by many commands (device, identity pins, --send, progress) once per command, and the sampling options by
what reaches the pipeline (the settings recorded in the output, or what a stand-in model is asked).
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from dicom_factory import mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.cli import _reporter, build_parser, main
from MammoSynthLogic.dicom_io import read_mammogram, read_provenance
from oracles import asymmetric_breast, channel, image, mambo_oracles, oracle_bundle
from tiny_bundles import make_tiny_mambo_set, tiny_dualview_bundle
from tiny_sd import make_tiny_sd_bundle

torch.set_num_threads(1)
HERE = Path(__file__).parent
COMMON = ("--device", "--progress-json", "--quiet")
OPTIONS = "test_options.py::"
EVALUATE = "test_options_evaluate.py::"
READER = "test_options_reader_study.py::"


def cli_options(parser: argparse.ArgumentParser = None, prefix: tuple = ()) -> set[str]:
    """'COMMAND --option' for every option of every (sub-)command, help excluded."""
    found = set()
    for action in (parser or build_parser())._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= cli_options(sub, prefix + (name,))
        elif prefix and action.option_strings and "-h" not in action.option_strings:
            found.add(f"{' '.join(prefix)} {max(action.option_strings, key=len)}")
    return found


def _mambo_sampling(command: str) -> dict[str, str]:
    test = f"{OPTIONS}test_sampling_options_reach_the_pipeline"
    return {f"{command} {o}": test for o in ("--preset", "--steps", "--sampler", "--tiling", "--overlap",
                                             "--strength", "--batch", "--size", "--compile")}


def _identity(commands: tuple[str, ...]) -> dict[str, str]:
    pins = f"{OPTIONS}test_patient_and_study_pins_reach_every_output"
    send = f"{OPTIONS}test_a_bad_send_destination_is_refused_before_any_work"
    return {**{f"{c} {o}": pins for c in commands for o in ("--patient-id", "--study-uid")},
            **{f"{c} --send": send for c in commands + ("anomaly",)}}


WRITERS = ("generate", "upscale", "batch-generate", "dualview", "text2mammo", "inpaint")
COVERAGE: dict[str, str] = {
    **_mambo_sampling("generate"), **_mambo_sampling("upscale"), **_mambo_sampling("batch-generate"),
    **_identity(WRITERS),
    "info --json": "test_cli_info_prepare.py::test_info_on_the_real_folder",
    "info --pairs": "test_cli_info_prepare.py::test_every_info_field_and_pairs_on_files_with_known_answers",
    "prepare --out": "test_cli_info_prepare.py::test_prepare_writes_every_output_and_a_usable_transform",
    "prepare --multiple":
        "test_cli_info_prepare.py::test_prepared_image_is_the_mirrored_source_and_multiple_sets_its_side",
    "generate --laterality": f"{OPTIONS}test_generate_laterality_r_mirrors_what_the_models_draw",
    "generate --model": f"{OPTIONS}test_generate_laterality_r_mirrors_what_the_models_draw",
    "generate --seed": "test_identity.py::test_same_seed_same_pixels_and_provenance_new_patient_and_study",
    "generate --out": "test_mambo_pipeline.py::test_generate_dicom_is_valid_synthetic_and_records_seed",
    "upscale --model": f"{OPTIONS}test_upscale_keeps_a_right_breast_on_the_right",
    "upscale --seed": f"{OPTIONS}test_sampling_options_reach_the_pipeline",
    "upscale --out": f"{OPTIONS}test_upscale_keeps_a_right_breast_on_the_right",
    "batch-generate --count": f"{OPTIONS}test_sampling_options_reach_the_pipeline",
    "batch-generate --seed-start":
        "test_batch_generate.py::test_one_process_gives_the_same_image_for_a_seed_as_the_sharded_run",
    "batch-generate --out":
        "test_batch_generate.py::test_two_torchrun_processes_write_each_seed_once_and_a_restart_resumes",
    "batch-generate --model": f"{OPTIONS}test_sampling_options_reach_the_pipeline",
    "batch-generate --format": f"{OPTIONS}test_batch_generate_format",
    "batch-generate --rebuild-manifest": f"{OPTIONS}test_batch_generate_rebuild_manifest_only_rewrites_the_manifest",
    "anomaly --out": "test_anomaly.py::test_command_writes_every_output_in_the_source_grid",
    "anomaly --model": f"{OPTIONS}test_anomaly_options_change_what_the_model_is_asked_and_the_map",
    **{f"anomaly {o}": f"{OPTIONS}test_anomaly_options_change_what_the_model_is_asked_and_the_map"
       for o in ("--lambda", "--level", "--draws", "--steps", "--threshold", "--min-difference", "--invert",
                 "--seed")},
    "dualview --out": "test_dualview.py::test_pair_is_one_synthetic_study_and_valid",
    "dualview --model": "test_oracle_dualview.py::test_command_writes_each_view_the_right_way_round",
    "dualview --laterality": "test_oracle_dualview.py::test_command_writes_each_view_the_right_way_round",
    "dualview --preset": f"{OPTIONS}test_dualview_sampling_options_and_format",
    "dualview --sampler": f"{OPTIONS}test_dualview_sampling_options_and_format",
    "dualview --steps": f"{OPTIONS}test_dualview_sampling_options_and_format",
    "dualview --seed": f"{OPTIONS}test_dualview_sampling_options_and_format",
    "dualview --format": f"{OPTIONS}test_dualview_sampling_options_and_format",
    "dualview --resample": "test_oracle_dualview.py::test_completing_a_right_breast_gives_a_right_breast",
    "dualview --complete": "test_oracle_dualview.py::test_completing_a_right_breast_gives_a_right_breast",
    "dualview --view": f"{OPTIONS}test_dualview_view_names_the_known_channel",
    "dualview --copy-known": "test_dualview.py::test_completion_writes_only_a_synthetic_view",
    "dualview --keep-identity": "test_dualview.py::test_completion_writes_only_a_synthetic_view",
    "dualview --size": "test_dualview.py::test_full_resolution_through_the_mambo_stages",
    "dualview --mambo-model": "test_dualview.py::test_full_resolution_through_the_mambo_stages",
    "text2mammo --like": "test_text2mammo.py::test_cli_like_a_real_image_and_progress_json",
    **{f"text2mammo {o}": "test_text2mammo.py::test_cli_dicom_valid_synthetic_reproducible_and_mirrored"
       for o in ("--model", "--vendor", "--view", "--density", "--area", "--negative-prompt", "--guidance",
                 "--steps", "--seed", "--size", "--laterality", "--out")},
    "text2mammo --prompt": f"{OPTIONS}test_sd_options_reach_the_pipeline",
    "text2mammo --sampler": f"{OPTIONS}test_sd_options_reach_the_pipeline",
    "inpaint --mask": "test_inpaint.py::test_bad_masks_one_line_error_nothing_written",
    "inpaint --method": f"{OPTIONS}test_inpaint_method_overrides_the_route_the_model_implies",
    "inpaint --feather": "test_inpaint.py::test_repaint_route_honours_feather_like_the_sd_route",
    "inpaint --keep-identity": "test_deidentify.py::test_inpaint_output_has_no_burned_in_text",
    **{f"inpaint {o}": f"{OPTIONS}test_inpaint_label_and_segment_choose_the_mask" for o in ("--label", "--segment")},
    "inpaint --out": "test_inpaint.py::test_sd_inpainting_keeps_source_pixels_outside_the_blend_zone",
    **{f"inpaint {o}": f"{OPTIONS}test_sd_options_reach_the_pipeline"
       for o in ("--model", "--prompt", "--negative-prompt", "--guidance", "--steps", "--sampler", "--seed",
                 "--context")},
    "inpaint --lesion": "test_inpaint_lesion.py::test_mass_at_a_random_place_in_the_breast_with_its_exact_seg",
    **{f"inpaint {o}": f"{OPTIONS}test_inpaint_size_spacing_and_shape_set_the_drawn_mass"
       for o in ("--size-mm", "--shape", "--spacing-mm")},
    **{f"inpaint {o}": "test_inpaint_lesion.py::test_margin_shape_and_calcification_options_reach_the_drawing"
       for o in ("--margin", "--count")},
    "inpaint --spread-mm": f"{OPTIONS}test_inpaint_spread_mm_sets_the_cluster_extent",
    "inpaint --strength": "test_inpaint_lesion.py::test_strength_is_recorded_and_changes_the_result",
    "inpaint --form": f"{OPTIONS}test_inpaint_form_draws_pleomorphic_calcifications",
    "inpaint --jumps": f"{OPTIONS}test_repaint_route_options_reach_the_pipeline",
    "inpaint --lesion-contrast": f"{OPTIONS}test_repaint_route_options_reach_the_pipeline",
    "evaluate generation --real": "test_metrics.py::test_cli_evaluate_generation_writes_json_and_markdown",
    "evaluate generation --synthetic": "test_metrics.py::test_cli_evaluate_generation_writes_json_and_markdown",
    "evaluate generation --out": "test_metrics.py::test_cli_evaluate_generation_writes_json_and_markdown",
    **{f"evaluate generation {o}":
       f"{EVALUATE}test_evaluate_generation_global_size_and_patch_size_are_the_sides_compared"
       for o in ("--global-size", "--patch-size")},
    "evaluate generation --features": "test_metrics.py::test_cli_missing_features_file_exits_with_one_line_naming_it",
    "evaluate generation --lpips-weights": f"{EVALUATE}test_evaluate_generation_lpips_weights_are_the_file_given",
    "evaluate generation --size": f"{EVALUATE}test_evaluate_generation_size_puts_both_sets_on_one_pixel_scale",
    **{f"evaluate generation {o}":
       f"{EVALUATE}test_evaluate_generation_patches_diversity_images_and_max_pairs_set_the_counts"
       for o in ("--patches", "--diversity-images", "--max-pairs")},
    "evaluate generation --seed": f"{EVALUATE}test_evaluate_generation_seed_is_the_one_the_metrics_draw_with",
    "evaluate dualview --real": "test_dualview.py::test_pair_is_one_synthetic_study_and_valid",
    "evaluate dualview --synthetic": "test_dualview.py::test_pair_is_one_synthetic_study_and_valid",
    "evaluate dualview --work-size": f"{EVALUATE}test_evaluate_dualview_work_size_is_the_frame_the_masks_are_made_in",
    "evaluate dualview --out": "test_dualview.py::test_pair_is_one_synthetic_study_and_valid",
    "evaluate realism --synthetic": "test_realism.py::test_command_writes_the_report_with_lesion_texture",
    "evaluate realism --masks": "test_realism.py::test_command_writes_the_report_with_lesion_texture",
    "evaluate realism --size": "test_realism.py::test_command_writes_the_report_with_lesion_texture",
    "evaluate realism --out": "test_realism.py::test_command_writes_the_report_with_lesion_texture",
    "evaluate realism --k": f"{EVALUATE}test_evaluate_realism_k_places_the_local_seams",
    "evaluate realism --tile-size": f"{EVALUATE}test_evaluate_realism_tile_size_places_the_patch_seams",
    "evaluate realism --overlap": f"{EVALUATE}test_evaluate_realism_overlap_places_the_patch_seams",
    "reader-study prepare --real": "test_reader_study.py::test_key_and_manifest_match_the_files",
    "reader-study prepare --synthetic": "test_reader_study.py::test_key_and_manifest_match_the_files",
    "reader-study prepare --out": "test_reader_study.py::test_key_and_manifest_match_the_files",
    "reader-study prepare --allow-upscale": f"{READER}test_prepare_allow_upscale_lets_a_large_canvas_through",
    "reader-study prepare --n-real": "test_reader_study.py::test_prepare_errors_are_one_line",
    **{f"reader-study prepare {o}": f"{READER}test_prepare_seed_fixes_the_order_and_key_out_moves_the_key"
       for o in ("--seed", "--key-out")},
    **{f"reader-study prepare {o}": f"{READER}test_prepare_n_synthetic_columns_and_bits"
       for o in ("--rows", "--n-synthetic", "--columns", "--bits")},
    "reader-study prepare --keep-background": f"{READER}test_prepare_keep_background_keeps_the_film_base",
    "reader-study prepare --keep-noise":
        "test_reader_study_grain.py::test_sets_differing_only_in_grain_are_told_apart_before_and_not_after",
    "reader-study score --key": "test_reader_study.py::test_score_command_writes_the_report",
    "reader-study score --responses": "test_reader_study.py::test_score_command_writes_the_report",
    "reader-study score --out": "test_reader_study.py::test_score_command_writes_the_report",
    "reader-study score --synthetic-from": f"{READER}test_score_synthetic_from_sets_what_counts_as_spotted",
    "send --to": "test_send_pacs.py::test_send_option_of_a_command_and_the_send_command",
}


def test_every_option_has_a_covering_test():
    """Each parser option has an entry; each entry names a test that exists (or says GAP and why)."""
    common = {f"{o.rsplit(' ', 1)[0]} {c}" for o in cli_options() for c in COMMON}
    missing = sorted(cli_options() - set(COVERAGE) - common)
    assert not missing, f"options without a covering test (add them to COVERAGE in {__file__}): {missing}"
    defined = set()
    for folder in (HERE, HERE.parent / "training" / "tests"):
        for path in folder.glob("test_*.py"):
            defined |= {f"{path.name}::{n.name}" for n in ast.walk(ast.parse(path.read_text()))
                        if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    unknown = {o: t for o, t in COVERAGE.items() if not t.startswith("GAP:") and t not in defined}
    assert not unknown, f"COVERAGE names tests that do not exist: {unknown}"
    stale = sorted(set(COVERAGE) - cli_options())
    assert not stale, f"COVERAGE lists options no parser has: {stale}"


# ------------------------------------------------------------------ inputs and tiny models for every command


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"mambo": make_tiny_mambo_set(root / "mambo", size=32, k=2),
            "dualview": tiny_dualview_bundle(root / "dualview"),
            "text": make_tiny_sd_bundle(root / "text", "mame-text"),
            "inpaint": make_tiny_sd_bundle(root / "inpaint", "mame-inpaint")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    from PIL import Image

    root = tmp_path_factory.mktemp("inputs")
    src = save(mammogram_dataset(synthetic_breast(256, 192), ImageLaterality="R"), root / "src.dcm")
    mask = np.zeros((256, 192), np.uint8)
    mask[100:140, 40:80] = 255
    Image.fromarray(mask).save(root / "mask.png")
    return {"src": src, "mask": root / "mask.png", "folder": root}


def argv(command: str, models: dict, inputs: dict, out: Path) -> list[str]:
    """The smallest valid call of `command` with tiny models (a few seconds at most)."""
    mambo, src = str(models["mambo"]), str(inputs["src"])
    return {
        "generate": ["generate", "--model", mambo, "--steps", "2", "--seed", "1", "--out", str(out / "g.dcm")],
        "upscale": ["upscale", src, "--model", mambo, "--steps", "2", "--seed", "1", "--out", str(out / "u.dcm")],
        "batch-generate": ["batch-generate", "--count", "1", "--model", mambo, "--steps", "2", "--out", str(out)],
        "anomaly": ["anomaly", src, "--model", mambo, "--steps", "2", "--seed", "1", "--out", str(out)],
        "dualview": ["dualview", "--model", str(models["dualview"]), "--preset", "fast", "--steps", "2", "--seed", "1",
                     "--out", str(out)],
        "text2mammo": ["text2mammo", "--model", str(models["text"]), "--steps", "2", "--seed", "1", "--size", "64",
                       "--out", str(out / "t.dcm")],
        "inpaint": ["inpaint", src, "--mask", str(inputs["mask"]), "--method", "sd", "--model", str(models["inpaint"]),
                    "--steps", "2", "--seed", "1", "--out", str(out / "i.dcm")],
        "evaluate generation": ["evaluate", "generation", "--real", str(inputs["folder"]), "--synthetic",
                                str(inputs["folder"]), "--out", str(out)],
    }[command]


def result_line(capsys) -> dict:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"result"' in line][-1]


MODEL_COMMANDS = ("generate", "upscale", "batch-generate", "anomaly", "dualview", "text2mammo", "inpaint",
                  "evaluate generation")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: --device cuda is valid here")
@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_device_cuda_without_cuda_is_one_line_error(command, models, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(argv(command, models, inputs, out) + ["--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device cuda: no CUDA GPU"), err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("command", WRITERS + ("anomaly",))
def test_a_bad_send_destination_is_refused_before_any_work(command, models, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(argv(command, models, inputs, out) + ["--send", "ftp://nowhere"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "ftp://nowhere" in err[0], err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("command", WRITERS)
def test_patient_and_study_pins_reach_every_output(command, models, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    pins = ["--patient-id", "PIN-7", "--study-uid", "1.2.826.0.1.3680043.2.1143.777"]
    assert main(argv(command, models, inputs, out) + pins + ["--progress-json", "--device", "cpu"]) == 0
    written = sorted(out.rglob("*.dcm"))
    assert written and result_line(capsys)
    for path in written:
        ds = pydicom.dcmread(path)
        assert (ds.PatientID, ds.StudyInstanceUID) == ("PIN-7", "1.2.826.0.1.3680043.2.1143.777"), path


def test_quiet_and_progress_json_choose_the_reporter(monkeypatch):
    """Shared by every command through `cli.main`: --progress-json prints JSON lines, --quiet silences the bar
    even on a terminal."""
    from MammoSynthLogic.progress import JsonLinesProgress, TqdmProgress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    parse = build_parser().parse_args
    assert isinstance(_reporter(parse(["info", "x", "--progress-json"]), None).callback, JsonLinesProgress)
    quiet, loud = (_reporter(parse(["info", "x", *flag]), None).callback for flag in (["--quiet"], []))
    assert isinstance(quiet, TqdmProgress) and isinstance(loud, TqdmProgress)
    assert quiet.disable and not loud.disable


# ------------------------------------------------------------------ MAMBO commands


@pytest.mark.parametrize("command", ["generate", "upscale", "batch-generate"])
def test_sampling_options_reach_the_pipeline(command, models, inputs, tmp_path, capsys):
    """Every sampling option, set away from its preset's value, is what the pipeline ran with (the provenance
    records the settings as run) and the size is the image's."""
    out = tmp_path / "out"
    options = ["--preset", "paper", "--steps", "3", "--sampler", "ddim", "--tiling", "wavefront", "--overlap", "6",
               "--strength", "0.9", "--batch", "3", "--size", "96", "--seed", "11", "--compile"]
    call = argv(command, models, inputs, out)
    call = call[:call.index("--steps")] + call[call.index("--steps") + 2:]
    if command == "batch-generate":
        call = [a for a in call] + ["--n", "2"]
    assert main(call + options + ["--progress-json", "--device", "cpu"]) == 0
    paths = sorted(out.rglob("*.dcm"))
    assert len(paths) == (2 if command == "batch-generate" else 1)
    for path in paths:
        record = read_provenance(path)
        settings = record["settings"]
        assert (settings["name"], settings["steps"], settings["global_steps"]) == ("paper", 3, 3)
        assert (settings["sampler"], settings["global_sampler"], settings["tiling"]) == ("ddim", "ddim", "wavefront")
        assert (settings["overlap"], settings["strength"], settings["chunk"], settings["compile"]) == (6, 0.9, 3, True)
        assert record["seed"] in (11, 12) if command == "batch-generate" else record["seed"] == 11
        assert record.get("size", 96) == 96
    if command != "upscale":
        assert pydicom.dcmread(paths[0]).Rows == 96


def oracle_set(known01: np.ndarray, s: int = 32, k: int = 2):
    """A MAMBO set that knows one breast: the global model draws it at s, local and patch copy their aligned
    context (the coarser stage under the tile), so every stage is the breast at its own resolution."""
    from MammoSynthLogic.preparation import resize

    g = torch.from_numpy(resize(known01, (s, s)) * 2 - 1)[None]
    return mambo_oracles(s, k, image(g), channel(3), channel(3))


def test_generate_laterality_r_mirrors_what_the_models_draw(monkeypatch, tmp_path):
    """The models draw a left breast (chest wall left); --laterality R must store its mirror image and say R."""
    import MammoSynthLogic.bundles

    known = asymmetric_breast(128, 128)
    monkeypatch.setattr(MammoSynthLogic.bundles, "load_mambo_set", lambda refs, device="cpu": oracle_set(known))
    images = {}
    for lat in ("L", "R"):
        out = tmp_path / f"{lat}.dcm"
        assert main(["generate", "--model", "oracle", "--laterality", lat, "--preset", "paper", "--steps", "10",
                     "--seed", "3", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
        written = read_mammogram(out)
        assert written.laterality == lat
        images[lat] = written.pixels
    assert np.abs(images["L"] - known).mean() < 0.02  # the breast as drawn, chest wall on the left
    assert np.abs(images["R"] - known[:, ::-1]).mean() < 0.02 and np.abs(images["R"] - known).mean() > 0.1


def test_upscale_keeps_a_right_breast_on_the_right(monkeypatch, tmp_path):
    """Super-resolution of a right breast through models that copy their context comes back as that breast."""
    import MammoSynthLogic.bundles

    right = asymmetric_breast(128, 96, side="right")
    src = save(mammogram_dataset((right * 65535).astype(np.uint16), ImageLaterality="R"), tmp_path / "r.dcm")
    monkeypatch.setattr(MammoSynthLogic.bundles, "load_mambo_set",
                        lambda refs, device="cpu": mambo_oracles(32, 2, image(torch.zeros(1, 32, 32)), channel(3),
                                                                 channel(3)))
    out = tmp_path / "up.dcm"
    assert main(["upscale", str(src), "--model", "oracle", "--preset", "paper", "--steps", "10", "--seed", "1",
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    result = read_mammogram(out).pixels
    assert result.shape == right.shape
    # the 32² global context is 1/4 of the 128 canvas: its blur, not the orientation, sets the error
    assert np.abs(result - right).mean() < 0.05 and np.abs(result - right[:, ::-1]).mean() > 0.2


@pytest.mark.parametrize("fmt", ["png", "nrrd"])
def test_batch_generate_format(fmt, models, tmp_path):
    out = tmp_path / fmt
    assert main(["batch-generate", "--count", "1", "--model", str(models["mambo"]), "--steps", "2", "--format", fmt,
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    assert len(list(out.glob(f"seed-*.{fmt}"))) == 1 and not list(out.glob("seed-*.dcm"))


def test_batch_generate_rebuild_manifest_only_rewrites_the_manifest(models, tmp_path):
    """After a run, a deleted manifest.csv comes back as it was, from the images' own provenance; --count and
    --model given with --rebuild-manifest generate nothing."""
    out = tmp_path / "batch"
    run = ["batch-generate", "--model", str(models["mambo"]), "--steps", "2", "--out", str(out), "--quiet",
           "--device", "cpu"]
    assert main(run + ["--count", "2", "--seed-start", "4"]) == 0
    manifest = out / "manifest.csv"
    written = manifest.read_text()
    images = {p.name: p.stat().st_mtime_ns for p in out.glob("seed-*.dcm")}
    assert sorted(images) == ["seed-0000000004.dcm", "seed-0000000005.dcm"]
    manifest.unlink()
    assert main(run + ["--count", "3", "--rebuild-manifest"]) == 0
    assert manifest.read_text() == written
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("seed-*")} == images  # nothing generated or rewritten


# ------------------------------------------------------------------ anomaly


@pytest.fixture
def anomaly_oracles(monkeypatch):
    """The command gets a global model that knows the healthy breast and a context-copying patch model."""
    import MammoSynthLogic.bundles
    from MammoSynthLogic.memory import ModelSize
    from test_oracle_anomaly import S, healthy_global

    bundles = {"g": healthy_global(S // 2),
               "p": oracle_bundle("mambo-patch", S // 2, channel(3), in_channels=4, k=4, aligned=True)}
    monkeypatch.setattr(MammoSynthLogic.bundles, "find_bundles", lambda ref: {"mambo-global": "g", "mambo-patch": "p"})
    monkeypatch.setattr(MammoSynthLogic.bundles, "load_bundle", lambda ref, device="cpu", verify=True: bundles[ref])
    # the memory check reads the bundles' files before loading them: the stand-ins' manifests and U-Net configs
    monkeypatch.setattr(MammoSynthLogic.bundles, "read_manifest", lambda folder: bundles[folder].manifest)
    monkeypatch.setattr(ModelSize, "read", lambda folder: ModelSize(
        image_size=bundles[folder].manifest["image_size"], full_size=S, in_channels=bundles[folder].manifest[
            "in_channels"], channels=tuple(bundles[folder].unet.config.block_out_channels), weight_bytes=0.0))
    return bundles


def lesion_file(folder: Path, contrast: float, radius: float = 24) -> Path:
    from test_oracle_anomaly import with_lesion

    image01 = with_lesion(contrast, radius)[0]
    return save(mammogram_dataset((image01 * 65535).astype(np.uint16), ImageLaterality="R"), folder / "src.dcm")


def anomaly(src: Path, out: Path, *extra: str) -> tuple[dict, np.ndarray]:
    import nrrd

    assert main(["anomaly", str(src), "--model", "oracle", "--out", str(out), "--quiet", "--device", "cpu",
                 *extra]) == 0
    labels, _ = nrrd.read(str(out / "labels.nrrd"), index_order="C")
    return json.loads((out / "anomaly.json").read_text()), labels.astype(bool)


def test_anomaly_options_change_what_the_model_is_asked_and_the_map(anomaly_oracles, tmp_path):
    from test_oracle_anomaly import with_lesion

    truth = with_lesion(0.25)[1]
    bright = lesion_file(tmp_path / "bright", 0.25)
    g, p = anomaly_oracles["g"].unet, anomaly_oracles["p"].unet

    record, labels = anomaly(bright, tmp_path / "a", "--lambda", "300", "--steps", "7", "--seed", "4")
    ts = [t for _, t in g.calls]
    assert ts[0] == 299 and len(ts) == 7 and not p.calls  # --lambda, --steps; global level by default
    assert record["seed"] == 4 and record["settings"]["lam"] == 300 and (labels & truth).sum() > 0.3 * truth.sum()
    few = anomaly(bright, tmp_path / "b", "--threshold", "0.9")[1]
    assert 0 < few.sum() < labels.sum()  # --threshold
    assert anomaly(bright, tmp_path / "c", "--min-difference", "0.9")[1].sum() == 0  # --min-difference
    g.calls.clear()
    assert anomaly(bright, tmp_path / "d", "--draws", "3", "--steps", "2")[0]["settings"]["draws"] == 3
    assert [inp.shape[0] for inp, _ in g.calls] == [3, 3]  # --draws: three draws in one batch

    dark = lesion_file(tmp_path / "dark", -0.25)
    assert (anomaly(dark, tmp_path / "e", "--invert")[1] & truth).sum() > 0.3 * truth.sum()  # --invert
    assert (anomaly(dark, tmp_path / "f")[1] & truth).sum() < 0.05 * truth.sum()

    g.calls.clear()
    record = anomaly(bright, tmp_path / "n", "--level", "native", "--steps", "2")[0]
    assert record["level"] == "native" and p.calls and not g.calls  # --level native: the patch model, on tiles


# ------------------------------------------------------------------ dual view


def test_dualview_sampling_options_and_format(models, tmp_path):
    base = ["dualview", "--model", str(models["dualview"]), "--seed", "9", "--quiet", "--device", "cpu"]
    assert main(base + ["--preset", "fast", "--sampler", "ddim", "--steps", "3", "--out", str(tmp_path / "d")]) == 0
    record = read_provenance(tmp_path / "d" / "CC.dcm")
    assert record["seed"] == 9
    assert (record["settings"]["name"], record["settings"]["sampler"], record["settings"]["steps"]) == \
        ("fast", "ddim", 3)
    assert main(base + ["--preset", "fast", "--sampler", "ddim", "--steps", "3", "--format", "png",
                        "--out", str(tmp_path / "p")]) == 0
    from PIL import Image

    for view in ("CC", "MLO"):  # the same run written as PNG: the same stored pixels
        png = np.asarray(Image.open(tmp_path / "p" / f"{view}.png"))
        np.testing.assert_array_equal(png, pydicom.dcmread(tmp_path / "d" / f"{view}.dcm").pixel_array)


def test_dualview_view_names_the_known_channel(monkeypatch, tmp_path):
    """A real image without a view in its header: --view MLO makes it the MLO channel and the CC is generated."""
    from test_oracle_dualview import CC, S, joint_gaussian

    from MammoSynthLogic.dualview import encode_view

    import MammoSynthLogic.bundles

    bundle = joint_gaussian(rho=0.0)  # independent views: only the known channel follows the real image
    monkeypatch.setattr(MammoSynthLogic.bundles, "load_bundle", lambda ref, device="cpu", verify=True: bundle)
    ds = mammogram_dataset((CC * 65535).astype(np.uint16))
    del ds.ViewPosition
    real = save(ds, tmp_path / "noview.dcm")
    out = tmp_path / "out"
    assert main(["dualview", "--complete", str(real), "--view", "MLO", "--model", "oracle", "--out", str(out),
                 "--sampler", "ddpm", "--steps", "5", "--seed", "1", "--quiet", "--device", "cpu"]) == 0
    assert [p.name for p in out.glob("*.dcm")] == ["CC.dcm"]
    assert read_provenance(out / "CC.dcm")["known_view"] == "MLO"
    known = encode_view(CC, S).pixels  # the real view as the model sees it (prepared, resized)
    last = bundle.unet.calls[-1][0][0].numpy()  # the U-Net input at the last (least noisy) step
    corr = [np.corrcoef(last[c].ravel(), known.ravel())[0, 1] for c in (0, 1)]
    assert corr[1] > 0.9 and abs(corr[0]) < 0.3, corr  # the real view sits in the MLO channel (1)


# ------------------------------------------------------------------ Stable Diffusion commands


def test_sd_options_reach_the_pipeline(models, inputs, tmp_path, monkeypatch):
    """Prompt, negative prompt, guidance, steps, sampler and seed are what the diffusers pipeline is called with;
    --context sets the crop."""
    import MammoSynthLogic.pipelines.text2mammo as t2m

    seen = []
    original = t2m.run_sd

    made = []
    make_scheduler = t2m.sd_scheduler
    monkeypatch.setattr(t2m, "sd_scheduler", lambda *a, **k: made.append(make_scheduler(*a, **k)) or made[-1])

    def spy(pipeline, settings, seed, *args, **kwargs):
        out = original(pipeline, settings, seed, *args, **kwargs)
        seen.append((settings, seed, made[-1]))  # the scheduler the call ran with
        return out

    monkeypatch.setattr(t2m, "run_sd", spy)
    import MammoSynthLogic.pipelines.inpaint as inp

    monkeypatch.setattr(inp, "run_sd", t2m.run_sd)
    sd = ["--prompt", "a test prompt", "--negative-prompt", "blurry", "--guidance", "7.5", "--steps", "3",
          "--sampler", "ddim", "--seed", "21", "--quiet", "--device", "cpu"]
    assert main(["text2mammo", "--model", str(models["text"]), "--size", "64", "--out", str(tmp_path / "t.dcm"),
                 *sd]) == 0
    assert main(["inpaint", str(inputs["src"]), "--mask", str(inputs["mask"]), "--method", "sd", "--model",
                 str(models["inpaint"]), "--context", "2.0", "--out", str(tmp_path / "i.dcm"), *sd]) == 0
    for settings, seed, scheduler in seen:
        assert (settings.prompt, settings.negative_prompt, settings.guidance, settings.steps, settings.sampler,
                seed) == ("a test prompt", "blurry", 7.5, 3, "ddim", 21)
        assert type(scheduler).__name__ == "DDIMScheduler"
    assert len(seen) == 2
    box = read_provenance(tmp_path / "i.dcm")["box"]
    assert (box["height"], box["width"]) == (200, 192)  # 40 px mask · (1 + 2·2.0), clipped to the image's width


def test_repaint_route_options_reach_the_pipeline(models, inputs, tmp_path, monkeypatch):
    import MammoSynthLogic.pipelines.repaint as repaint

    seen = {}
    original = repaint.inpaint_repaint

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(repaint, "inpaint_repaint", spy)
    assert main(["inpaint", str(inputs["src"]), "--mask", str(inputs["mask"]), "--method", "repaint", "--model",
                 str(models["mambo"]), "--jumps", "2", "--lesion-contrast", "0.4", "--steps", "10", "--seed", "5",
                 "--out", str(tmp_path / "r.dcm"), "--quiet", "--device", "cpu"]) == 0
    assert (seen["jumps"], seen["lesion"], seen["steps"], seen["seed"]) == (2, 0.4, 10, 5)
    record = read_provenance(tmp_path / "r.dcm")
    assert (record["jumps"], record["lesion_contrast"]) == (2, 0.4)


def test_inpaint_form_draws_pleomorphic_calcifications(models, tmp_path):
    """The same cluster (seed, count, size, spread) drawn punctate and pleomorphic: punctate calcifications are
    discs of similar size (solidity ≈ 0.96, area spread ≈ 0.2), pleomorphic ones irregular and of mixed size."""
    import highdicom as hd
    from skimage.measure import label, regionprops

    src = save(mammogram_dataset(synthetic_breast(512, 384), ImageLaterality="R"), tmp_path / "src.dcm")
    shapes = {}
    for form in ("punctate", "pleomorphic"):
        out = tmp_path / f"{form}.dcm"
        assert main(["inpaint", str(src), "--model", str(models["mambo"]), "--lesion", "calcification", "--form", form,
                     "--count", "10", "--size-mm", "1.6", "--spread-mm", "25", "--spacing-mm", "0.1", "--steps", "2",
                     "--seed", "3", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
        assert read_provenance(out)["lesion"]["form"] == form
        seg = hd.seg.segread(out.with_name(f"{form}_lesion_seg.dcm")).pixel_array.squeeze().astype(bool)
        props = regionprops(label(seg))
        areas = np.array([p.area for p in props], float)
        shapes[form] = (np.median([p.solidity for p in props]), areas.std() / areas.mean())
    assert shapes["punctate"][0] > 0.94 and shapes["pleomorphic"][0] < 0.92, shapes
    assert shapes["pleomorphic"][1] > 2 * shapes["punctate"][1], shapes


def big_breast(folder: Path) -> Path:
    """A 512 x 384 breast (0.1 mm pixels in its header) deep enough for a lesion of a few mm anywhere inside."""
    return save(mammogram_dataset(synthetic_breast(512, 384), ImageLaterality="R"), folder / "big.dcm")


def lesion_seg(out: Path) -> np.ndarray:
    import highdicom as hd

    return hd.seg.segread(out.with_name(f"{out.stem}_lesion_seg.dcm")).pixel_array.squeeze().astype(bool)


def test_inpaint_size_spacing_and_shape_set_the_drawn_mass(models, tmp_path):
    """A round 6 mm mass at the header's 0.1 mm: a disc of radius 30 px (the mask keeps the profile above 5 % of its
    peak: radius · √(1 − 0.05²)); --spacing-mm 0.2 overrides the header: radius 15 px; --shape oval: elongated."""
    from skimage.measure import regionprops

    src = big_breast(tmp_path)
    drawn = {}
    for name, extra in {"round": ("--shape", "round"), "coarse": ("--shape", "round", "--spacing-mm", "0.2"),
                        "oval": ("--shape", "oval")}.items():
        out = tmp_path / f"{name}.dcm"
        assert main(["inpaint", str(src), "--model", str(models["mambo"]), "--lesion", "mass", "--size-mm", "6",
                     *extra, "--steps", "2", "--seed", "3", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
        record = read_provenance(out)["lesion"]
        (region,) = regionprops(lesion_seg(out).astype(np.uint8))
        drawn[name] = (record["shape"], record["size_mm"], record["spacing_mm"], region.area,
                       region.major_axis_length / region.minor_axis_length)
    r = 30 * np.sqrt(1 - 0.05 ** 2)
    assert drawn["round"][:3] == ("round", 6.0, 0.1) and drawn["round"][3] == pytest.approx(np.pi * r ** 2, rel=0.03)
    assert drawn["round"][4] < 1.1, drawn
    assert drawn["coarse"][2] == 0.2 and drawn["coarse"][3] == pytest.approx(np.pi * (r / 2) ** 2, rel=0.06)
    assert drawn["oval"][0] == "oval" and drawn["oval"][4] > 1.3, drawn


def test_inpaint_spread_mm_sets_the_cluster_extent(models, tmp_path):
    """Six 0.5 mm calcifications spread over 4 mm and over 10 mm (0.1 mm pixels): the cluster's extent follows (the
    cluster is an ellipse of aspect up to 1.6: at most spread · √1.6 plus one calcification across)."""
    src = big_breast(tmp_path)
    extents = {}
    for spread in ("4", "10"):
        out = tmp_path / f"s{spread}.dcm"
        assert main(["inpaint", str(src), "--model", str(models["mambo"]), "--lesion", "calcification", "--count", "6",
                     "--size-mm", "0.5", "--spread-mm", spread, "--steps", "2", "--seed", "3", "--out", str(out),
                     "--quiet", "--device", "cpu"]) == 0
        assert read_provenance(out)["lesion"]["spread_mm"] == float(spread)
        extents[spread] = np.ptp(np.argwhere(lesion_seg(out)), axis=0).max() * 0.1  # mm
    assert extents["4"] <= 4 * np.sqrt(1.6) + 0.6 and extents["10"] > 1.5 * extents["4"], extents


def test_inpaint_label_and_segment_choose_the_mask(models, tmp_path, capsys):
    """A label map with label 1 (400 px) and label 2 (200 px): --label 2 inpaints 200 px, no --label all 600. A
    DICOM SEG whose one segment is 'Lesion': --segment Lesion reads it, --segment Mass is a one-line error."""
    from MammoSynthLogic.dicom_io import write_nrrd, write_segmentation

    src = big_breast(tmp_path)
    labels = np.zeros((512, 384), np.uint8)
    labels[240:260, 40:60] = 1
    labels[300:310, 40:60] = 2
    write_nrrd(tmp_path / "labels.nrrd", labels, (0.1, 0.1))
    write_segmentation(tmp_path / "seg.dcm", labels == 1, read_mammogram(src), label="Lesion")
    base = ["inpaint", str(src), "--model", str(models["mambo"]), "--steps", "2", "--seed", "3", "--quiet",
            "--device", "cpu"]
    pixels = {}
    for name, extra in {"label2": ("--mask", "labels.nrrd", "--label", "2"), "all": ("--mask", "labels.nrrd"),
                        "segment": ("--mask", "seg.dcm", "--segment", "Lesion")}.items():
        out = tmp_path / f"{name}.dcm"
        extra = [str(tmp_path / a) if a.endswith((".nrrd", ".dcm")) else a for a in extra]
        assert main(base + [*extra, "--out", str(out)]) == 0
        record = read_provenance(out)
        pixels[name] = (record["mask_pixels"], record["label"], record["segment"])
    assert pixels == {"label2": (200, 2, None), "all": (600, None, None), "segment": (400, None, "Lesion")}
    capsys.readouterr()
    assert main(base + ["--mask", str(tmp_path / "seg.dcm"), "--segment", "Mass", "--out",
                        str(tmp_path / "x.dcm")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no segment 'Mass'" in err and not (tmp_path / "x.dcm").exists()


def test_inpaint_method_overrides_the_route_the_model_implies(models, inputs, tmp_path, monkeypatch):
    """auto picks the route from the model (SD folder: sd; MAMBO bundles: repaint); --method takes the other one.
    Both routes are stand-ins here that return the image unchanged: only the choice is under test."""
    import MammoSynthLogic.commands.inpaint as command

    taken = []
    monkeypatch.setattr(command, "_sd_route", lambda args, image, *a, **k: taken.append("sd") or (image.pixels, {}))
    monkeypatch.setattr(command, "_repaint_route",
                        lambda args, image, *a, **k: taken.append("repaint") or (image.pixels, {}))
    for model, method in (("inpaint", "auto"), ("mambo", "auto"), ("inpaint", "repaint"), ("mambo", "sd")):
        out = tmp_path / f"{model}-{method}.dcm"
        assert main(["inpaint", str(inputs["src"]), "--mask", str(inputs["mask"]), "--model", str(models[model]),
                     "--method", method, "--seed", "1", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
        assert read_provenance(out)["method"] == taken[-1]
    assert taken == ["sd", "repaint", "repaint", "sd"]
