"""One-line failure reasons: what logs, reports and bad-input errors say about an exception."""

from __future__ import annotations

from edgekit.errors import close_matches, describe, first_line


def test_first_line_skips_blank_lines_and_falls_back_to_the_type_name():
    assert first_line(ValueError("\n  shape mismatch  \ndetails")) == "shape mismatch"
    assert first_line(RuntimeError()) == "RuntimeError"  # str(exc).splitlines()[0] would raise IndexError here
    assert len(first_line(ValueError("x" * 5000))) == 600  # long enough for onnxruntime's whole message


def test_describe_names_the_type_once():
    assert describe(ZeroDivisionError("division by zero")) == "ZeroDivisionError: division by zero"
    assert describe(RuntimeError()) == "RuntimeError"


def test_close_matches_suggests_a_near_name():
    assert "hflip" in close_matches("flip", ["hflip", "crop"])
