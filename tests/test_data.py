"""Tests for dcma_jax.data: encodings, type inference, constructors and every input error."""

import numpy as np
import pandas as pd
import pytest

from dcma_jax.data import DataError, MediationData, Variable

N = 40


def make_df(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "A": np.tile([0, 1], n // 2),
            "M1": rng.normal(2.0, 3.0, n),
            "M2": rng.integers(0, 2, n),
            "Y": rng.normal(-1.0, 0.5, n),
            "age": rng.normal(50.0, 10.0, n),
            "sex": np.tile(["F", "M"], n // 2),
            "site": np.tile(["C", "A", "B", "A"], n // 4),
            "w": rng.uniform(0.5, 2.0, n),
        }
    )


def build(df=None, **kwargs):
    args = dict(treatment="A", mediators=["M1", "M2"], outcome="Y", covariates=["age"])
    args.update(kwargs)
    return MediationData.from_dataframe(make_df() if df is None else df, **args)


# ---- Variable --------------------------------------------------------------------------------


def test_continuous_round_trip():
    var = Variable("M", "continuous", center=3.0, scale=2.0)
    x = np.array([1.0, 3.0, 7.5])
    z = var.encode(x)
    np.testing.assert_allclose(z, [-1.0, 0.0, 2.25])
    np.testing.assert_allclose(var.decode(z), x)
    np.testing.assert_allclose(var.decode_difference(z[2] - z[0]), x[2] - x[0])


def test_binary_encode_and_decode_unchanged():
    var = Variable("A", "binary", levels=("no", "yes"))
    codes = var.encode(["yes", "no", "yes"])
    assert codes.dtype == np.float64
    np.testing.assert_array_equal(codes, [1.0, 0.0, 1.0])
    assert [var.levels[int(c)] for c in codes] == ["yes", "no", "yes"]
    np.testing.assert_array_equal(var.decode([0.25, 1.0]), [0.25, 1.0])
    np.testing.assert_array_equal(var.decode_difference(0.3), 0.3)
    with pytest.raises(DataError, match=r"column 'A': value 'maybe' is not one of its levels"):
        var.encode(["yes", "maybe"])


def test_variable_rejects_bad_definitions():
    with pytest.raises(ValueError, match="kind"):
        Variable("A", "ordinal")
    with pytest.raises(ValueError, match="2 levels"):
        Variable("A", "binary", levels=(0,))
    with pytest.raises(ValueError, match="scale"):
        Variable("M", "continuous", scale=0.0)


def test_dataframe_round_trip_in_original_units():
    df = make_df()
    data = build(df)
    m1 = data.mediator_vars[0]
    np.testing.assert_allclose(m1.decode(data.mediators[:, 0]), df["M1"])
    np.testing.assert_allclose(data.outcome_var.decode(data.outcome), df["Y"])
    assert m1.center == pytest.approx(df["M1"].mean())
    assert m1.scale == pytest.approx(df["M1"].std(ddof=0))
    np.testing.assert_allclose(data.mediators[:, 0].mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(data.mediators[:, 0].std(), 1.0)


# ---- shapes, dtypes, properties --------------------------------------------------------------


def test_shapes_dtypes_and_properties():
    data = build(covariates=["age", "site"], weights="w")
    assert data.n == N
    assert data.num_mediators == 2
    assert data.mediator_names == ("M1", "M2")
    assert data.treatment_name == "A" and data.outcome_name == "Y"
    assert data.treatment.shape == (N,)
    assert data.mediators.shape == (N, 2)
    assert data.outcome.shape == (N,)
    assert data.covariates.shape == (N, 3)
    assert data.weights.shape == (N,)
    for arr in (data.treatment, data.mediators, data.outcome, data.covariates, data.weights):
        assert arr.dtype == np.float64
        assert not arr.flags.writeable
    assert set(np.unique(data.treatment)) == {0.0, 1.0}
    np.testing.assert_allclose(data.weights, make_df()["w"])


def test_no_covariates_and_default_weights():
    data = build(covariates=())
    assert data.covariates.shape == (N, 0)
    assert data.covariate_names == ()
    np.testing.assert_array_equal(data.weights, np.ones(N))


def test_single_mediator_as_string():
    data = build(mediators="M1")
    assert data.mediators.shape == (N, 1)
    assert data.mediator_names == ("M1",)


def test_mediator_order_is_kept():
    data = build(mediators=["M2", "M1"])
    assert data.mediator_names == ("M2", "M1")
    assert data.mediator_vars[0].kind == "binary"


def test_summary_mentions_roles_kinds_and_levels():
    text = build(covariates=["age", "site"], weights="w").summary()
    for piece in ("n=40", "'A'", "binary", "'M1'", "continuous", "'Y'", "site=B", "weights"):
        assert piece in text


# ---- inference, overrides, one-hot -----------------------------------------------------------


def test_type_inference():
    data = build()
    assert data.treatment_var.kind == "binary"
    assert data.treatment_var.levels == (0, 1)
    assert [v.kind for v in data.mediator_vars] == ["continuous", "binary"]
    assert data.outcome_var.kind == "continuous"


def test_type_override():
    df = make_df()
    data = build(df, types={"M2": "continuous", "A": "binary"})
    assert data.mediator_vars[1].kind == "continuous"
    np.testing.assert_allclose(data.mediator_vars[1].decode(data.mediators[:, 1]), df["M2"])


def test_unknown_type_name():
    with pytest.raises(DataError, match=r"column 'M1' has unknown type 'ordinal'"):
        build(types={"M1": "ordinal"})


def test_type_for_unused_column():
    with pytest.raises(DataError, match=r"types: column 'w' is not"):
        build(types={"w": "continuous"})


def test_declared_binary_with_many_values():
    with pytest.raises(DataError, match=r"mediator column 'M1' is declared binary but has 40"):
        build(types={"M1": "binary"})


def test_one_hot_naming_drops_first_sorted_level():
    df = make_df()
    data = build(df, covariates=["age", "site", "sex"])
    assert data.covariate_names == ("age", "site=B", "site=C", "sex=M")
    np.testing.assert_array_equal(data.covariates[:, 1], (df["site"] == "B").astype(float))
    np.testing.assert_array_equal(data.covariates[:, 2], (df["site"] == "C").astype(float))
    np.testing.assert_array_equal(data.covariates[:, 3], (df["sex"] == "M").astype(float))
    np.testing.assert_allclose(data.covariates[:, 0].std(), 1.0)


def test_categorical_and_bool_covariates_are_one_hot():
    df = make_df()
    df["grade"] = pd.Categorical(np.tile([3, 1, 2, 1], N // 4))
    df["flag"] = np.tile([True, False], N // 2)
    data = build(df, covariates=["grade", "flag"])
    assert data.covariate_names == ("grade=2", "grade=3", "flag=True")


def test_numeric_covariate_declared_categorical():
    df = make_df()
    df["level"] = np.tile([1, 2, 3, 4], N // 4)
    data = build(df, covariates=["level"], types={"level": "categorical"})
    assert data.covariate_names == ("level=2", "level=3", "level=4")


def test_binary_numeric_covariate_keeps_its_name():
    data = build(covariates=["M2"], mediators=["M1"])
    assert data.covariate_names == ("M2",)


def test_identifier_like_text_covariate():
    df = make_df()
    df["id"] = [f"p{i}" for i in range(N)]
    with pytest.raises(DataError, match=r"covariate column 'id' has 40 distinct text values"):
        build(df, covariates=["id"])


def test_text_binary_mediator_and_outcome():
    df = make_df()
    df["M2"] = np.where(df["M2"] == 1, "high", "low")
    df["Y"] = np.tile(["yes", "no"], N // 2)
    data = build(df)
    assert data.mediator_vars[1].levels == ("high", "low")
    np.testing.assert_array_equal(data.mediators[:, 1], (df["M2"] == "low").astype(float))
    assert data.outcome_var.levels == ("no", "yes")


def test_bool_treatment_true_is_treated():
    df = make_df()
    df["A"] = np.tile([True, False], N // 2)
    data = build(df)
    assert data.treatment_var.levels == (False, True)
    np.testing.assert_array_equal(data.treatment, df["A"].astype(float))


# ---- discrete-looking nodes -------------------------------------------------------------------


def _with(column, values, n=200, seed=1):
    """A frame of ``n`` rows whose ``column`` holds ``values`` (tiled or drawn)."""
    df = make_df(n=n, seed=seed)
    df[column] = values
    return df


@pytest.mark.parametrize(
    "column, values, shown",
    [
        ("M1", np.tile([1, 2, 3, 4, 5], 40), r"5 distinct integer values \(1, 2, 3, 4, 5\)"),
        ("M1", np.tile([0, 1, 2], 67)[:200], r"3 distinct integer values \(0, 1, 2\)"),
        (
            "Y",
            np.tile(np.arange(11.0), 19)[:200],
            r"11 distinct integer values \(0, 1, 2, 3, 4, ...\)",
        ),
        (
            "Y",
            np.tile(np.arange(-5, 15), 10),
            r"20 distinct integer values \(-5, -4, -3, -2, -1, ...\)",
        ),
    ],
)
def test_integer_node_with_few_values_must_be_declared(column, values, shown):
    # Integer dtype or integer-valued floats (3.0), from 3 up to MAX_DISCRETE_LEVELS values.
    role = "mediator" if column == "M1" else "outcome"
    with pytest.raises(DataError, match=rf"^{role} column '{column}' has {shown}") as info:
        build(_with(column, values))
    for kind in ("count", "continuous"):
        assert f"types={{'{column}': '{kind}'}}" in str(info.value)
        assert f"--types {column}={kind}" in str(info.value)
    assert "\n" not in str(info.value)


def test_integer_node_message():
    with pytest.raises(DataError) as info:
        build(_with("M1", np.tile([1, 2, 3, 4, 5], 40)))
    assert str(info.value) == (
        "mediator column 'M1' has 5 distinct integer values (1, 2, 3, 4, 5), like a count or a "
        "rating scale; declare its type: types={'M1': 'count'} for a count of events, or "
        "types={'M1': 'continuous'} to model it as continuous (CLI: --types M1=count or "
        "--types M1=continuous)"
    )


def test_integer_node_declared_continuous_is_standardised(tmp_path):
    likert = np.tile([1, 2, 3, 4, 5], 40)
    df = _with("M1", likert)
    df["Y"] = np.tile(np.arange(10), 20)
    data = build(df, types={"M1": "continuous", "Y": "continuous"})
    assert data.mediator_vars[0].kind == "continuous" and data.outcome_var.kind == "continuous"
    np.testing.assert_allclose(data.mediator_vars[0].decode(data.mediators[:, 0]), likert)
    np.testing.assert_allclose(data.mediators[:, 0].std(), 1.0)
    # Declaring only the mediator leaves the outcome flagged.
    with pytest.raises(DataError, match=r"^outcome column 'Y' has 10 distinct integer values"):
        build(df, types={"M1": "continuous"})
    # The same declaration through a CSV (what --types M1=continuous,Y=continuous passes).
    path = tmp_path / "likert.csv"
    df.to_csv(path, index=False)
    kwargs = dict(treatment="A", mediators=["M1", "M2"], outcome="Y")
    types = {"M1": "continuous", "Y": "continuous"}
    from_file = MediationData.from_csv(path, **kwargs, types=types)
    np.testing.assert_allclose(from_file.mediators, build(df, covariates=(), types=types).mediators)
    with pytest.raises(DataError, match=r"^mediator column 'M1' has 5 distinct integer values"):
        MediationData.from_csv(path, **kwargs)


def test_declared_binary_still_rejects_an_integer_scale():
    with pytest.raises(DataError, match=r"'M1' is declared binary but has 3 distinct values"):
        build(_with("M1", np.tile([0, 1, 2], 67)[:200]), types={"M1": "binary"})


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(np.random.default_rng(2).normal(40.0, 12.0, 200), id="float"),
        pytest.param(np.round(np.random.default_rng(3).normal(3.0, 1.0, 200), 1), id="float-1dp"),
        pytest.param(np.random.default_rng(4).integers(18, 90, 200), id="age-in-years"),
        pytest.param(np.tile(np.arange(21), 10)[:200], id="21-integers"),
    ],
)
def test_continuous_and_many_valued_integer_nodes_are_not_flagged(values):
    data = build(_with("M1", values))
    assert data.mediator_vars[0].kind == "continuous"
    np.testing.assert_allclose(data.mediator_vars[0].decode(data.mediators[:, 0]), values)


def test_short_column_of_distinct_integers_is_continuous():
    # 20 rows, 20 distinct integers (the module docstring's example): no ties, no scale.
    df = make_df(n=20)
    df["M1"] = np.arange(20)
    assert build(df).mediator_vars[0].kind == "continuous"
    df["M1"] = np.tile(np.arange(10), 2)  # 10 values on 2 rows each: a scale
    with pytest.raises(DataError, match=r"'M1' has 10 distinct integer values"):
        build(df)


def test_binary_integer_nodes_and_integer_covariates_are_unchanged():
    df = _with("M2", np.tile([3, 7], 100))
    df["grade"] = np.tile([1, 2, 3, 4], 50)
    data = build(df, covariates=["grade"])
    assert data.mediator_vars[1].kind == "binary" and data.mediator_vars[1].levels == (3, 7)
    assert data.covariate_names == ("grade",)  # covariates are contexts, not modelled nodes


# ---- treatment coding ------------------------------------------------------------------------


def test_text_treatment_larger_level_is_treated():
    df = make_df()
    df["A"] = np.tile(["control", "drug"], N // 2)
    data = build(df)
    assert data.treatment_var.levels == ("control", "drug")
    np.testing.assert_array_equal(data.treatment, (df["A"] == "drug").astype(float))


def test_treated_level():
    df = make_df()
    df["A"] = np.tile(["placebo", "active"], N // 2)
    data = build(df, treated_level="active")
    assert data.treatment_var.levels == ("placebo", "active")
    np.testing.assert_array_equal(data.treatment, (df["A"] == "active").astype(float))
    flipped = build(make_df(), treated_level=0)
    np.testing.assert_array_equal(flipped.treatment, 1.0 - make_df()["A"])


def test_treated_level_not_a_level():
    with pytest.raises(DataError, match=r"treated_level 2 is not a level of treatment column 'A'"):
        build(treated_level=2)


def test_multivalued_treatment_not_supported():
    df = make_df()
    df["A"] = np.tile([0, 1, 2, 3], N // 4)
    with pytest.raises(DataError, match=r"column 'A' has 4 distinct values.*not supported"):
        build(df)


def test_treatment_declared_continuous_is_standardised():
    # Continuous treatments are supported since the multi-mediator issue (tests/test_treatments.py).
    data = build(types={"A": "continuous"})
    assert data.treatment_var.kind == "continuous"
    assert abs(data.treatment.mean()) < 1e-12 and abs(data.treatment.std() - 1) < 1e-12


def test_treatment_declared_binary_with_three_levels():
    df = make_df()
    df["A"] = np.tile([0, 1, 2, 1], N // 4)
    with pytest.raises(DataError, match=r"declared binary but has 3 distinct values \(0, 1, 2\)"):
        build(df, types={"A": "binary"})


def test_treatment_no_control_rows():
    df = make_df()
    df["A"] = 1
    with pytest.raises(DataError, match=r"treatment column 'A' .*no control rows"):
        build(df, types={"A": "binary"})


def test_treatment_no_treated_rows():
    df = make_df()
    df["A"] = 0
    with pytest.raises(DataError, match=r"treatment column 'A' .*no treated rows"):
        build(df)
    df["A"] = "placebo"
    with pytest.raises(DataError, match=r"treatment column 'A' .*no treated rows"):
        build(df, treated_level="drug")


def test_text_treatment_with_many_levels():
    df = make_df()
    df["A"] = np.tile(["a", "b", "c", "d"], N // 4)
    with pytest.raises(DataError, match=r"treatment column 'A' has text in a numeric role"):
        build(df)


# ---- validation errors -----------------------------------------------------------------------


def test_unknown_column_lists_available():
    with pytest.raises(DataError, match=r"column 'M9' is not in the data; available.*'M1'"):
        build(mediators=["M1", "M9"])


def test_unknown_column_list_is_truncated():
    df = make_df()
    for j in range(20):
        df[f"extra{j}"] = 0.0
    with pytest.raises(DataError, match=r"and 18 more$"):
        build(df, outcome="nope")


def test_column_in_two_roles():
    with pytest.raises(DataError, match=r"'M1' is used in two roles \(mediator and covariate"):
        build(covariates=["M1"])
    with pytest.raises(DataError, match=r"column 'A' is used in two roles \(treatment and outcome"):
        build(outcome="A")
    with pytest.raises(DataError, match=r"column 'M1' is listed twice as a mediator"):
        build(mediators=["M1", "M1"])


def test_no_mediators():
    with pytest.raises(DataError, match="no mediators given"):
        build(mediators=[])


def test_missing_values_count_and_first_row():
    df = make_df()
    df.loc[[17, 20, 33], "M1"] = np.nan
    msg = r"mediator column 'M1' has 3 missing or infinite values \(first at row 17\)"
    with pytest.raises(DataError, match=msg):
        build(df)


def test_infinite_values():
    df = make_df()
    df.loc[5, "Y"] = np.inf
    with pytest.raises(DataError, match=r"outcome column 'Y' has 1 missing or infinite.*row 5"):
        build(df)


def test_missing_text_covariate():
    df = make_df()
    df.loc[3, "site"] = None
    with pytest.raises(DataError, match=r"covariate column 'site' has 1 missing.*row 3"):
        build(df, covariates=["site"])


def test_text_in_numeric_role_shows_example():
    df = make_df()
    df["M1"] = df["M1"].astype(object)
    df.loc[7, "M1"] = "n/a"
    with pytest.raises(DataError, match=r"mediator column 'M1' has text.*'n/a' at row 7"):
        build(df)


def test_text_declared_continuous():
    with pytest.raises(DataError, match=r"covariate column 'sex' has text in a numeric role"):
        build(covariates=["sex"], types={"sex": "continuous"})


@pytest.mark.parametrize(
    "role, column", [("mediators", "M1"), ("outcome", "Y"), ("covariates", "age")]
)
def test_constant_column(role, column):
    df = make_df()
    df[column] = 4.0
    kwargs = {role: [column] if role == "covariates" else column}
    with pytest.raises(DataError, match=rf"column '{column}' is constant \(every row is 4\)"):
        build(df, **kwargs)


def test_constant_text_covariate():
    df = make_df()
    df["site"] = "A"
    with pytest.raises(DataError, match=r"covariate column 'site' is constant"):
        build(df, covariates=["site"])


def test_too_few_rows():
    df = make_df().iloc[:10]
    with pytest.raises(DataError, match=r"10 rows; at least 20"):
        build(df)
    assert build(df, min_rows=10).n == 10


def test_empty_dataframe():
    with pytest.raises(DataError, match="no rows"):
        build(make_df().iloc[:0])


def test_non_positive_weights():
    df = make_df()
    df.loc[[4, 9], "w"] = [0.0, -1.0]
    with pytest.raises(DataError, match=r"weights column 'w' has 2 non-positive.*row 4"):
        build(df, weights="w")


def test_non_finite_weights():
    df = make_df()
    df.loc[2, "w"] = np.inf
    with pytest.raises(DataError, match=r"weights column 'w' has 1 missing or infinite"):
        build(df, weights="w")


def test_input_is_not_modified():
    df = make_df()
    before = df.copy()
    build(df, covariates=["age", "site"], weights="w")
    pd.testing.assert_frame_equal(df, before)


def test_error_messages_are_one_line():
    df = make_df()
    df.loc[1, "M1"] = np.nan
    with pytest.raises(DataError) as info:
        build(df)
    assert "\n" not in str(info.value)


# ---- files -----------------------------------------------------------------------------------


def test_from_csv(tmp_path):
    df = make_df()
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    data = MediationData.from_csv(
        path, treatment="A", mediators=["M1", "M2"], outcome="Y", covariates=["age", "site"]
    )
    ref = build(df, covariates=["age", "site"])
    np.testing.assert_allclose(data.mediators, ref.mediators)
    np.testing.assert_allclose(data.covariates, ref.covariates)
    assert data.covariate_names == ref.covariate_names


def test_from_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"file '.*nope.csv' does not exist"):
        MediationData.from_csv(tmp_path / "nope.csv", treatment="A", mediators="M", outcome="Y")


def test_from_csv_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"file '.*empty.csv' is empty"):
        MediationData.from_csv(path, treatment="A", mediators="M", outcome="Y")


def test_from_csv_header_only(tmp_path):
    path = tmp_path / "head.csv"
    path.write_text("A,M,Y\n")
    with pytest.raises(DataError, match="no data rows"):
        MediationData.from_csv(path, treatment="A", mediators="M", outcome="Y")


def test_from_csv_unparsable(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("A,M,Y\n1,2,3\n1,2,3,4,5\n")
    with pytest.raises(DataError, match=r"file '.*bad.csv' could not be read as CSV"):
        MediationData.from_csv(path, treatment="A", mediators="M", outcome="Y")


def test_from_csv_unreadable_bytes(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"A,M\n\xff\xfe\x80,\x81\n")
    with pytest.raises(DataError, match=r"could not be read as CSV"):
        MediationData.from_csv(path, treatment="A", mediators="M", outcome="Y")


def test_from_csv_directory(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        MediationData.from_csv(tmp_path, treatment="A", mediators="M", outcome="Y")


def test_from_csv_duplicate_header(tmp_path):
    # pandas alone reads the second 'M' as 'M.1' and the analysis would run on the first.
    path = tmp_path / "dup.csv"
    rows = "\n".join(f"{i % 2},{0.1 * i},{0.5 * i},{-0.2 * i},{i}" for i in range(N))
    path.write_text("A,M,Y,M,Y\n" + rows + "\n")
    with pytest.raises(DataError) as info:
        MediationData.from_csv(path, treatment="A", mediators="M", outcome="Y")
    assert str(info.value) == (
        f"file {str(path)!r} has duplicate column names in its header: 'M' (2 times), "
        f"'Y' (2 times); each column needs a unique name"
    )


def test_from_csv_duplicate_unused_column_and_blank_names(tmp_path):
    df = make_df()
    path = tmp_path / "extra.csv"
    text = df.to_csv(index=False).splitlines()
    # An unused column named twice is refused too: which one was meant is unknowable.
    lines = [text[0] + ",note,note"] + [row + ",x,y" for row in text[1:]]
    path.write_text("\n".join(lines) + "\n")
    match = r"duplicate column names in its header: 'note' \(2 times\)"
    with pytest.raises(DataError, match=match):
        MediationData.from_csv(path, treatment="A", mediators=["M1"], outcome="Y")
    # Blank header fields become distinct 'Unnamed: <i>' columns, not duplicates.
    lines = [text[0] + ",,"] + [row + ",1,2" for row in text[1:]]
    path.write_text("\n".join(lines) + "\n")
    data = MediationData.from_csv(path, treatment="A", mediators=["M1"], outcome="Y")
    assert data.n == N


def test_dataframe_duplicate_columns():
    df = make_df()
    dup = pd.concat([df, df[["M1"]], df[["age"]].rename(columns={"age": "w"})], axis=1)
    with pytest.raises(DataError) as info:
        build(dup)
    assert str(info.value) == (
        "the data has duplicate column names: 'M1' (2 times), 'w' (2 times); each column needs "
        "a unique name"
    )


# ---- from_arrays -----------------------------------------------------------------------------


def test_from_arrays_defaults():
    df = make_df()
    data = MediationData.from_arrays(
        treatment=df["A"].to_numpy(),
        mediators=df[["M1", "M2"]].to_numpy(),
        outcome=df["Y"].to_numpy(),
        covariates=df["age"].to_numpy(),
        weights=df["w"].to_numpy(),
    )
    assert data.mediator_names == ("M1", "M2")
    assert data.covariate_names == ("X1",)
    assert (data.treatment_name, data.outcome_name) == ("A", "Y")
    np.testing.assert_allclose(data.mediators, build(df).mediators)
    np.testing.assert_allclose(data.weights, df["w"])


def test_from_arrays_names_types_and_dataframe_covariates():
    df = make_df()
    data = MediationData.from_arrays(
        treatment=df["A"].to_numpy(),
        mediators=df["M2"].to_numpy(),
        outcome=df["Y"].to_numpy(),
        covariates=df[["age", "site"]],
        mediator_names=["dose"],
        treatment_name="T",
        types={"dose": "continuous"},
        treated_level=0,
    )
    assert data.mediator_names == ("dose",)
    assert data.mediator_vars[0].kind == "continuous"
    assert data.covariate_names == ("age", "site=B", "site=C")
    np.testing.assert_array_equal(data.treatment, 1.0 - df["A"])


def test_from_arrays_length_mismatch():
    with pytest.raises(DataError, match="outcome has 39 rows but treatment has 40"):
        MediationData.from_arrays(
            treatment=np.tile([0, 1], 20), mediators=np.arange(40.0), outcome=np.arange(39.0)
        )


def test_from_arrays_name_clash_and_count():
    with pytest.raises(DataError, match=r"name 'A' is given to two arrays"):
        MediationData.from_arrays(
            treatment=np.tile([0, 1], 20),
            mediators=np.arange(40.0),
            outcome=np.arange(40.0),
            mediator_names=["A"],
        )
    with pytest.raises(DataError, match="mediator_names has 2 names but mediators has 1"):
        MediationData.from_arrays(
            treatment=np.tile([0, 1], 20),
            mediators=np.arange(40.0),
            outcome=np.arange(40.0),
            mediator_names=["M1", "M2"],
        )
