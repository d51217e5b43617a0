"""Label normalisation: the rule SMART's agreement counting depends on."""

import pytest

from smart_spark.llm.labels import agreement_key, normalise_label

YES_NO = ["Yes", "No"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Yes", "Yes"),
        ("yes", "Yes"),
        ("  NO \n", "No"),
        ("Yes.", "Yes"),
        ('"No"', "No"),
        ("“Yes”", "Yes"),
        ("'no'!", "No"),
        ("No (it is disapproving)", "No"),
        ("No, because the court follows the precedent.", "No"),
        ("Answer: Yes", "Yes"),
        ("The answer is no.", "No"),
        ("Not specified.", None),  # "not" is not "no"
        ("Cannot determine.", None),
        ("Yes and no", None),  # names both labels: never guess
        ("No. Yes.", None),
        ("Incomplete context.", None),
        ("", None),
        (None, None),
    ],
)
def test_normalise_label_yes_no(raw, expected):
    assert normalise_label(raw, YES_NO) == expected


def test_multi_word_and_overlapping_labels():
    labels = ["spam", "not spam"]
    assert normalise_label("Not spam.", labels) == "not spam"
    assert normalise_label("not spam, it is a reminder", labels) == "not spam"
    assert normalise_label("SPAM", labels) == "spam"
    assert normalise_label("spam, not spam", labels) is None
    assert normalise_label("sci-tech", ["World", "Sci/Tech"]) == "Sci/Tech"


def test_labels_colliding_after_normalisation_are_rejected():
    with pytest.raises(ValueError, match="same after normalisation"):
        normalise_label("yes", ["Yes", "yes."])


def test_agreement_key():
    assert agreement_key("Yes", "Yes.") == "Yes"
    assert agreement_key(None, None) is None
    # Two identical non-label answers agree with each other.
    assert agreement_key(None, "Cannot determine.") == agreement_key(None, "  cannot   DETERMINE ")
    assert agreement_key(None, "Cannot determine.") == "cannot determine"
    assert agreement_key(None, "Incomplete context.") != agreement_key(None, "Cannot determine.")
