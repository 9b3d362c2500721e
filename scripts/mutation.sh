#!/usr/bin/env bash
# Mutation testing with mutmut: each core module is mutated in a scratch copy of the checkout and run against the
# fast test files that cover it; prints killed / survived per module. Not part of CI (minutes per module).
#   scripts/mutation.sh                      # the default modules below
#   scripts/mutation.sh tiling preparation   # some of them
#   MUTATION_JOBS=2 scripts/mutation.sh      # parallel mutant runs (default 1: the build machine is shared)
#   MUTATION_TESTS="Testing/test_preparation.py" scripts/mutation.sh preparation   # other tests ("before")
#   MUTATION_NAMES="*x_crops*" scripts/mutation.sh pipelines/mambo   # only the mutants of some functions
# Needs the `mutation` extra: pip install -e ".[mutation]". Work and per-mutant results stay in $MUTATION_DIR
# (default /tmp/mammosynth-mutation/MODULE; a rerun resumes from them), outside the checkout.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
jobs=${MUTATION_JOBS:-1}

# module (under MammoSynthLogic/, without .py; pipelines/mambo for a package's module) -> the fast tests that cover
# it (files, node ids or pytest options such as --deselect); Testing/test_mutants_MODULE.py holds the tests written
# for the survivors of earlier runs
S=Testing/test_sampling.py
declare -A TESTS=(
  [sampling]="$S Testing/test_mutants_sampling.py"
  [tiling]="Testing/test_properties.py $S::test_grid_covers_every_pixel_with_at_least_the_overlap
            $S::test_wave_tiles_overlap_only_where_earlier_waves_finished
            $S::test_blend_weights_are_smooth_positive_and_symmetric $S::test_seam_mse_sees_a_step_at_a_tile_border
            $S::test_tile_index_gathers_and_scatters_like_slicing $S::test_blend_inverse_normalises_the_windows_to_one
            Testing/test_mutants_tiling.py"
  [masks]="Testing/test_inpaint.py::test_nrrd_label_maps_2d_3d_and_label Testing/test_inpaint.py::test_png_and_seg_masks
           Testing/test_inpaint.py::test_bad_masks_one_line_error_nothing_written
           Testing/test_inpaint.py::test_output_over_an_input_is_refused Testing/test_mutants_masks.py"
  [breast_mask]="Testing/test_breast_mask.py Testing/test_preparation.py Testing/test_mutants_breast_mask.py"
  [preparation]="Testing/test_preparation.py Testing/test_properties.py Testing/test_mutants_preparation.py"
  [dicom_io]="Testing/test_dicom_read.py Testing/test_dicom_write.py Testing/test_mutants_dicom_io.py Testing/test_mutants_dicom_write.py"
  [anomaly]="Testing/test_anomaly_recipe.py Testing/test_oracle_anomaly.py Testing/test_mutants_anomaly.py"
  [reader_study/scoring]="Testing/test_reader_study.py::test_binary_metrics_reproduce_mambo_expert_rows
                          Testing/test_reader_study.py::test_auc_and_roc_from_ratings
                          Testing/test_reader_study.py::test_score_command_writes_the_report
                          Testing/test_mutants_scoring.py"
  [pipelines/mambo]="Testing/test_oracle_mambo.py Testing/test_workspace.py Testing/test_mutants_mambo.py
                     Testing/test_properties.py::test_aligned_context_at_the_same_scale_is_the_crop_under_the_tile"
  [pipelines/anomaly]="Testing/test_oracle_anomaly.py Testing/test_mutants_pipeline_anomaly.py"
  [pipelines/dualview]="Testing/test_oracle_dualview.py Testing/test_dualview.py Testing/test_mutants_dualview.py"
  [pipelines/inpaint]="Testing/test_oracle_inpaint_blend.py Testing/test_inpaint.py Testing/test_mutants_inpaint.py"
  # not the embedded-bundle test: the scratch copy has no Resources/
  [pipelines/repaint]="Testing/test_oracle_repaint.py Testing/test_oracle_lesion_harmonise.py Testing/test_mutants_repaint.py
                       Testing/test_repaint.py
                       --deselect Testing/test_repaint.py::test_embedded_bundles_inpaint_tissue_on_a_real_mammogram"
  [pipelines/text2mammo]="Testing/test_text2mammo.py Testing/test_mutants_text2mammo.py"
)
DEFAULT=(reader_study/scoring preparation tiling masks breast_mask dicom_io anomaly sampling pipelines/mambo)

if ! "$python" -c "import mutmut" 2>/dev/null; then
  echo "error: mutmut: not installed; pip install -e \".[mutation]\"" >&2
  exit 2
fi
scratch=${MUTATION_DIR:-${TMPDIR:-/tmp}/mammosynth-mutation}
read -ra names <<< "${MUTATION_NAMES:-}"  # mutant name patterns for `mutmut run`, not expanded by the shell

printf '%-22s %7s %7s %7s %8s %8s %7s %8s\n' module mutants killed timeout survived no-tests other killed%
for module in "${@:-${DEFAULT[@]}}"; do
  tests=${MUTATION_TESTS:-${TESTS[$module]:-}}
  if [[ -z $tests ]]; then
    echo "error: $module: no tests listed for it in $0; choose one of ${!TESTS[*]}" >&2
    exit 2
  fi
  work="$scratch/${module//\//_}"
  mkdir -p "$work"
  # the tests may have changed since the last run: which tests cover which function is collected again (mutmut
  # would otherwise run only the tests it knew of against a mutant); the mutants' results are kept
  rm -rf "$work/MammoSynthLogic" "$work/Testing" "$work/mutants/mutmut-stats.json"
  cp -r "$root/MammoSynthLogic" "$root/Testing" "$work/"
  # Hypothesis without its shrink phase (in the scratch copy only): a mutant that fails a property test fails at
  # once instead of running into mutmut's CPU-time limit while the counterexample is being shrunk.
  cat >> "$work/Testing/conftest.py" <<'EOF'


from hypothesis import Phase, settings as _settings

_settings.register_profile("mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate])
_settings.load_profile("mutation")
EOF
  cat > "$work/setup.cfg" <<EOF
[mutmut]
source_paths = MammoSynthLogic
only_mutate = MammoSynthLogic/$module.py
also_copy =
    Testing
pytest_add_cli_args_test_selection =
$(for t in $tests; do echo "    $t"; done)
pytest_add_cli_args =
    -q
    -p
    no:cacheprovider
process_isolation = forkserver
EOF
  (cd "$work" && "$python" -m mutmut run --max-children "$jobs" ${names[@]+"${names[@]}"} > "$work/run.log" 2>&1) || {
    echo "error: $module: mutmut run failed; see the end of its log:" >&2
    tail -20 "$work/run.log" >&2
    exit 1
  }
  (cd "$work" && "$python" -m mutmut results --all true > "$work/results.txt" 2>&1) || true
  count() { grep -c ": $1\$" "$work/results.txt" || true; }
  total=$(grep -c ': ' "$work/results.txt" || true)
  total=$((total - $(count "not checked")))  # with MUTATION_NAMES: only the mutants asked for
  killed=$(count killed) timeout=$(count timeout) survived=$(count survived) untested=$(count "no tests")
  # a mutant that runs the tests past mutmut's CPU-time limit counts as killed, as in mutmut's own score
  percent=$(awk -v k="$((killed + timeout))" -v t="$total" 'BEGIN { print t ? 100 * k / t : 0 }')
  printf '%-22s %7d %7d %7d %8d %8d %7d %7.1f%%\n' "$module" "$total" "$killed" "$timeout" "$survived" "$untested" \
    $((total - killed - timeout - survived - untested)) "$percent"
done
echo "survivors and untested mutants: $scratch/*/results.txt; inspect one with: cd $scratch/MODULE && mutmut show NAME"
