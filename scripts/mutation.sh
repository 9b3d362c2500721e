#!/usr/bin/env bash
# Mutation testing with mutmut: each core module is mutated in a scratch copy of the checkout and run against the
# fast test files that cover it; prints killed / survived per module. Not part of CI (minutes per module).
#   scripts/mutation.sh                      # the default modules below
#   scripts/mutation.sh tiling preparation   # some of them
#   MUTATION_JOBS=2 scripts/mutation.sh      # parallel mutant runs (default 1: the build machine is shared)
#   MUTATION_TESTS="Testing/test_preparation.py" scripts/mutation.sh preparation   # other tests ("before")
# Needs the `mutation` extra: pip install -e ".[mutation]". Work and per-mutant results stay in $MUTATION_DIR
# (default /tmp/mammosynth-mutation/MODULE; a rerun resumes from them), outside the checkout.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
jobs=${MUTATION_JOBS:-1}

# module (under MammoSynthLogic/, without .py) -> the fast tests that cover it (files or node ids)
S=Testing/test_sampling.py
declare -A TESTS=(
  [tiling]="Testing/test_properties.py $S::test_grid_covers_every_pixel_with_at_least_the_overlap
            $S::test_wave_tiles_overlap_only_where_earlier_waves_finished
            $S::test_blend_weights_are_smooth_positive_and_symmetric $S::test_seam_mse_sees_a_step_at_a_tile_border"
  [masks]="Testing/test_inpaint.py"
  [breast_mask]="Testing/test_breast_mask.py Testing/test_preparation.py"
  [preparation]="Testing/test_preparation.py Testing/test_properties.py"
  [reader_study/scoring]="Testing/test_reader_study.py::test_binary_metrics_reproduce_mambo_expert_rows
                          Testing/test_reader_study.py::test_auc_and_roc_from_ratings
                          Testing/test_reader_study.py::test_score_command_writes_the_report"
  [anomaly]="Testing/test_anomaly_recipe.py Testing/test_oracle_anomaly.py"
)
DEFAULT=(tiling masks breast_mask preparation reader_study/scoring)

if ! "$python" -c "import mutmut" 2>/dev/null; then
  echo "error: mutmut: not installed; pip install -e \".[mutation]\"" >&2
  exit 2
fi
scratch=${MUTATION_DIR:-${TMPDIR:-/tmp}/mammosynth-mutation}

printf '%-22s %7s %7s %8s %8s %7s %8s\n' module mutants killed survived no-tests other killed%
for module in "${@:-${DEFAULT[@]}}"; do
  tests=${MUTATION_TESTS:-${TESTS[$module]:-}}
  if [[ -z $tests ]]; then
    echo "error: $module: no tests listed for it in $0; choose one of ${!TESTS[*]}" >&2
    exit 2
  fi
  work="$scratch/${module//\//_}"
  mkdir -p "$work"
  rm -rf "$work/MammoSynthLogic" "$work/Testing"
  cp -r "$root/MammoSynthLogic" "$root/Testing" "$work/"
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
  (cd "$work" && "$python" -m mutmut run --max-children "$jobs" > "$work/run.log" 2>&1) || {
    echo "error: $module: mutmut run failed; see the end of its log:" >&2
    tail -20 "$work/run.log" >&2
    exit 1
  }
  (cd "$work" && "$python" -m mutmut results --all true > "$work/results.txt" 2>&1) || true
  count() { grep -c ": $1\$" "$work/results.txt" || true; }
  total=$(grep -c ': ' "$work/results.txt" || true)
  killed=$(count killed) survived=$(count survived) untested=$(count "no tests")
  percent=$(awk -v k="$killed" -v t="$total" 'BEGIN { print t ? 100 * k / t : 0 }')
  printf '%-22s %7d %7d %8d %8d %7d %7.1f%%\n' "$module" "$total" "$killed" "$survived" "$untested" \
    $((total - killed - survived - untested)) "$percent"
done
echo "survivors and untested mutants: $scratch/*/results.txt; inspect one with: cd $scratch/MODULE && mutmut show NAME"
