"""Reader-study scoring: the behaviour that mutation testing (scripts/mutation.sh) found unchecked — the answer key's
errors, the finding counts per truth, each reader's ROC points and the study-level errors, all with known answers."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.reader_study.responses import Answer, ReaderResponses
from MammoSynthLogic.reader_study.scoring import auc, binary_metrics, load_key, roc_curve, score_study

KEY = {"case-0001": "synthetic", "case-0002": "synthetic", "case-0003": "synthetic",
       "case-0004": "real", "case-0005": "real", "case-0006": "real"}


def test_load_key_maps_each_case_to_its_truth(tmp_path):
    path = tmp_path / "key.csv"
    path.write_text("case,file,truth\r\ncase-0001,a.dcm,synthetic\r\ncase-0002,b.dcm,real\r\n", encoding="utf-8")
    assert load_key(path) == {"case-0001": "synthetic", "case-0002": "real"}


@pytest.mark.parametrize("text, why", [
    (None, "not a reader-study key (FileNotFoundError); pass _key/key.csv"),
    ("case,file\ncase-0001,a.dcm\n", "not a reader-study key (KeyError); pass _key/key.csv"),
    ("case,file,truth\n", "key has no cases or unknown truth values []; pass _key/key.csv"),
    ("case,file,truth\ncase-0001,a.dcm,synthetic\ncase-0002,b.dcm,fake\n",
     "key has no cases or unknown truth values ['fake']; pass _key/key.csv"),
])
def test_load_key_names_the_file_and_the_fix(tmp_path, text, why):
    path = tmp_path / "key.csv"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(MammoSynthError) as caught:
        load_key(path)
    assert (caught.value.what, caught.value.why) == (str(path), why)


def test_findings_are_counted_per_truth():
    answers = {  # synthetic cases: 2 masses, 1 calcification, BI-RADS 3 and 4 count, 2 does not
        "case-0001": Answer(rating=4, mass=True, birads="4"),
        "case-0002": Answer(rating=3, mass=True, calcification=True, birads="3"),
        "case-0003": Answer(rating=1, birads="2"),
        # real cases: 1 calcification, BI-RADS 5 counts, 0 and none do not
        "case-0004": Answer(rating=0, calcification=True, birads="5"),
        "case-0005": Answer(rating=2, birads="0"),
        "case-0006": Answer(rating=0),
    }
    findings = score_study(KEY, [ReaderResponses(reader="alice", answers=answers)]).readers[0].findings
    assert findings == {"synthetic": {"cases": 3, "mass": 2, "calcification": 1, "birads>=3": 2},
                        "real": {"cases": 3, "mass": 0, "calcification": 1, "birads>=3": 1}}


def test_each_reader_and_the_pooled_readers_get_their_roc_points():
    alice = ReaderResponses(reader="alice", answers={c: Answer(rating=r) for c, r in zip(KEY, [4, 3, 2, 0, 2, 3])})
    bob = ReaderResponses(reader="bob", answers={c: Answer(rating=r) for c, r in zip(KEY, [4, 4, 3, 1, 0, 0])})
    score = score_study(KEY, [alice, bob])
    a, b = score.readers
    # thresholds 5, 4, 3, 2, 1, 0: the share of synthetic (tpr) and real (fpr) cases rated at least that
    np.testing.assert_allclose(a.tpr, [0, 1 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(a.fpr, [0, 0, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(b.tpr, [0, 2 / 3, 1, 1, 1, 1])
    np.testing.assert_allclose(b.fpr, [0, 0, 0, 0, 1 / 3, 1])
    pooled = score.pooled
    assert pooled.reader == "pooled" and pooled.answered == 12 and pooled.findings["synthetic"]["cases"] == 6
    np.testing.assert_allclose(pooled.tpr, [0, 1 / 2, 5 / 6, 1, 1, 1])
    np.testing.assert_allclose(pooled.fpr, [0, 0, 1 / 6, 1 / 3, 1 / 2, 1])
    # synthetic 4,3,2,4,4,3 against real 0,2,3,1,0,0: the 4s beat all 6, the 3s beat 5 and tie 1, the 2 beats 4, ties 1
    assert pooled.metrics["auc"] == pytest.approx((3 * 6 + 2 * 5.5 + 4.5) / 36)


def test_the_synthetic_from_threshold_sets_the_binary_call():
    alice = ReaderResponses(reader="alice", answers={c: Answer(rating=r) for c, r in zip(KEY, [4, 3, 2, 0, 2, 3])})
    at3 = score_study(KEY, [alice]).readers[0].metrics
    at2 = score_study(KEY, [alice], synthetic_from=2).readers[0].metrics
    assert (at3["tp"], at3["fp"]) == (2, 1)
    assert (at2["tp"], at2["fp"]) == (3, 2) and at2["recall"] == 1.0


def test_a_single_reader_has_a_mean_but_no_sd():
    alice = ReaderResponses(reader="alice", answers={c: Answer(rating=r) for c, r in zip(KEY, [4, 3, 2, 0, 2, 3])})
    score = score_study(KEY, [alice, ReaderResponses(reader="bob")])
    assert [s.reader for s in score.readers] == ["alice"] and score.cases == 6 and score.synthetic_from == 3
    assert score.overall_mean["auc"] == pytest.approx(7 / 9) and math.isnan(score.overall_sd["auc"])


def test_answers_from_another_study_name_the_reader_and_three_cases():
    stranger = ReaderResponses(reader="carol", answers={f"case-900{i}": Answer(rating=2) for i in range(5)})
    with pytest.raises(MammoSynthError) as caught:
        score_study(KEY, [stranger])
    assert caught.value.what == "carol"
    assert caught.value.why == ("answers for cases not in the key (case-9000, case-9001, case-9002); "
                                "the responses belong to another study")


def test_no_answers_at_all_is_an_error_about_the_responses():
    with pytest.raises(MammoSynthError) as caught:
        score_study(KEY, [ReaderResponses(reader="alice")])
    assert (caught.value.what, caught.value.why) == ("responses", "no reader has answered any case yet")


def test_plain_lists_of_zeros_and_ones_are_read_as_truth_values():
    """2 synthetic and 4 real cases (unequal counts, so a swapped denominator shows), given as Python int lists."""
    truth, called, ratings = [1, 1, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0], [4, 1, 3, 0, 1, 2]
    m = binary_metrics(truth, called)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 1, 3, 1)
    fpr, tpr = roc_curve(truth, ratings)  # thresholds 5, 4, 3, 2, 1, 0
    np.testing.assert_allclose(tpr, [0, 1 / 2, 1 / 2, 1 / 2, 1, 1])
    np.testing.assert_allclose(fpr, [0, 0, 1 / 4, 2 / 4, 3 / 4, 1])
    # pairs (synthetic, real): 4 beats all 4; 1 beats 0, ties 1 -> (4 + 1.5) / 8
    assert auc(truth, ratings) == pytest.approx(5.5 / 8)


def test_case_names_may_hold_a_slash():
    key = {"site/a": "synthetic", "site/b": "real"}
    alice = ReaderResponses(reader="alice", answers={"site/a": Answer(rating=4), "site/b": Answer(rating=0)})
    pooled = score_study(key, [alice]).pooled
    assert pooled.findings["synthetic"]["cases"] == 1 and pooled.metrics["auc"] == 1.0


def test_undefined_overall_values_are_nan_without_numpy_warnings():
    """No reader calls anything synthetic: precision is undefined for each, so its mean is nan; one reader: no sd."""
    calm = ReaderResponses(reader="calm", answers={c: Answer(rating=1) for c in KEY})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score = score_study(KEY, [calm])
    assert math.isnan(score.overall_mean["precision"]) and score.overall_mean["accuracy"] == 0.5
    assert all(math.isnan(v) for v in score.overall_sd.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(auc([1, 1], [4, 3])) and math.isnan(auc([0, 0], [4, 3]))  # one class only: no AUC
