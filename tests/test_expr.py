import numpy as np
import pandas as pd
import pytest

from scaler._expr import ExpressionError, evaluate, parse_named, split_top_level

DF = pd.DataFrame({"Model Size": [2.0, 4.0], "Training FLOP": [120.0, 480.0], "loss": [3.0, 2.0]})


def test_expression_of_columns_and_numbers():
    np.testing.assert_allclose(evaluate("Training FLOP/(6*Model Size)", DF), [10.0, 20.0])
    np.testing.assert_allclose(evaluate("2*loss/4", DF), [1.5, 1.0])
    np.testing.assert_allclose(evaluate("3", DF), [3.0, 3.0])


def test_split_and_names():
    assert split_top_level("N=Model Size, D=Training FLOP/(6*Model Size)") == [
        "N=Model Size",
        "D=Training FLOP/(6*Model Size)",
    ]
    assert parse_named("D=Training FLOP/(6*Model Size)") == ("D", "Training FLOP/(6*Model Size)")
    assert parse_named("loss") == ("loss", "loss")


@pytest.mark.parametrize(
    "expr,message",
    [
        ("__import__('os').getcwd()", "no column"),
        ("loss+1", "no column 'loss+1'"),
        ("(loss*2", "missing ')'"),
        ("loss*", "ends early"),
        ("loss)", "unexpected ')'"),
    ],
)
def test_expression_never_evaluates_code(expr, message):
    with pytest.raises(
        ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")
    ):
        evaluate(expr, DF)
